"""Decisions answer while the single writer runs a long ingest (issue 13, row 12).

The ingest is made long for real: its pair check runs in a worker process and waits, before checking,
on a FIFO gate the test opens when it chooses (opening a FIFO for reading blocks until someone opens it
for writing; nothing sleeps). While the gate is closed the writer thread is inside `Linker._verified_edges`;
decisions must still be queued, cancelled, recorded (not duplicates) and applied, through the urgent
lane, while the writer waits for that check.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from comparimg import hashing
from web_support import start_live, stop_live

GATE = "verify-gate"
STARTED = "verify-started"


def gated_verify(path_a: str, path_b: str, candidate, previews=()):
    """A pair check that first says it started, then waits for the test to open the gate (in the folder
    that holds the root), then checks for real."""
    folder = Path(path_a).parent.parent
    (folder / STARTED).touch()
    with open(folder / GATE, "rb"):  # blocks until the test opens the FIFO for writing
        pass
    return hashing.verify_pair(path_a, path_b, candidate, previews)


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def file_id_of(live, path: Path) -> int | None:
    with live.service.pipeline.index.open_reader() as reader:
        row = reader.file_by_path(str(path))
    return row.id if row is not None and row.state == "ok" else None


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


async def test_a_decision_is_answered_while_the_writer_is_in_pair_checks(
    live, tmp_path, write_photo, monkeypatch
):
    other = write_photo(tmp_path / "photos" / "other.jpg", "chelsea")
    third = write_photo(tmp_path / "photos" / "third.jpg", "coffee")
    await wait_until(lambda: file_id_of(live, other) is not None and file_id_of(live, third) is not None)
    other_id, third_id = file_id_of(live, other), file_id_of(live, third)
    os.mkfifo(tmp_path / GATE)
    monkeypatch.setattr(hashing, "verify_pair", gated_verify)  # the linker looks it up at each pass
    gate = None
    try:
        write_photo(tmp_path / "photos" / "a.jpg", "astronaut", size=(256, 256))
        write_photo(tmp_path / "photos" / "b.jpg", "astronaut", size=(240, 240), quality=80)
        await wait_until(lambda: (tmp_path / STARTED).exists())  # the writer now waits for that check

        queued = await asyncio.wait_for(
            live.post("/api/decisions", {"action": "trash", "file_id": other_id}), 5
        )
        assert queued.status == 201, await queued.text()
        decision = await queued.json()
        assert decision["state"] == "queued"
        cancelled = await asyncio.wait_for(
            live.client.delete(f"/api/decisions/{decision['id']}", headers=live.auth), 5
        )
        assert cancelled.status == 200, await cancelled.text()
        assert (await cancelled.json())["state"] == "cancelled"
        apart = await asyncio.wait_for(
            live.post("/api/decisions", {"action": "not_duplicates", "file_ids": [other_id, third_id]}), 5
        )
        assert apart.status == 201, await apart.text()
        assert (await apart.json())["state"] == "applied"
        # An apply too: the photo goes to the trash and its row is forgotten while the check is held.
        again = await live.post("/api/decisions", {"action": "trash", "file_id": third_id})
        assert again.status == 201, await again.text()
        applied = await asyncio.wait_for(live.post("/api/decisions/apply", {}), 5)
        assert applied.status == 200, await applied.text()
        assert (await applied.json())["applied"] == 1
        assert not third.exists() and file_id_of(live, third) is None
        status = await asyncio.wait_for(live.get("/api/status"), 5)
        assert status.status == 200
        assert (
            not (tmp_path / "state" / "duplicates.json").exists()
            or not json.loads((tmp_path / "state" / "duplicates.json").read_text())["groups"]
        ), "the pair check has not run yet"
    finally:
        gate = os.open(tmp_path / GATE, os.O_RDWR)  # never blocks; from now on every check goes through
    try:
        export = tmp_path / "state" / "duplicates.json"
        await wait_until(lambda: export.exists() and json.loads(export.read_text())["groups"])
    finally:
        os.close(gate)
