"""The learning loop's API against the real app on loopback, in front of a real daemon: the labels a
person's decisions leave (not duplicates, applied trash with a keeper, a group confirmed as duplicates, a
group said not even similar), `GET /api/model`, a retraining refused for want of labels, a pair's verdict,
restore with nothing to restore. (The end-to-end retraining is tests/test_model_retraining.py.)"""

from __future__ import annotations

import asyncio

import pytest

from bulk_support import wait_batch
from comparimg.index import Index, open_index
from comparimg.index.connection import connect_reader
from comparimg.service import labelling
from comparimg.verdicts import FEATURE_NAMES
from web_support import start_live, stop_live


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


@pytest.fixture
def album(tmp_path, write_photo):
    """Exact copies of one photo, a photo and its resized copy, another photo and its copy, and an
    unrelated photo."""
    folder = tmp_path / "photos" / "album"
    original = write_photo(folder / "a.jpg", "astronaut", size=(256, 256))
    (folder / "b.jpg").write_bytes(original.read_bytes())
    write_photo(folder / "coffee.jpg", "coffee", size=(300, 200))
    write_photo(folder / "coffee-small.png", "coffee", size=(150, 100), fmt="PNG")
    write_photo(folder / "rocket.jpg", "rocket", size=(200, 300))
    write_photo(folder / "rocket-small.png", "rocket", size=(100, 150), fmt="PNG")
    write_photo(folder / "other.jpg", "camera", size=(256, 256))
    return folder


async def groups_by_name(live, folder) -> dict[str, dict]:
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    assert (await live.wait_job(job["id"]))["state"] == "done"
    groups = (await live.json("GET", "/api/groups"))["groups"]
    return {min(m["path"].rsplit("/", 1)[1] for m in g["members"]): g for g in groups}


def stored_labels(live) -> dict[tuple[int, int], tuple[str, str, int]]:
    with Index(live.settings.index_path, connect_reader(live.settings.index_path), writable=False) as index:
        return {
            (label.file_a, label.file_b): (label.label, label.source, len(label.features))
            for label in index.pair_labels(len(FEATURE_NAMES))
        }


async def test_decisions_leave_labels_with_their_features(live, album):
    groups = await groups_by_name(live, album)
    assert set(groups) == {"a.jpg", "coffee-small.png", "rocket-small.png"}, groups
    model = await live.json("GET", "/api/model")
    assert model["verifier"]["source"] == "shipped" and model["verifier"]["problem"] is None
    assert model["verifier"]["validation"]["accuracy_by_stage"]["all"] > 0.9
    assert model["labels"] == {"total": 0, "by_label": {}, "by_source": {}, "needed": 10}
    assert model["previous"] is None and model["retraining"] == {"running": False, "last": None}

    coffee = [m["file_id"] for m in groups["coffee-small.png"]["members"]]
    await live.json("POST", "/api/decisions", {"action": "not_duplicates", "file_ids": coffee}, status=201)
    rocket = groups["rocket-small.png"]
    confirmed = await live.json("POST", f"/api/groups/{rocket['id']}/confirm-duplicates")
    assert confirmed["labelled"] == 1 and confirmed["label"] == "duplicate"
    exact = groups["a.jpg"]
    keeper, copy = exact["members"]
    await live.json("POST", "/api/decisions", {"action": "keep", "file_id": keeper["file_id"]}, status=201)
    body = {"action": "trash", "file_id": copy["file_id"], "group_id": exact["id"]}
    await live.json("POST", "/api/decisions", body, status=201)
    assert (await live.json("POST", "/api/decisions/apply", {}))["applied"] == 2

    labels = stored_labels(live)
    pair = lambda ids: tuple(sorted(ids))  # noqa: E731
    assert labels[pair(coffee)] == ("different", "not_duplicates", len(FEATURE_NAMES))
    rocket_ids = [m["file_id"] for m in rocket["members"]]
    assert labels[pair(rocket_ids)] == ("duplicate", "confirmed", len(FEATURE_NAMES))
    assert labels[pair([keeper["file_id"], copy["file_id"]])] == ("duplicate", "applied", len(FEATURE_NAMES))
    model = await live.json("GET", "/api/model")
    assert model["labels"]["total"] == 3
    assert model["labels"]["by_label"] == {"different": 1, "duplicate": 2}
    assert model["labels"]["by_source"] == {"applied": 1, "confirmed": 1, "not_duplicates": 1}

    # The trashed copy keeps its label; a retraining with 3 labels is refused, the shipped model stays.
    outcome = await live.json("POST", "/api/model/retrain")
    assert outcome["adopted"] is False and outcome["reason"].startswith("too few labels: 3")
    assert outcome["verifier"]["source"] == "shipped"
    model = await live.json("GET", "/api/model")
    assert model["retraining"]["last"]["reason"] == outcome["reason"]
    refused = await live.json("POST", "/api/model/restore", status=409)
    assert "no previous model" in refused["error"]["message"]

    verdict = await live.json("GET", f"/api/model/verdict?a={rocket_ids[0]}&b={rocket_ids[1]}")
    assert verdict["label"] == "duplicate" and verdict["source"] == "shipped"
    assert abs(sum(verdict["probabilities"].values()) - 1) < 1e-3
    missing = await live.json("GET", f"/api/model/verdict?a={rocket_ids[0]}", status=400)
    assert missing["error"]["message"] == "b: Field required"  # the query model names what is missing
    await live.json("GET", f"/api/model/verdict?a={rocket_ids[0]}&b=999999", status=404)


