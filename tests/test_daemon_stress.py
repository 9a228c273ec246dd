"""Heavy runs (marked `stress`): a 10 000-file burst, and an inotify queue overflow of 30 000 files."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, RssSampler, api_get, make_tree, present, wait_for

pytestmark = [pytest.mark.stress, pytest.mark.timeout(900)]


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


class PingClock:
    """Receives sd_notify datagrams and remembers the largest gap between two WATCHDOG=1 pings."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.last: float | None = None
        self.largest_gap = 0.0
        self.pings = 0

    def poll(self) -> None:
        while True:
            try:
                message = self.sock.recv(4096)
            except BlockingIOError:
                return
            if message == b"WATCHDOG=1":
                now = time.monotonic()
                if self.last is not None:
                    self.largest_gap = max(self.largest_gap, now - self.last)
                self.last = now
                self.pings += 1

    def close(self) -> None:
        self.sock.close()


def test_ten_thousand_files_at_once_are_all_indexed_with_bounded_memory(tmp_path, root):
    staging = tmp_path / "staging"
    make_tree(staging, 10_000)
    pings = PingClock(tmp_path / "notify.sock")
    daemon = Daemon(
        tmp_path,
        [root],
        settle=0.5,
        env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"},
    )
    try:
        daemon.start()
        sampler = RssSampler(daemon.process.pid)
        started = time.monotonic()
        subprocess.run(["cp", "-r", str(staging), str(root / "burst")], check=True)

        api_seconds: list[float] = []

        def all_indexed() -> bool:
            sampler.sample()
            pings.poll()
            api_seconds.append(api_get(daemon, "/api/status")[0])
            daemon.check_alive()
            return len(present(daemon.rows())) == 10_000

        wait_for(all_indexed, timeout=600, interval=0.5)
        seconds = time.monotonic() - started
        rows = daemon.rows()
        assert all(state == "ok" for _, state, _ in rows.values())
        print(
            f"10 000 files indexed in {seconds:.1f} s ({10_000 / seconds:.0f} files/s); "
            f"{sampler.describe()}; "
            f"largest gap between watchdog pings {pings.largest_gap:.2f} s (expected 0.5 s); "
            f"GET /api/status slowest {max(api_seconds):.3f} s of {len(api_seconds)}"
        )
        assert pings.largest_gap < 2.0, "the event loop stalled during the burst"
        assert max(api_seconds) < 2.0, "the API stalled during the burst"
        assert sampler.peak_main_kb < 400 * 1024
    finally:
        daemon.stop()
        pings.close()


def test_inotify_overflow_while_stopped_is_reconciled(tmp_path, root):
    max_queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    count, images = 30_000, 3_000
    if count <= max_queued:
        pytest.skip(f"fs.inotify.max_queued_events={max_queued} is too large to overflow with {count} files")
    daemon = Daemon(tmp_path, [root], settle=0.5).start()
    try:
        incoming = root / "incoming"
        for folder in range(3):  # watched before the stop, so every create below queues inotify events
            (incoming / f"d{folder:03d}").mkdir(parents=True)
        time.sleep(1.0)
        daemon.signal(signal.SIGSTOP)
        try:
            # 30 000 new files while the daemon cannot read its inotify queue (16 384 events by default):
            # 3 000 pictures, each with the sidecar files photo tools leave beside them.
            make_tree(incoming, images, per_dir=1000, seed=100_000)
            for picture in sorted(incoming.rglob("*.png")):
                for n in range((count - images) // images):
                    picture.with_suffix(f".{n}.xmp").write_bytes(b"<x:xmpmeta/>")
        finally:
            daemon.signal(signal.SIGCONT)
        assert sum(1 for p in incoming.rglob("*") if p.is_file()) == count
        daemon.wait_log("event=overflow", timeout=30)
        wait_for(
            lambda: len(present(daemon.rows())) == images,
            timeout=600,
            interval=1.0,
            message=daemon.log()[-2000:],
        )
        on_disk = {str(p) for p in incoming.rglob("*.png")}
        assert set(present(daemon.rows())) == on_disk
        print(f"overflow detected, reconcile indexed {images} pictures among {count} new files")
    finally:
        daemon.stop()
