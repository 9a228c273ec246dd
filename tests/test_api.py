"""Every route of the API against the real app on loopback, in front of a real daemon."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from web_support import start_live, stop_live


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


def copy_with_changes(source, dest, size=None):
    image = Image.open(source)
    if size:
        image = image.resize(size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    image.save(dest)
    return dest


@pytest.fixture
def album(tmp_path, write_photo):
    """Three exact copies of one photo (one in a sub-folder), a photo and its resized copy, and an
    unrelated photo."""
    folder = tmp_path / "photos" / "album"
    original = write_photo(folder / "a.jpg", "astronaut", size=(256, 256))
    for name in ("b.jpg", "deep/c.jpg"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(original.read_bytes())
    write_photo(folder / "coffee.jpg", "coffee", size=(300, 200))
    write_photo(folder / "coffee-small.png", "coffee", size=(150, 100), fmt="PNG")
    write_photo(folder / "other.jpg", "camera", size=(256, 256))
    return folder


async def run_job(live, folder, **params) -> dict:
    job = await live.json("POST", "/api/jobs", {"path": str(folder), **params}, status=201)
    return await live.wait_job(job["id"])


async def test_status_config_openapi_and_metrics(live):
    status = await live.json("GET", "/api/status")
    assert status["state"] in ("scanning", "watching")
    assert {"counts", "decisions_queued", "queue_depth", "version", "paused_roots"} <= set(status)
    config = await live.json("GET", "/api/config")
    assert config["roots"][0]["path"].endswith("photos")
    document = await live.json("GET", "/api/openapi.json")
    assert "/api/decisions/apply" in document["paths"]
    response = await live.get("/metrics")
    assert response.status == 200
    text = await response.text()
    assert "comparimg_http_requests_total" in text
    for gauge in (
        'comparimg_index{what="files"}',
        "comparimg_queue_depth",
        "comparimg_decisions_queued",
        "comparimg_uptime_seconds",
    ):  # the gauges docs/api.md promises
        assert gauge in text


async def test_job_on_a_folder_makes_groups_appear(live, album):
    job = await run_job(live, album)
    assert job["state"] == "done" and job["total"] == 6 and job["done"] == 6
    page = await live.json("GET", "/api/groups")
    assert page["total"] >= 1
    paths = {m["path"] for g in page["groups"] for m in g["members"]}
    assert str(album / "a.jpg") in paths and str(album / "deep" / "c.jpg") in paths
    group = await live.json("GET", f"/api/groups/{page['groups'][0]['id']}")
    assert group["members"] and group["state"] == "pending"
    exact = await live.json("GET", "/api/groups?kind=exact&state=pending&sort=size&limit=1")
    assert exact["limit"] == 1 and len(exact["groups"]) <= 1
    listed = await live.json("GET", "/api/jobs")
    assert listed["jobs"][0]["id"] == job["id"]


async def test_non_recursive_job_skips_sub_folders(live, album):
    job = await run_job(live, album, recursive=False, threshold=4, orientations=False)
    assert job["total"] == 5


async def test_thumbnail_and_content(live, album):
    await run_job(live, album)
    group = (await live.json("GET", "/api/groups"))["groups"][0]
    member = group["members"][0]
    response = await live.get(member["content_url"])
    assert response.status == 200
    with open(member["path"], "rb") as handle:
        assert await response.read() == handle.read()
    for _ in range(2):  # made once, then served from the cache
        response = await live.get(member["thumbnail_url"])
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert (await response.read())[:2] == b"\xff\xd8"


async def test_queue_apply_undo_restores_identical_bytes(live, album):
    await run_job(live, album)
    exact = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]
    keeper, *others = exact["members"]
    originals = {m["path"]: Path(m["path"]).read_bytes() for m in exact["members"]}
    await live.json("POST", "/api/decisions", {"action": "keep", "file_id": keeper["file_id"]}, status=201)
    for member in others:
        decision = await live.json(
            "POST",
            "/api/decisions",
            {"action": "trash", "file_id": member["file_id"], "group_id": exact["id"]},
            status=201,
        )
        assert decision["state"] == "queued"
    queued = await live.json("GET", "/api/decisions?state=queued")
    assert queued["total"] == len(exact["members"])
    decided = await live.json("GET", f"/api/groups/{exact['id']}")
    assert decided["state"] == "decided"
    result = await live.json("POST", "/api/decisions/apply", {})
    assert result["applied"] == len(exact["members"]) and result["refused"] == 0
    trash = live.tmp / "trash"
    for member in others:
        assert not (live.tmp / member["path"]).exists()
    trashed = sorted(p for p in trash.rglob("*") if p.is_file())
    assert len(trashed) == len(others)
    assert all(p.read_bytes() == originals[keeper["path"]] for p in trashed)
    actions = (await live.json("GET", "/api/actions"))["actions"]
    assert {a["state"] for a in actions} == {"done"}
    for action in actions:
        restored = await live.json("POST", f"/api/undo/{action['id']}")
        assert restored["state"] == "done"
    for path, data in originals.items():
        assert Path(path).read_bytes() == data
    again = await live.post(f"/api/undo/{actions[0]['id']}")
    assert again.status == 409


async def test_move_to_a_configured_target(live, album):
    await run_job(live, album)
    member = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]["members"][1]
    await live.json(
        "POST",
        "/api/decisions",
        {"action": "move", "file_id": member["file_id"], "target": "best"},
        status=201,
    )
    refused = await live.post(
        "/api/decisions", {"action": "move", "file_id": member["file_id"], "target": "nowhere"}
    )
    assert refused.status == 403
    result = await live.json("POST", "/api/decisions/apply", {})
    dest = result["outcomes"][0]["dest"]
    assert dest.startswith(str(live.tmp / "best"))


async def test_cancel_a_decision(live, album):
    await run_job(live, album)
    member = (await live.json("GET", "/api/groups"))["groups"][0]["members"][0]
    decision = await live.json(
        "POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]}, status=201
    )
    cancelled = await live.json("DELETE", f"/api/decisions/{decision['id']}")
    assert cancelled["state"] == "cancelled"
    assert (await live.delete(f"/api/decisions/{decision['id']}")).status == 409
    assert (await live.json("POST", "/api/decisions/apply", {}))["applied"] == 0
    assert (album / "a.jpg").exists()


async def test_file_changed_after_the_decision_is_not_moved(live, album):
    await run_job(live, album)
    member = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]["members"][-1]
    await live.json("POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]}, status=201)
    with open(member["path"], "ab") as handle:
        handle.write(b"edited")
    result = await live.json("POST", "/api/decisions/apply", {})
    assert result["refused"] == 1
    assert Path(member["path"]).read_bytes().endswith(b"edited")
    decisions = await live.json("GET", "/api/decisions?state=refused")
    assert decisions["total"] == 1 and "changed" in decisions["decisions"][0]["reason"]


async def test_not_duplicates_is_remembered_across_rescans(live, album):
    await run_job(live, album)
    page = await live.json("GET", "/api/groups?kind=near")
    assert page["total"] == 1, page
    group = page["groups"][0]
    await live.json(
        "POST", "/api/decisions", {"action": "not_duplicates", "group_id": group["id"]}, status=201
    )
    assert (await live.json("GET", "/api/groups?kind=near"))["total"] == 0
    await run_job(live, album)
    assert (await live.json("GET", "/api/groups?kind=near"))["total"] == 0


async def test_export_lists_the_groups(live, album):
    await run_job(live, album)
    document = await live.json("GET", "/api/export")
    assert document["version"] == 1
    assert any(str(album / "a.jpg") in {m["path"] for m in g["members"]} for g in document["groups"])


async def test_patch_config_is_validated_saved_and_applied(live):
    bad = await live.patch("/api/config", {"matching": {"threshold": 99}})
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "invalid_config"
    new = await live.json("PATCH", "/api/config", {"sorter": {"apply": "on-decide"}})
    assert new["sorter"]["apply"] == "on-decide"
    saved = (live.tmp / "state" / "config.yaml").read_text()
    assert "on-decide" in saved
    assert (await live.json("GET", "/api/config"))["sorter"]["apply"] == "on-decide"


async def test_apply_on_decide_moves_at_once(live, album):
    await run_job(live, album)
    await live.json("PATCH", "/api/config", {"sorter": {"apply": "on-decide"}})
    member = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]["members"][-1]
    decision = await live.json(
        "POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]}, status=201
    )
    assert decision["state"] == "applied" and decision["outcome"]["action_id"]
    assert not (live.tmp / member["path"]).exists()


async def test_cancel_a_job(tmp_path, aiohttp_client):
    # The folder is scan-only (not watched), so only the job touches its files.
    extra = tmp_path / "extra"
    extra.mkdir()
    noise = np.random.default_rng(7)
    for i in range(40):  # unrelated pictures: nothing to verify, so the job is quick to stop
        Image.fromarray(noise.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(extra / f"{i}.png")
    scan_roots = [str(tmp_path / "photos"), str(extra)]
    live, task = await start_live(
        tmp_path,
        aiohttp_client,
        http={
            "listen": "127.0.0.1:8765",
            "token_file": str(tmp_path / "state" / "token"),
            "allowed_scan_roots": scan_roots,
        },
    )
    try:
        job = await live.json("POST", "/api/jobs", {"path": str(extra)}, status=201)
        cancelled = await live.delete(f"/api/jobs/{job['id']}")
        assert cancelled.status == 200
        final = await live.wait_job(job["id"])
        assert final["state"] in ("cancelled", "done")
        assert (await live.delete(f"/api/jobs/{job['id']}")).status == 409
    finally:
        await stop_live(live, task)


async def read_events_until(response, wanted: bytes, seconds: float = 30) -> bytes:
    """Read server-sent events (heartbeats included) until `wanted` shows up; fail after `seconds`."""
    seen = b""
    async with asyncio.timeout(seconds):
        while wanted not in seen:
            seen += await response.content.readuntil(b"\n\n")
    return seen


async def test_events_stream_job_progress(live, album):
    response = await live.get("/api/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"event: hello")
    await live.json("POST", "/api/jobs", {"path": str(album)}, status=201)
    seen = await read_events_until(response, b"event: group")
    assert b"event: job" in seen
    response.close()


async def test_events_tell_of_groups_the_watcher_finds(live, write_photo):
    response = await live.get("/api/events")
    await response.content.readuntil(b"\n\n")  # hello
    first = write_photo(live.tmp / "photos" / "w" / "one.jpg", "rocket", size=(120, 120))
    (live.tmp / "photos" / "w" / "two.jpg").write_bytes(first.read_bytes())
    await read_events_until(response, b"event: group")
    response.close()


async def test_every_event_matches_its_documented_model(live, album):
    """The SSE models of web/schemas.py (the document's `Event`) are what the stream really sends."""
    from pydantic import TypeAdapter

    from comparimg.web.schemas import Event

    response = await live.get("/api/events")
    await live.json("POST", "/api/jobs", {"path": str(album)}, status=201)
    seen = await read_events_until(response, b"event: group")
    exact = (await live.json("GET", "/api/groups?kind=exact"))["groups"][0]
    victim = exact["members"][-1]["file_id"]
    await live.json("POST", "/api/decisions", {"action": "trash", "file_id": victim}, status=201)
    await live.json("POST", "/api/decisions/apply", {})
    action = (await live.json("GET", "/api/actions"))["actions"][0]
    await live.json("POST", f"/api/undo/{action['id']}")
    await live.json("PATCH", "/api/config", {"matching": {"threshold": 8}})
    seen += await read_events_until(response, b"event: undone")
    seen += await read_events_until(response, b"event: status")
    response.close()
    frames = [frame for frame in seen.decode().split("\n\n") if frame.startswith("event: ")]
    kinds = set()
    for frame in frames:
        kind_line, data_line = frame.split("\n")[:2]
        event = TypeAdapter(Event).validate_json(data_line.removeprefix("data: "))
        assert event.type == kind_line.removeprefix("event: ")
        kinds.add(event.type)
    assert {"hello", "job", "group", "decision", "decision_applied", "undone", "status"} <= kinds


async def test_the_page_and_its_files_are_served(live):
    page = await live.client.get("/")
    assert page.status == 200
    assert "Content-Security-Policy" in page.headers
    script = await live.client.get("/js/main.js")
    assert script.status == 200


async def test_unknown_ids_are_404(live):
    for path in ("/api/groups/999", "/api/jobs/999", "/api/files/999/content", "/api/files/999/thumbnail"):
        response = await live.get(path)
        assert response.status == 404, path
        assert (await response.json())["error"]["code"] == "not_found"
    assert (await live.delete("/api/decisions/999")).status == 404
    assert (await live.post("/api/undo/999", {})).status == 404
    assert (await live.post("/api/decisions", {"action": "trash", "file_id": 999})).status == 404


async def test_trash_on_another_file_system_through_the_api(tmp_path, aiohttp_client, write_photo):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system")
    trash = shm / f"comparimg-api-{tmp_path.name}"
    live, task = await start_live(tmp_path, aiohttp_client, sorter={"trash": str(trash)})
    try:
        first = write_photo(tmp_path / "photos" / "x" / "a.jpg", "chelsea", size=(150, 150))
        (tmp_path / "photos" / "x" / "b.jpg").write_bytes(first.read_bytes())
        await run_job(live, tmp_path / "photos" / "x")
        member = (await live.json("GET", "/api/groups"))["groups"][0]["members"][-1]
        original = Path(member["path"]).read_bytes()
        decision = {"action": "trash", "file_id": member["file_id"]}
        await live.json("POST", "/api/decisions", decision, status=201)
        outcome = (await live.json("POST", "/api/decisions/apply", {}))["outcomes"][0]
        assert outcome["state"] == "applied" and outcome["dest"].startswith(str(trash))
        assert Path(outcome["dest"]).read_bytes() == original and not Path(member["path"]).exists()
        await live.json("POST", f"/api/undo/{outcome['action_id']}")
        assert Path(member["path"]).read_bytes() == original
    finally:
        await stop_live(live, task)
        shutil.rmtree(trash, ignore_errors=True)
