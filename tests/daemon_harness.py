"""Running the real daemon (`python -m comparimg run`) as a subprocess, for the daemon tests and benchmark."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "daemon"
STARTED: list[Daemon] = []  # every Daemon started since stop_started_daemons() last ran


def env_with_package(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which `python -m comparimg` imports the package from the tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_DIR), env.get("PYTHONPATH", "")) if p)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.update(extra or {})
    return env


@functools.cache
def can_limit_inotify_watches() -> bool:
    """Return whether `unshare -U -r` gives a user namespace whose inotify watch limit can be set."""
    probe = ["unshare", "-U", "-r", "sh", "-c", "echo 5 > /proc/sys/user/max_inotify_watches"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05, message: str = ""
) -> object:
    """Poll `predicate` until it returns something true; return it. Raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def png_bytes(seed: int, side: int = 16) -> bytes:
    """Return a small PNG of random pixels, different for each seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def photo_bytes(seed: int, side: int = 96) -> bytes:
    """Return a JPEG of smooth random shapes (a picture a perceptual hash can tell apart), per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    channels = [
        np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 6)) * np.cos(y * rng.uniform(2, 9)) for _ in "rgb"
    ]
    pixels = ((np.stack(channels, axis=-1) + 1) * 127).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92)
    return out.getvalue()


class Daemon:
    """One `comparimg run` subprocess with its own config, index, export and log file."""

    def __init__(
        self,
        workdir: Path,
        roots: list[Path],
        settle: float = 0.5,
        extra_yaml: str = "",
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        polling_interval: float = 10.0,
        mode: str = "hash",
    ):
        self.workdir = workdir
        # `matching.mode`: the daemon tests exercise the daemon's mechanics, in mode `hash` unless they ask
        # for the model stage (`hash+model`, the product's default, runs the model on every picture: on the
        # shared 2-core machine that makes bursts of thousands of files take minutes).
        self.mode = mode
        self.roots = roots
        self.index = workdir / "index.sqlite3"
        self.export = workdir / "duplicates.json"
        self.config = workdir / "comparimg.yaml"
        self.log_path = workdir / "daemon.log"
        self.settle = settle
        self.polling_interval = polling_interval
        self.extra_yaml = extra_yaml
        self.env = env_with_package(env)
        self.prefix = prefix or []
        self.process: subprocess.Popen | None = None
        self.write_config()

    def config_text(self, settle: float | None = None) -> str:
        roots = "\n".join(f"  - {json.dumps(str(r))}" for r in self.roots)
        return (
            f"roots:\n{roots}\nindex: {json.dumps(str(self.index))}\nexport: {json.dumps(str(self.export))}\n"
            f"watch:\n  settle_seconds: {settle if settle is not None else self.settle}\n"
            f"  rescan_interval: 0\n  polling_interval: {self.polling_interval}\n"
            f"hashing:\n  workers: 2\nmatching:\n  mode: {self.mode}\nhttp:\n  listen: 127.0.0.1:0\n"
            f"  token_file: {json.dumps(str(self.workdir / 'token'))}\n{self.extra_yaml}"
        )

    def write_config(self, text: str | None = None) -> None:
        self.config.write_text(text if text is not None else self.config_text())

    def start(self, wait_ready: bool = True) -> Daemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        command = [*self.prefix, sys.executable, "-m", "comparimg", "run", "--config", str(self.config)]
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=self.env, cwd=self.workdir)
        STARTED.append(self)
        log.close()
        if wait_ready:
            self.wait_log("event=reconcile_done", timeout=60, count=len(self.roots))
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, needle: str, timeout: float = 10.0, count: int = 1) -> None:
        def found() -> bool:
            self.check_alive()
            return self.log().count(needle) >= count

        wait_for(found, timeout, message=f"{needle!r} x{count} in log:\n{self.log()[-3000:]}")

    def check_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise AssertionError(f"daemon exited with {code}:\n{self.log()[-3000:]}")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the daemon and return its exit status (kill -9 if it does not leave in time)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"daemon did not stop within {timeout} s:\n{self.log()[-3000:]}") from None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def read_export(self) -> dict:
        try:
            return json.loads(self.export.read_text())
        except (OSError, ValueError):
            return {"groups": []}

    def grouped_paths(self) -> list[set[str]]:
        return [{m["path"] for m in g["members"]} for g in self.read_export()["groups"]]

    def rows(self) -> dict[str, tuple[int, str, str | None]]:
        """Return {path: (id, state, content_hash)} of every file row in the daemon's index."""
        return index_rows(self.index)


