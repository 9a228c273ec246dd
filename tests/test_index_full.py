"""A full index disk (issue 13, row 10): writes are refused cleanly, the daemon says so, and resumes alone.

For real: the index lives on a 8 MiB tmpfs (mounting needs root; skipped otherwise), a filler file takes
the rest of it, and decisions are posted until SQLite cannot grow its files.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path

import pytest

from web_support import make_settings, start_live, stop_live

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """Return a folder on a fresh 8 MiB tmpfs, unmounted at the end."""
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(folder)], check=True)
    yield folder
    if subprocess.run(["umount", str(folder)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
async def live(tmp_path, small_disk, aiohttp_client):
    settings = make_settings(tmp_path, index=str(small_disk / "index.sqlite3"))
    handle, task = await start_live(tmp_path, aiohttp_client, settings=settings)
    yield handle
    await stop_live(handle, task)


def fill(folder: Path) -> Path:
    """Given a folder, write a file there until its file system is full; return the file."""
    filler = folder / "filler"
    try:
        with open(filler, "wb") as out:
            while True:
                out.write(b"\0" * 4096)
                out.flush()
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    return filler


async def file_ids(live) -> list[int]:
    response = await live.get("/api/groups")
    groups = (await response.json())["groups"]
    return [m["file_id"] for g in groups for m in g["members"]]


async def test_a_full_index_disk_refuses_writes_with_503_then_resumes(
    live, tmp_path, small_disk, write_photo
):
    photo = write_photo(tmp_path / "photos" / "a.jpg", "astronaut", size=(256, 256))
    (tmp_path / "photos" / "b.jpg").write_bytes(photo.read_bytes())

    async def grouped() -> bool:
        return len(await file_ids(live)) == 2

    await wait_until(grouped)
    first, second = await file_ids(live)

    async def watching() -> bool:
        return (await (await live.get("/api/status")).json())["state"] == "watching"

    await wait_until(watching)
    filler = fill(small_disk)
    refused = None
    for attempt in range(500):  # SQLite first reuses the room its files already have
        response = await live.post(
            "/api/decisions", {"action": "trash", "file_id": (first, second)[attempt % 2]}
        )
        if response.status != 201:
            refused = response
            break
    assert refused is not None, "500 decisions fitted on a full disk"
    assert refused.status == 503, await refused.text()
    assert refused.content_type == "application/json"
    error = (await refused.json())["error"]
    assert error["code"] == "index_full"
    assert "full" in error["message"]
    status = await (await live.get("/api/status")).json()
    assert status["state"] == "degraded"
    assert any(p["task"] == "index" and "full" in p["reason"] for p in status["problems"]), status

    filler.unlink()
    queued = await live.post("/api/decisions", {"action": "keep", "file_id": first})
    assert queued.status == 201, await queued.text()
    await wait_until(watching)
    status = await (await live.get("/api/status")).json()
    assert not status["problems"], status


async def test_photos_that_arrive_while_the_index_disk_is_full_are_indexed_once_there_is_room(
    live, tmp_path, small_disk, write_photo
):
    async def watching() -> bool:
        return (await (await live.get("/api/status")).json())["state"] == "watching"

    await wait_until(watching)
    filler = fill(small_disk)
    for n in range(40):  # enough rows that SQLite must grow its files
        write_photo(tmp_path / "photos" / f"p{n:02d}.jpg", "astronaut", size=(64 + n, 64 + n))

    async def index_full() -> bool:
        status = await (await live.get("/api/status")).json()
        return status["state"] == "degraded" and any(p["task"] == "index" for p in status["problems"])

    await wait_until(index_full)
    filler.unlink()

    async def all_indexed_and_watching() -> bool:
        status = await (await live.get("/api/status")).json()
        with live.service.pipeline.index.open_reader() as reader:
            ok = reader.counts()["files_ok"]
        return ok == 40 and status["state"] == "watching" and not status["problems"]

    await wait_until(all_indexed_and_watching, timeout=60)
