"""YAML alias bombs (billion laughs), deep nesting and oversized files are refused before the document is
built: quickly, in bounded memory, with a message naming the file; a refused SIGHUP reload sends READY=1
and keeps the old settings."""

from __future__ import annotations

import itertools
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from comparimg.config import MAX_CONFIG_BYTES, load_settings
from comparimg.model import ConfigError
from daemon_harness import Daemon, env_with_package, photo_bytes, wait_for

CHILD_MEMORY_LIMIT = 512 << 20


def billion_laughs(levels: int = 10, under: str = "x") -> str:
    """Return a YAML document whose `under` mapping holds 9**levels strings once aliases are expanded."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{under}:", f"  a: &a [{', '.join(['lol'] * 9)}]"]
    lines += [f"  {n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in itertools.pairwise(names)]
    return "\n".join(lines) + f"\nroots: *{names[-1]}\n"


def nested_lists(depth: int = 10_000) -> str:
    return "roots: " + "[" * depth + "]" * depth + "\n"


def nested_blocks(depth: int = 100) -> str:
    return "roots:\n" + "".join(f"{' ' * (2 * i)}-\n" for i in range(1, depth)) + " " * 2 * depth + "- x\n"


def refused_quickly(path: Path) -> tuple[ConfigError, float, int]:
    """Load the file; return the ConfigError, the seconds it took and the peak bytes allocated."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as refused:
            load_settings(path)
        return refused.value, time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (billion_laughs(), "values once aliases are expanded"),
        (nested_lists(), "nest"),  # ours at 32 levels, or libyaml's own limit, met while it looks ahead
        (nested_blocks(), "nested deeper than 32 levels"),
        ("x: &a 1\nroots: [" + ", ".join(["*a"] * 200) + "]\n", "more than 100 aliases"),
        ("roots: &a [x, *a]\n", "an alias inside the node it names"),
    ],
    ids=["billion-laughs", "10000-nested-lists", "nested-blocks", "many-aliases", "recursive-alias"],
)
def test_hostile_yaml_is_refused_quickly_in_bounded_memory(tmp_path, document, reason):
    path = tmp_path / "hostile.yaml"
    path.write_text(document)
    error, seconds, peak = refused_quickly(path)
    assert reason in str(error)
    assert "refused" in str(error) or "maximum nesting depth" in str(error)
    assert str(path) in str(error)
    assert "line " in str(error)
    assert seconds < 2
    assert peak < 20 << 20


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    error, seconds, _ = refused_quickly(path)
    assert f"larger than {MAX_CONFIG_BYTES} bytes" in str(error)
    assert seconds < 0.5


def test_ordinary_aliases_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("roots: &photos [/srv/a, /srv/b]\nhttp:\n  allowed_scan_roots: *photos\n")
    settings = load_settings(path)
    assert [str(p) for p in settings.http.allowed_scan_roots] == ["/srv/a", "/srv/b"]


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))


@pytest.mark.parametrize("document", [billion_laughs(), nested_lists()], ids=["billion-laughs", "nested"])
def test_check_config_refuses_a_bomb_with_status_78(tmp_path, document):
    path = tmp_path / "bomb.yaml"
    path.write_text(document)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "comparimg", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_with_package(),
        preexec_fn=limit_memory,  # a bomb that were built would fail here, not fill the machine
    )
    assert done.returncode == 78, done.stderr[-2000:]
    assert f"comparimg: {path}: at '<top>': " in done.stderr
    assert "refused" in done.stderr or "maximum nesting depth" in done.stderr
    assert time.monotonic() - started < 10  # the interpreter's start-up included


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_refused_reload_sends_ready_and_keeps_the_old_settings(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    sock.setblocking(False)
    daemon = Daemon(tmp_path, [root], env={"NOTIFY_SOCKET": str(address)})
    try:
        daemon.start()
        messages: list[str] = []
        wait_for(lambda: messages.extend(receive_all(sock)) or messages, timeout=5)
        assert messages[0].startswith("READY=1")
        before = rss_bytes(daemon.process.pid)
        good = daemon.config.read_text()
        daemon.write_config(good + billion_laughs(under="watch_bomb"))
        daemon.signal(signal.SIGHUP)
        wait_for(
            lambda: messages.extend(receive_all(sock)) or any(m.startswith("READY=1") for m in messages[1:]),
            timeout=5,
            message=f"no READY=1 after the reload; got {messages}",
        )
        reloading = messages.index("RELOADING=1")
        assert any(m.startswith("READY=1") for m in messages[reloading + 1 :])
        daemon.wait_log("event=reload_refused")
        assert "values once aliases are expanded" in daemon.log()
        assert rss_bytes(daemon.process.pid) < before + (50 << 20)
        (root / "a.jpg").write_bytes(photo_bytes(1))  # the old settings still watch this root
        (root / "b.jpg").write_bytes(photo_bytes(1))
        wait_for(lambda: any(len(g) == 2 for g in daemon.grouped_paths()), timeout=15)
    finally:
        sock.close()
        if daemon.process is not None:
            assert daemon.stop() == 0
    assert os.path.exists(daemon.index)