def stop_started_daemons() -> None:
    """Stop every Daemon started since the last call that is still running (SIGTERM, then SIGKILL).
    Raise AssertionError naming those that did not stop on SIGTERM in time, after all are stopped."""
    refused = []
    while STARTED:
        daemon = STARTED.pop()
        try:
            daemon.stop()
        except AssertionError as error:
            refused.append(str(error))
    if refused:
        raise AssertionError("\n\n".join(refused))


def index_rows(path: Path) -> dict[str, tuple[int, str, str | None]]:
    """Given an index file, return {path: (id, state, content_hash)} of every file row."""
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT path, id, state, content_hash FROM files").fetchall()
    conn.close()
    return {p: (i, s, h) for p, i, s, h in rows}


def present(rows: dict[str, tuple[int, str, str | None]]) -> dict[str, str | None]:
    """Given index rows, return {path: content_hash} of the files not marked missing."""
    return {p: h for p, (_, state, h) in rows.items() if state != "missing"}


def scan_into(
    roots: list[Path], index: Path, timeout: float = 300.0, workers: int | None = 2, mode: str = "hash"
) -> Path:
    """Given roots and an index file, run `comparimg scan` into it (with `workers`, or the default when
    None; in `mode`, as a harness Daemon by default); return the index. Raise AssertionError if the scan
    fails."""
    command = [sys.executable, "-m", "comparimg", "scan", *map(str, roots), "--index", str(index)]
    command += ["--mode", mode]
    if workers is not None:
        command += ["--workers", str(workers)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env_with_package())
    assert done.returncode == 0, done.stderr
    return index


def fresh_index(roots: list[Path], workdir: Path, timeout: float = 300.0) -> Path:
    """Given roots, run `comparimg scan` into a new index in `workdir`; return that index."""
    return scan_into(roots, workdir / f"fresh-{time.monotonic_ns()}.sqlite3", timeout)


def fresh_scan(roots: list[Path], workdir: Path) -> dict[str, str | None]:
    """Given roots, run `comparimg scan` into a new index and return {path: content_hash} it found."""
    return present(index_rows(fresh_index(roots, workdir)))


def descendants(pid: int) -> list[int]:
    """Given a pid, return it and every descendant pid (from /proc/PID/task/*/children)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                stack += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def status_kb(pid: int, field: str) -> int:
    """Given a pid and a /proc/PID/status field (VmRSS, VmHWM), return its value in KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the resident memory of a process tree; keeps the peaks of the main process and the tree."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_main_kb = 0
        self.peak_tree_kb = 0

    def sample(self) -> None:
        pids = descendants(self.pid)
        self.peak_main_kb = max(self.peak_main_kb, status_kb(self.pid, "VmHWM"))
        self.peak_tree_kb = max(self.peak_tree_kb, sum(status_kb(p, "VmRSS") for p in pids))

    def describe(self) -> str:
        main, tree = self.peak_main_kb / 1024, self.peak_tree_kb / 1024
        return f"peak RSS daemon {main:.0f} MiB, daemon+workers {tree:.0f} MiB"


def make_tree(folder: Path, count: int, per_dir: int = 500, side: int = 8, seed: int = 0) -> list[Path]:
    """Given a folder, write `count` distinct tiny PNGs into subfolders of `per_dir`; return their paths."""
    paths = []
    for i in range(count):
        path = folder / f"d{i // per_dir:03d}" / f"img{i:06d}.png"
        if i % per_dir == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(seed + i, side))
        paths.append(path)
    return paths


def api_get(daemon: Daemon, path: str, timeout: float = 5.0) -> tuple[float, dict]:
    """Given a running daemon with its web app, GET an API path with the token; return (seconds, JSON)."""
    started = time.monotonic()
    status, body = api_call(daemon, "GET", path, timeout=timeout)
    assert status == 200, (path, status, body)
    return time.monotonic() - started, body


def api_call(
    daemon: Daemon, method: str, path: str, body: object = None, timeout: float = 10.0
) -> tuple[int, object]:
    """Given a running daemon with its web app, send a request with the token (and a JSON body); return
    (HTTP status, decoded JSON body, or the raw bytes when it is not JSON). Error statuses are returned."""
    import re
    import urllib.error
    import urllib.request

    match = re.search(r"event=http_listening host=\S+ port=(\d+)", daemon.log())
    assert match, "the web app did not log its port"
    token = (daemon.workdir / "token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    url = f"http://127.0.0.1:{match.group(1)}{path}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def drop_file_permissions_prefix() -> list[str]:
    """Return a command prefix under which file permissions apply to this user (root without
    CAP_DAC_OVERRIDE), or skip."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]
