"""Decisions by rule end to end: a real daemon and its app on loopback, real pictures, the real sorter.

Preview (dry run) counts and bytes, applying exactly the previewed set (every file hashed before and
after), one undo for the batch, a group found after the preview left alone, and the API's 4xx answers.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from bulk_support import make_pairs, tree_hashes, wait_batch
from web_support import start_live, stop_live

EXACT, NEAR = 120, 40


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


async def scan(live, folder) -> None:
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    done = await live.wait_job(job["id"], timeout=900)
    assert done["state"] == "done", done


async def group_total(live, kind: str) -> int:
    return (await live.json("GET", f"/api/groups?kind={kind}&limit=1"))["total"]


async def run_scenario(live, exact: int, near: int) -> dict:
    """Preview, apply and undo a trash-all rule over `exact` + `near` pairs; check every file at each step.
    Return the figures measured (seconds)."""
    photos = live.tmp / "photos"
    pairs = make_pairs(photos / "bulk", exact, near)
    await scan(live, photos / "bulk")
    assert await group_total(live, "exact") == exact
    assert await group_total(live, "near") == near
    before = tree_hashes(photos)

    started = asyncio.get_running_loop().time()
    preview = await live.json(
        "POST", "/api/decisions/bulk", {"dry_run": True, "rule": {"kinds": ["exact", "near"]}}, status=201
    )
    preview_seconds = asyncio.get_running_loop().time() - started
    smaller = [copy for _, copy in pairs["near"]]
    expected_bytes = sum(os.path.getsize(b) for _, b in pairs["exact"]) + sum(map(os.path.getsize, smaller))
    assert (preview["groups"], preview["files"], preview["bytes"]) == (
        exact + near,
        exact + near,
        expected_bytes,
    )
    assert preview["state"] == "previewed" and preview["progress"]["pending"] == exact + near
    assert sum(f["files"] for f in preview["per_folder"]) <= preview["files"]
    assert preview["sample"] and all(g["keep"] and g["remove"] for g in preview["sample"])
    assert before == tree_hashes(photos), "a dry run moved something"

    # A group found after the preview: never picked up by the apply.
    late = make_pairs(photos / "late", 1, 0, seed=99)["exact"][0]
    await scan(live, photos / "late")
    assert await group_total(live, "exact") == exact + 1
    before = tree_hashes(photos)

    started = asyncio.get_running_loop().time()
    batch = await live.json(
        "POST", "/api/decisions/bulk", {"dry_run": False, "preview_id": preview["id"]}, 202
    )
    batch = await wait_batch(live, batch["id"], ("applied",))
    apply_seconds = asyncio.get_running_loop().time() - started
    assert batch["progress"]["applied"] == exact + near, batch["progress"]

    after = tree_hashes(photos)
    trash = tree_hashes(live.tmp / "trash")
    gone = set(before) - set(after)
    assert set(after) <= set(before) and all(after[p] == before[p] for p in after)
    assert len(gone) == exact + near
    for first, second in pairs["exact"]:
        assert (first in gone) != (second in gone)
    assert {second for _, second in pairs["near"]} <= gone
    assert late[0] in after and late[1] in after
    assert sorted(trash.values()) == sorted(before[p] for p in gone), "trash holds exactly the files moved"

    actions = (await live.json("GET", "/api/actions?limit=5"))["actions"]
    assert all(a["kind"] == "trash" and a["state"] == "done" for a in actions)
    assert {a["batch_id"] for a in actions} == {batch["id"]}

    started = asyncio.get_running_loop().time()
    undo = await live.json("POST", f"/api/undo/batch/{batch['id']}", None, status=202)
    undone = await wait_batch(live, undo["id"], ("undone",))
    undo_seconds = asyncio.get_running_loop().time() - started
    assert undone["reason"] is None and undone["progress"]["undone"] == exact + near
    assert tree_hashes(photos) == before, "the batch undo put every file back byte-identical"
    assert tree_hashes(live.tmp / "trash") == {}
    return {"preview": preview_seconds, "apply": apply_seconds, "undo": undo_seconds}


async def test_preview_apply_and_undo_a_batch(live):
    figures = await run_scenario(live, EXACT, NEAR)
    print(f"bulk {EXACT}+{NEAR} groups: " + ", ".join(f"{k} {v:.2f} s" for k, v in figures.items()))


async def test_a_changed_file_is_refused_and_a_decided_group_left_alone(live):
    photos = live.tmp / "photos"
    pairs = make_pairs(photos / "few", 4, 0)["exact"]
    await scan(live, photos / "few")
    groups = (await live.json("GET", "/api/groups?kind=exact"))["groups"]
    preview = await live.json("POST", "/api/decisions/bulk", {"dry_run": True, "rule": {}}, status=201)
    assert preview["groups"] == 4
    # After the preview: a person decides one group, and one file to trash is edited.
    decided = groups[0]
    trash_member = next(m for m in decided["members"] if m["suggested"] == "trash")
    await live.json("POST", "/api/decisions", {"action": "keep", "file_id": trash_member["file_id"]}, 201)
    removed = {g["group_id"]: g["remove"][0] for g in preview["sample"]}
    edited_group = next(gid for gid in removed if gid != decided["id"])
    edited = removed[edited_group]["path"]
    with open(edited, "ab") as handle:
        handle.write(b"\0")
    orphaned = next(g for g in preview["sample"] if g["group_id"] not in (decided["id"], edited_group))
    os.unlink(orphaned["keep"][0]["path"])  # the copy to keep is gone: its copy must not be trashed
    batch = await live.json(
        "POST", "/api/decisions/bulk", {"dry_run": False, "preview_id": preview["id"]}, 202
    )
    batch = await wait_batch(live, batch["id"], ("applied",))
    assert batch["progress"]["applied"] == 1 and batch["progress"]["refused"] == 3
    reasons = {f["reason"] for g in batch["sample"] for f in g["remove"] if f["state"] == "refused"}
    assert any("decided since the preview" in r for r in reasons), reasons
    assert any("changed" in r for r in reasons), reasons
    assert any("copy to keep" in r for r in reasons), reasons
    assert os.path.exists(edited) and os.path.exists(trash_member["path"])
    assert os.path.exists(orphaned["remove"][0]["path"])
    assert sum(os.path.exists(p) for pair in pairs for p in pair) == 6


async def test_bad_input_unknown_and_stale_previews(live, monkeypatch):
    async def post(body, status):
        return await live.json("POST", "/api/decisions/bulk", body, status=status)

    for body in (
        {"rule": {}},
        {"dry_run": "yes", "rule": {}},
        {"dry_run": True, "rule": {"kinds": ["blurry"]}},
        {"dry_run": True, "rule": {"kinds": []}},
        {"dry_run": True, "rule": {"folder": "relative/path"}},
        {"dry_run": True, "rule": {"action": "move"}},
        {"dry_run": True, "rule": {"target": "best"}},
        {"dry_run": True, "rule": {"min_confidence": 1.5}},
        {"dry_run": True, "rule": {"min_confidence": "high"}},
        {"dry_run": True, "rule": {"colour": "red"}},
        {"dry_run": True, "preview_id": 1},
        {"dry_run": False},
        {"dry_run": False, "rule": {}},
        {"dry_run": False, "preview_id": "one"},
    ):
        error = await post(body, 400)
        assert error["error"]["code"] == "bad_request", body
    assert (await post({"dry_run": True, "rule": {"action": "move", "target": "nowhere"}}, 403))["error"]
    assert (await post({"dry_run": False, "preview_id": 999}, 404))["error"]["code"] == "not_found"
    assert (await live.json("POST", "/api/undo/batch/999", None, 404))["error"]["code"] == "not_found"
    assert (await live.json("DELETE", "/api/decisions/bulk/999", None, 404))["error"]
    assert (await live.json("GET", "/api/decisions/bulk/999", None, 404))["error"]

    preview = await post({"dry_run": True, "rule": {"kinds": ["similar"]}}, 201)
    assert preview["groups"] == 0
    assert (await live.json("POST", f"/api/undo/batch/{preview['id']}", None, 409))["error"][
        "code"
    ] == "conflict"
    from comparimg.web import bulk

    monkeypatch.setattr(bulk, "PREVIEW_TTL_SECONDS", -1.0)
    expired = await post({"dry_run": False, "preview_id": preview["id"]}, 409)
    assert "expired" in expired["error"]["message"]
    monkeypatch.undo()
    discarded = await live.json("DELETE", f"/api/decisions/bulk/{preview['id']}")
    assert discarded["state"] == "discarded"
    assert (
        "discarded" in (await post({"dry_run": False, "preview_id": preview["id"]}, 409))["error"]["message"]
    )
    listed = await live.json("GET", "/api/decisions/bulk")
    assert [b["id"] for b in listed["batches"]] == [preview["id"]]


async def test_cancel_then_finish_the_same_batch(live):
    photos = live.tmp / "photos"
    make_pairs(photos / "many", 100, 0)
    await scan(live, photos / "many")
    preview = await live.json("POST", "/api/decisions/bulk", {"dry_run": True, "rule": {}}, status=201)
    confirm = {"dry_run": False, "preview_id": preview["id"]}
    await live.json("POST", "/api/decisions/bulk", confirm, 202)
    assert (await live.json("POST", "/api/decisions/bulk", confirm, 409))["error"]["code"] == "conflict"
    await live.json("DELETE", f"/api/decisions/bulk/{preview['id']}")
    cancelled = await wait_batch(live, preview["id"], ("cancelled",))
    assert 0 < cancelled["progress"]["applied"] < 100, cancelled["progress"]
    assert cancelled["progress"]["pending"] == 100 - cancelled["progress"]["applied"]
    events = await live.get("/api/events")
    await events.content.readuntil(b"\n\n")  # hello
    await live.json("POST", "/api/decisions/bulk", confirm, 202)
    progress = []
    while not progress or progress[-1]["running"]:
        frame = await asyncio.wait_for(events.content.readuntil(b"\n\n"), 60)
        if frame.startswith(b"event: batch"):
            progress.append(json.loads(frame.split(b"data: ", 1)[1])["batch"])
    events.close()
    assert progress[-1]["state"] == "applied" and progress[-1]["progress"]["applied"] == 100
    steps = [batch["progress"]["applied"] for batch in progress]
    assert steps == sorted(steps) and len(steps) >= 2, steps  # progress arrives chunk by chunk
    assert len(tree_hashes(photos)) == 100
