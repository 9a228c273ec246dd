"""A batch interrupted by a crash: the daemon dies inside a trash of the batch (a crash point between
linking and unlinking), then is SIGKILLed in the middle of the batch's undo. After each restart every file
is in exactly one place, and the batch can be finished, then undone, byte-identical."""

from __future__ import annotations

import collections
import contextlib
import json
import re
import urllib.error
import urllib.request

import pytest

from bulk_support import make_pairs, tree_hashes
from daemon_harness import Daemon, wait_for

PAIRS = 300
pytestmark = pytest.mark.timeout(300)


def api(daemon: Daemon, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """Call the daemon's API with its token; return (status, JSON body)."""
    port = re.findall(r"event=http_listening host=\S+ port=(\d+)", daemon.log())[-1]
    token = (daemon.workdir / "token").read_text().strip()
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def batch(daemon: Daemon, batch_id: int) -> dict:
    status, body = api(daemon, "GET", f"/api/decisions/bulk/{batch_id}")
    assert status == 200, body
    return body


def settled(daemon: Daemon, batch_id: int, state: str) -> dict:
    wait_for(
        lambda: (b := batch(daemon, batch_id))["state"] == state and not b["running"], 120, message=state
    )
    return batch(daemon, batch_id)


def in_one_place(before: dict, *folders) -> None:
    """Every file's bytes exist exactly once over the folders, and nothing else is there."""
    now = collections.Counter(tree_hashes(*folders).values())
    assert now == collections.Counter(before.values())


def test_a_batch_survives_a_crash_mid_apply_and_a_kill_mid_undo(tmp_path):
    root, trash = tmp_path / "photos", tmp_path / "trash"
    make_pairs(root, PAIRS, 0)
    before = tree_hashes(root)
    daemon = Daemon(
        tmp_path,
        [root],
        extra_yaml=f"sorter:\n  trash: {json.dumps(str(trash))}\n",
        env={"COMPARIMG_CRASH_AT": "linked"},
    )
    daemon.start().wait_log("event=http_listening")
    try:
        wait_for(
            lambda: api(daemon, "GET", "/api/groups?limit=1")[1]["total"] == PAIRS, 120, message="groups"
        )
        status, preview = api(daemon, "POST", "/api/decisions/bulk", {"dry_run": True, "rule": {}})
        assert status == 201 and preview["files"] == PAIRS
        confirm = {"dry_run": False, "preview_id": preview["id"]}
        with contextlib.suppress(ConnectionError):  # the crash may come before the 202 is written
            api(daemon, "POST", "/api/decisions/bulk", confirm)
        assert daemon.process is not None and daemon.process.wait(60) == 70  # died inside the first trash

        daemon.env.pop("COMPARIMG_CRASH_AT")
        daemon.start().wait_log("event=http_listening", count=2)  # the app recovered the sorter's journal
        in_one_place(before, root, trash)
        interrupted = batch(daemon, preview["id"])
        assert interrupted["state"] == "applying" and not interrupted["running"]
        assert interrupted["progress"]["pending"] >= PAIRS - 1

        status, _ = api(
            daemon, "POST", "/api/decisions/bulk", {"dry_run": False, "preview_id": preview["id"]}
        )
        assert status == 202
        finished = settled(daemon, preview["id"], "applied")
        assert finished["progress"]["applied"] == PAIRS, finished["progress"]
        in_one_place(before, root, trash)
        assert len(tree_hashes(root)) == PAIRS

        status, _ = api(daemon, "POST", f"/api/undo/batch/{preview['id']}")
        assert status == 202
        wait_for(lambda: batch(daemon, preview["id"])["progress"]["undone"] >= 10, 60, message="undo started")
        assert batch(daemon, preview["id"])["state"] == "undoing"
        daemon.kill()

        daemon.start().wait_log("event=http_listening", count=3)
        in_one_place(before, root, trash)
        assert batch(daemon, preview["id"])["state"] == "undoing"
        status, _ = api(daemon, "POST", f"/api/undo/batch/{preview['id']}")
        assert status == 202
        undone = settled(daemon, preview["id"], "undone")
        assert undone["reason"] is None and undone["progress"]["undone"] == PAIRS, undone
        assert tree_hashes(root) == before
        assert tree_hashes(trash) == {}
        actions = api(daemon, "GET", "/api/actions?limit=1000")[1]["actions"]
        assert {a["state"] for a in actions if a["kind"] == "trash"} == {"undone"}
    finally:
        daemon.stop()
