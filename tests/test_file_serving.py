"""Serving an indexed file's bytes and thumbnail while its name is swapped for a symlink to a secret, in a
loop, through the real app in front of a real daemon."""

from __future__ import annotations

import asyncio
import io
import shutil

import pytest
from PIL import Image

from symlink_swapper import swapping
from web_support import start_live, stop_live

WATCH = {"settle_seconds": 0.2, "rescan_interval": 0, "observer": "polling", "polling_interval": 3600}


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    # A watcher that never polls: the swaps below must race the request, not re-index the file.
    handle, task = await start_live(tmp_path, aiohttp_client, watch=WATCH)
    yield handle
    await stop_live(handle, task)


def solid_jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


async def indexed_member(live) -> dict:
    album = live.tmp / "photos" / "album"
    album.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (album / name).write_bytes(solid_jpeg((0, 0, 255)))
    job = await live.json("POST", "/api/jobs", {"path": str(album)}, status=201)
    assert (await live.wait_job(job["id"]))["state"] == "done"
    group = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]
    return next(m for m in group["members"] if m["path"].endswith("a.jpg"))


async def test_a_file_swapped_for_a_symlink_never_serves_what_it_points_to(live):
    member = await indexed_member(live)
    secret = live.tmp / "secret.jpg"
    secret.write_bytes(solid_jpeg((255, 0, 0)))
    decoy = live.tmp / "photos" / "album" / "a.decoy"
    decoy.symlink_to(secret)
    statuses: dict[int, int] = {}
    with swapping(live.tmp / "photos" / "album" / "a.jpg", decoy) as counts:
        for _ in range(300):
            response = await live.get(member["content_url"])
            body = await response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            assert body != secret.read_bytes(), statuses
            if response.status == 200:
                assert body == solid_jpeg((0, 0, 255))
    assert counts["swaps"] > 100
    assert set(statuses) <= {200, 403, 404, 409}, statuses


async def test_a_thumbnail_is_never_made_from_a_swapped_in_secret(live):
    member = await indexed_member(live)
    secret = live.tmp / "secret.jpg"
    secret.write_bytes(solid_jpeg((255, 0, 0)))
    decoy = live.tmp / "photos" / "album" / "a.decoy"
    decoy.symlink_to(secret)
    cache = live.settings.index_path.parent / "thumbnails"
    made = 0
    with swapping(live.tmp / "photos" / "album" / "a.jpg", decoy):
        for _ in range(40):
            shutil.rmtree(cache, ignore_errors=True)  # each request makes the thumbnail anew
            response = await live.get(member["thumbnail_url"])
            body = await response.read()
            if response.status != 200:
                continue
            made += 1
            red, _, blue = Image.open(io.BytesIO(body)).convert("RGB").getpixel((10, 10))
            assert blue > 200 and red < 50, (red, blue)
            await asyncio.sleep(0)
    assert made > 0