async def test_a_group_said_not_even_similar_goes_away_and_labels_its_pairs(live, album):
    groups = await groups_by_name(live, album)
    rocket = groups["rocket-small.png"]
    answer = await live.json("POST", f"/api/groups/{rocket['id']}/not-similar")
    assert answer["label"] == "different" and answer["decision"]["action"] == "not_duplicates"
    ids = tuple(sorted(m["file_id"] for m in rocket["members"]))
    assert stored_labels(live)[ids][:2] == ("different", "not_similar")
    await live.json("GET", f"/api/groups/{rocket['id']}", status=404)
    await live.json("POST", "/api/groups/999999/confirm-duplicates", status=404)


async def test_the_model_routes_are_in_the_openapi_document(live):
    paths = (await live.json("GET", "/api/openapi.json"))["paths"]
    for path, method in (
        ("/api/model", "get"),
        ("/api/model/retrain", "post"),
        ("/api/model/restore", "post"),
        ("/api/model/verdict", "get"),
        ("/api/groups/{id}/confirm-duplicates", "post"),
        ("/api/groups/{id}/not-similar", "post"),
    ):
        assert method in paths[path], path


async def test_a_second_retraining_while_one_runs_is_a_conflict(live, album):
    groups = await groups_by_name(live, album)
    ids = sorted(m["file_id"] for g in groups.values() for m in g["members"])
    with open_index(live.settings.index_path) as index:  # labels as decisions leave them, made at once
        pairs = [(a, b) for position, a in enumerate(ids) for b in ids[position + 1 :]]
        same = {frozenset(m["file_id"] for m in g["members"]) for g in groups.values()}
        for a, b in pairs:
            label = "duplicate" if any({a, b} <= group for group in same) else "different"
            labelling.label_pairs(index, [(a, b)], label, "confirmed")
    first, second = await asyncio.gather(
        live.post("/api/model/retrain", {}), live.post("/api/model/retrain", {})
    )
    statuses = sorted([first.status, second.status])
    assert statuses == [200, 409], statuses
    refused = await (second if second.status == 409 else first).json()
    assert "already running" in refused["error"]["message"]
    outcome = await (first if first.status == 200 else second).json()
    assert outcome["labels"] == len(pairs) and outcome["figures"]["user_labels"] == len(pairs)
    model = await live.json("GET", "/api/model")
    assert model["retraining"]["running"] is False
    assert model["retraining"]["last"]["reason"] == outcome["reason"]
    assert model["verifier"]["source"] == ("user" if outcome["adopted"] else "shipped")


async def test_a_batch_by_rule_labels_each_copy_with_its_keeper(live, album):
    groups = await groups_by_name(live, album)
    rule = {"dry_run": True, "rule": {"kinds": ["exact", "near"]}}
    preview = await live.json("POST", "/api/decisions/bulk", rule, status=201)
    body = {"dry_run": False, "preview_id": preview["id"]}
    batch = await live.json("POST", "/api/decisions/bulk", body, status=202)
    await wait_batch(live, batch["id"], ("applied",), timeout=120)
    labels = stored_labels(live)
    for group in groups.values():
        keeper = next(m["file_id"] for m in group["members"] if m["suggested"] == "keep")
        for member in group["members"]:
            if member["file_id"] != keeper:
                pair = tuple(sorted((keeper, member["file_id"])))
                assert labels[pair][:2] == ("duplicate", "applied"), (group, labels)
    assert len(labels) == sum(len(g["members"]) - 1 for g in groups.values())
