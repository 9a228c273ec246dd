"""The daemon's process life: sd_notify, SIGHUP, kill -9, defaults, the watch limit, unreadable files."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_harness import (
    Daemon,
    can_limit_inotify_watches,
    env_with_package,
    fresh_scan,
    photo_bytes,
    png_bytes,
    present,
    wait_for,
)


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


def receive_all(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_fake_notify_socket_gets_ready_watchdog_and_stopping(tmp_path, root):
    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    sock.setblocking(False)
    try:
        env = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "400000"}
        daemon = Daemon(tmp_path, [root], env=env).start()
        messages: list[str] = []
        wait_for(
            lambda: messages.extend(receive_all(sock)) or sum(m == "WATCHDOG=1" for m in messages) >= 3,
            timeout=5,
        )
        assert daemon.stop() == 0
        messages += receive_all(sock)
    finally:
        sock.close()
    ready = [m for m in messages if m.startswith("READY=1")]
    assert ready and "STATUS=" in ready[0]
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert messages.index(ready[0]) < messages.index("WATCHDOG=1")


def test_abstract_notify_socket(tmp_path, root):
    name = f"comparimg-daemon-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.setblocking(False)
    try:
        daemon = Daemon(tmp_path, [root], env={"NOTIFY_SOCKET": "@" + name}).start()
        messages: list[str] = []
        wait_for(lambda: messages.extend(receive_all(sock)) or messages, timeout=5)
        daemon.stop()
        messages += receive_all(sock)
    finally:
        sock.close()
    assert messages[0].startswith("READY=1")
    assert messages[-1].startswith("STOPPING=1")


def test_sighup_with_bad_config_keeps_the_old_one(tmp_path, root):
    (root / "a.jpg").write_bytes(photo_bytes(1))
    daemon = Daemon(tmp_path, [root], settle=0.3).start()
    try:
        good = daemon.config.read_text()
        daemon.write_config(good + "watch_typo: 1\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("event=reload_refused")
        assert "watch_typo" in daemon.log()
        (root / "b.jpg").write_bytes(photo_bytes(1))  # the old settings still watch this root
        wait_for(lambda: any(len(g) == 2 for g in daemon.grouped_paths()), timeout=5)
        other = tmp_path / "other"
        other.mkdir()
        (other / "c.jpg").write_bytes(photo_bytes(1))
        daemon.roots = [root, other]
        daemon.write_config()
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("event=reloaded")
        wait_for(lambda: any(len(g) == 3 for g in daemon.grouped_paths()), timeout=10)
    finally:
        assert daemon.stop() == 0


def test_no_configuration_at_all_runs_on_defaults(tmp_path):
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    (home / "Pictures" / "a.jpg").write_bytes(photo_bytes(2))
    (home / "Pictures" / "b.jpg").write_bytes(photo_bytes(2))
    env = env_with_package({"HOME": str(home)})
    for key in ("XDG_DATA_HOME", "XDG_STATE_HOME", "STATE_DIRECTORY", "XDG_CONFIG_HOME"):
        env.pop(key, None)
    log = tmp_path / "log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "comparimg", "run", "--listen", "127.0.0.1:0"], stderr=out, env=env
        )
    try:
        export = home / ".local/state/comparimg/duplicates.json"
        wait_for(
            lambda: export.exists() and json.loads(export.read_text())["groups"],
            timeout=30,
            message=log.read_text(),
        )
        assert (home / ".local/state/comparimg/index.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_bad_config_file_exits_78_naming_file_and_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("watch:\n  settle_seconds: soon\n")
    done = subprocess.run(
        [sys.executable, "-m", "comparimg", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_with_package(),
    )
    assert done.returncode == 78
    assert str(config) in done.stderr and "watch.settle_seconds" in done.stderr and "soon" in done.stderr


def test_json_logs_are_one_object_per_line(tmp_path, root):
    daemon = Daemon(tmp_path, [root], extra_yaml="logging:\n  format: json\n").start()
    (root / "a.png").write_bytes(png_bytes(1))
    daemon.wait_log("event=indexed")
    daemon.stop()
    # The web room prints its login link as a plain line, for people (like Jupyter); the rest is JSON.
    login = "comparimg: open "
    text = [line for line in daemon.log().splitlines() if line.strip() and not line.startswith(login)]
    lines = [json.loads(line) for line in text]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any("event=ready" in line["message"] for line in lines)


def test_kill_9_in_a_burst_loses_nothing_indexed_before(tmp_path, root):
    daemon = Daemon(tmp_path, [root], settle=0.2).start()
    for i in range(1500):
        (root / f"k{i:05d}.png").write_bytes(png_bytes(i))
    wait_for(lambda: len(present(daemon.rows())) >= 200, timeout=60)
    daemon.kill()
    before = {p: h for p, (_, state, h) in daemon.rows().items() if state == "ok"}
    assert 0 < len(before) < 1500, "the kill should land in the middle of the burst"
    with sqlite3.connect(daemon.index) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    daemon.start()
    wait_for(lambda: len(present(daemon.rows())) == 1500, timeout=120)
    after = present(daemon.rows())
    assert all(after.get(p) == h for p, h in before.items())
    daemon.stop()
    assert after == fresh_scan([root], tmp_path)


@pytest.mark.skipif(not can_limit_inotify_watches(), reason="needs user namespaces (unshare -U -r)")
def test_watch_limit_is_logged_with_the_sysctl_and_polling_takes_over(tmp_path, root):
    for i in range(8):
        (root / f"d{i}").mkdir()
    (root / "d0" / "a.jpg").write_bytes(photo_bytes(3))
    # A fresh user namespace with room for 4 inotify watches: the daemon cannot watch the whole tree.
    limit = 'echo 4 > /proc/sys/user/max_inotify_watches && exec "$@"'
    daemon = Daemon(
        tmp_path,
        [root],
        settle=0.2,
        polling_interval=0.5,
        prefix=["unshare", "-U", "-r", "sh", "-c", limit, "sh"],
    ).start()
    try:
        daemon.wait_log("fs.inotify.max_user_watches")
        (root / "d7" / "b.jpg").write_bytes(photo_bytes(3))
        wait_for(
            lambda: any(len(g) == 2 for g in daemon.grouped_paths()), timeout=20, message=daemon.log()[-2000:]
        )
    finally:
        daemon.stop()


WITHOUT_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
    "--",
]


def test_unreadable_files_and_folders_are_errors_not_crashes(tmp_path, root):
    if os.geteuid() != 0:
        pytest.skip("drops CAP_DAC_OVERRIDE through setpriv, which needs root")
    # Root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys mode bits, as any user would.
    (root / "closed").mkdir()
    (root / "a.jpg").write_bytes(photo_bytes(4))
    (root / "secret.jpg").write_bytes(photo_bytes(5))
    (root / "closed" / "c.jpg").write_bytes(photo_bytes(6))
    (root / "secret.jpg").chmod(0o000)
    (root / "closed").chmod(0o000)
    daemon = Daemon(tmp_path, [root], settle=0.2, prefix=WITHOUT_DAC)
    try:
        daemon.start()
        rows = daemon.rows()
        assert rows[str(root / "secret.jpg")][1:] == ("error", None)
        assert rows[str(root / "a.jpg")][1] == "ok"
        (root / "b.jpg").write_bytes(photo_bytes(4))
        wait_for(lambda: any(len(g) == 2 for g in daemon.grouped_paths()), timeout=10)
        (root / "late-secret.jpg").write_bytes(photo_bytes(7))
        (root / "late-secret.jpg").chmod(0o000)
        wait_for(lambda: daemon.rows().get(str(root / "late-secret.jpg"), (0, ""))[1] == "error", timeout=10)
        daemon.check_alive()
        daemon.stop()
        assert "closed" in json.dumps(daemon.read_export()["errors"])
    finally:
        (root / "closed").chmod(0o755)
        daemon.stop()


def test_daemon_stays_up_when_files_come_and_go_fast(tmp_path, root):
    daemon = Daemon(tmp_path, [root], settle=0.2).start()
    for i in range(200):
        path = root / f"f{i}.png"
        path.write_bytes(png_bytes(i))
        if i % 3 == 0:
            path.unlink()
        elif i % 3 == 1:
            os.rename(path, root / f"g{i}.png")
    time.sleep(1.0)
    wait_for(lambda: len(present(daemon.rows())) == len(list(root.iterdir())), timeout=30)
    daemon.stop()
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_sigterm_during_the_start_up_reconcile_exits_promptly(tmp_path, root):
    for i in range(3000):
        (root / f"s{i:05d}.png").write_bytes(png_bytes(i))
    daemon = Daemon(tmp_path, [root]).start(wait_ready=False)
    daemon.wait_log("event=reconcile_start", timeout=30)
    time.sleep(1.0)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 8
    assert "event=reconcile_interrupted" in daemon.log()
    with sqlite3.connect(daemon.index) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_scheduled_rescan_finds_what_no_event_reported(tmp_path, root):
    # A polling observer that never polls in this test's time: only the rescan can find the new file.
    daemon = Daemon(tmp_path, [root], settle=0.2, polling_interval=3600)
    rescan = "  rescan_interval: 1\n  observer: polling\n"
    daemon.write_config(daemon.config_text().replace("  rescan_interval: 0\n", rescan))
    daemon.start()
    try:
        (root / "quiet.png").write_bytes(png_bytes(7))
        wait_for(lambda: str(root / "quiet.png") in present(daemon.rows()), timeout=10)
        assert "reason='schedule'" in daemon.log()
    finally:
        daemon.stop()


def test_a_taken_port_is_a_clean_start_failure(tmp_path, root):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "comparimg",
                "run",
                "--watch",
                str(root),
                "--index",
                str(tmp_path / "i.db"),
                "--export",
                str(tmp_path / "d.json"),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env_with_package(),
        )
    finally:
        taken.close()
    assert done.returncode == 1
    assert "event=start_failed" in done.stderr and "address already in use" in done.stderr
    assert "Traceback" not in done.stderr
