"""Decisions by rule at scale.

Run explicitly:  python -m pytest -m benchmark -s tests/benchmarks/test_bulk_decisions_speed.py

- Acceptance at full size: 2 000 exact groups and 500 near groups through the real app (preview counts and
  bytes, apply exactly the previewed set with every file hashed before and after, one undo, a group found
  after the preview untouched): `tests/test_bulk_decisions.run_scenario` with the full counts.
- 10 000 groups (BULK_GROUPS): `comparimg scan` indexes 10 000 exact pairs, a `comparimg run` daemon
  serves them; the preview must answer in ≤ 2 s, and `/api/status` in < 1 s at every poll during the
  apply and the undo of the whole batch. The figures are printed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bulk_support import make_pairs, tree_hashes
from daemon_harness import Daemon, scan_into, wait_for
from test_bulk_decisions import run_scenario
from test_bulk_kill import api
from web_support import start_live, stop_live

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3000)]

GROUPS = int(os.environ.get("BULK_GROUPS", "10000"))


async def test_acceptance_at_full_size(tmp_path, aiohttp_client):
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        figures = await run_scenario(live, 2000, 500)
    finally:
        await stop_live(live, task)
    print("\nbulk 2000 exact + 500 near groups: " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))


class StatusProbe:
    """Polls `/api/status` in a thread and keeps the slowest answer."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.times: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            status, _ = api(self.daemon, "GET", "/api/status")
            assert status == 200
            self.times.append(time.monotonic() - started)
            self.stop.wait(0.05)

    def __enter__(self) -> StatusProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(30)


def run_batch(daemon: Daemon, method_path: str, body: dict | None, batch_id: int, state: str) -> tuple:
    """Start a batch step, follow it to `state` while probing the status; return (seconds, probe)."""
    started = time.monotonic()
    with StatusProbe(daemon) as probe:
        status, _ = api(daemon, "POST", method_path, body)
        assert status == 202

        def settled() -> bool:
            batch = api(daemon, "GET", f"/api/decisions/bulk/{batch_id}")[1]
            return batch["state"] == state and not batch["running"]

        wait_for(settled, 1800, interval=0.5, message=state)
    return time.monotonic() - started, probe


def test_ten_thousand_groups(tmp_path):
    root, trash = tmp_path / "photos", tmp_path / "trash"
    started = time.monotonic()
    make_pairs(root, GROUPS, 0)
    index = scan_into([root], tmp_path / "index.sqlite3", timeout=1800)
    print(f"\n{GROUPS} exact pairs written and indexed in {time.monotonic() - started:.0f} s")
    before = tree_hashes(root)
    daemon = Daemon(tmp_path, [root], extra_yaml=f"sorter:\n  trash: {json.dumps(str(trash))}\n")
    assert daemon.index == index
    daemon.start().wait_log("event=http_listening", timeout=120)
    try:
        assert api(daemon, "GET", "/api/groups?limit=1")[1]["total"] == GROUPS
        started = time.monotonic()
        status, preview = api(daemon, "POST", "/api/decisions/bulk", {"dry_run": True, "rule": {}})
        preview_seconds = time.monotonic() - started
        assert status == 201 and preview["groups"] == GROUPS and preview["files"] == GROUPS
        confirm = {"dry_run": False, "preview_id": preview["id"]}
        apply_seconds, applying = run_batch(daemon, "/api/decisions/bulk", confirm, preview["id"], "applied")
        assert len(tree_hashes(root)) == GROUPS
        undo_path = f"/api/undo/batch/{preview['id']}"
        undo_seconds, undoing = run_batch(daemon, undo_path, None, preview["id"], "undone")
        assert tree_hashes(root) == before
    finally:
        daemon.stop(60)
    slowest = max(applying.times + undoing.times)
    print(
        f"{GROUPS} groups: preview {preview_seconds:.2f} s; apply {apply_seconds:.0f} s "
        f"({GROUPS / apply_seconds:.0f} files/s); undo {undo_seconds:.0f} s; /api/status slowest "
        f"{slowest * 1000:.0f} ms over {len(applying.times) + len(undoing.times)} polls"
    )
    assert preview_seconds <= 2.0
    assert slowest < 1.0
