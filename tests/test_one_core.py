"""One owner per kind of state (issue 11), against the real daemon process and real files: the service owns
the settings and pushes every change (SIGHUP, PATCH /api/config) to the rooms that act on them; scan jobs
run through the daemon's one scanner, so what a job hashed is matched with what the watcher lands later."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

from PIL import Image

from daemon_harness import Daemon, api_call, photo_bytes, stop_started_daemons, wait_for
from web_support import start_live, stop_live


def sorter_yaml(tmp: Path, targets: dict[str, Path], extra: str = "") -> str:
    lines = "".join(f"    {name}: {json.dumps(str(path))}\n" for name, path in targets.items())
    return f"sorter:\n  trash: {json.dumps(str(tmp / 'trash'))}\n  move_targets:\n{lines}{extra}"


def state_dir(tmp: Path) -> Path:
    (tmp / "state").mkdir()
    return tmp / "state"


def member_ids(daemon: Daemon) -> dict[str, int]:
    """Return {path: file id} of every member of every group the API lists."""
    status, body = api_call(daemon, "GET", "/api/groups?limit=100")
    assert status == 200, body
    return {m["path"]: m["file_id"] for g in body["groups"] for m in g["members"]}


def reload_with(daemon: Daemon, roots: list[Path], extra_yaml: str, reloads: int) -> None:
    daemon.roots, daemon.extra_yaml = roots, extra_yaml
    daemon.write_config()
    daemon.signal(signal.SIGHUP)
    daemon.wait_log("event=reloaded", timeout=20, count=reloads)


def recompressed(data: bytes, quality: int) -> bytes:
    """Return the same picture saved again at another JPEG quality: other bytes, the same image."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def test_a_reload_removing_a_root_and_a_target_is_refused_at_once_and_undone_by_another(tmp_path):
    photos, extra = tmp_path / "photos", tmp_path / "extra"
    for folder in (photos, extra, tmp_path / "best", tmp_path / "archive"):
        folder.mkdir()
    picture = photo_bytes(1)
    for path in (photos / "a.jpg", photos / "a2.jpg", extra / "b.jpg"):
        path.write_bytes(picture)
    both = sorter_yaml(tmp_path, {"best": tmp_path / "best", "archive": tmp_path / "archive"})
    one = sorter_yaml(tmp_path, {"best": tmp_path / "best"})
    daemon = Daemon(state_dir(tmp_path), [photos, extra], settle=0.2, extra_yaml=both)
    try:
        daemon.start()
        ids = wait_for(lambda: len(member_ids(daemon)) == 3 and member_ids(daemon), 30, message="one group")
        a, a2, b = ids[str(photos / "a.jpg")], ids[str(photos / "a2.jpg")], ids[str(extra / "b.jpg")]
        status, queued = api_call(
            daemon, "POST", "/api/decisions", {"action": "move", "file_id": a2, "target": "archive"}
        )
        assert status == 201 and queued["state"] == "queued", queued

        reload_with(daemon, [photos], one, reloads=1)
        # Every room refuses both at once: the decision queue, the sorter, file serving and scan jobs.
        status, body = api_call(
            daemon, "POST", "/api/decisions", {"action": "move", "file_id": a, "target": "archive"}
        )
        assert status == 403 and "archive" in body["error"]["message"], body
        status, body = api_call(daemon, "POST", "/api/decisions/apply", {"ids": [queued["id"]]})
        assert status == 200 and [o["state"] for o in body["outcomes"]] == ["refused"], body
        assert (photos / "a2.jpg").exists() and not list((tmp_path / "archive").iterdir())
        status, body = api_call(daemon, "GET", f"/api/files/{b}/content")
        assert status == 403, body
        status, body = api_call(daemon, "POST", "/api/jobs", {"path": str(extra)})
        assert status == 403, body
        status, config = api_call(daemon, "GET", "/api/config")
        assert [r["path"] for r in config["roots"]] == [str(photos)]
        assert set(config["sorter"]["move_targets"]) == {"best"}

        reload_with(daemon, [photos, extra], both, reloads=2)
        status, body = api_call(daemon, "GET", f"/api/files/{b}/content")
        assert status == 200 and body == picture
        status, job = api_call(daemon, "POST", "/api/jobs", {"path": str(extra)})
        assert status == 201, job
        status, again = api_call(
            daemon, "POST", "/api/decisions", {"action": "move", "file_id": a2, "target": "archive"}
        )
        assert status == 201, again
        status, body = api_call(daemon, "POST", "/api/decisions/apply", {"ids": [again["id"]]})
        assert [o["state"] for o in body["outcomes"]] == ["applied"], body
        assert [p.read_bytes() for p in (tmp_path / "archive").rglob("a2.jpg")] == [picture]
    finally:
        stop_started_daemons()


def test_a_patch_reaches_the_decisions_and_the_scanner_without_restart(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (tmp_path / "best").mkdir()
    picture = photo_bytes(2)
    (photos / "a.jpg").write_bytes(picture)
    (photos / "a2.jpg").write_bytes(picture)
    daemon = Daemon(
        state_dir(tmp_path),
        [photos],
        settle=0.2,
        extra_yaml=sorter_yaml(tmp_path, {"best": tmp_path / "best"}),
    )
    try:
        daemon.start()
        ids = wait_for(lambda: len(member_ids(daemon)) == 2 and member_ids(daemon), 30, message="one group")
        status, body = api_call(daemon, "PATCH", "/api/config", {"sorter": {"move_targets": {"x": "/tmp"}}})
        assert status == 403 and body["error"]["code"] == "file_only_setting", body

        status, body = api_call(
            daemon, "PATCH", "/api/config", {"sorter": {"apply": "on-decide"}, "matching": {"threshold": 6}}
        )
        assert status == 200 and body["matching"]["threshold"] == 6, body
        # The decisions room reads the settings through the service: the next decision is applied at once.
        file_id = ids[str(photos / "a2.jpg")]
        status, decided = api_call(
            daemon, "POST", "/api/decisions", {"action": "move", "file_id": file_id, "target": "best"}
        )
        assert status == 201 and decided["outcome"]["state"] == "applied", decided
        assert [p.read_bytes() for p in (tmp_path / "best").rglob("a2.jpg")] == [picture]
        # The scanner took the new threshold (its pipeline restarted), as the export says.
        wait_for(
            lambda: daemon.read_export().get("stats", {}).get("threshold") == 6, 10, message="threshold 6"
        )
    finally:
        stop_started_daemons()


def test_a_job_with_its_own_threshold_feeds_the_daemons_one_matching_structure(tmp_path):
    photos, incoming = tmp_path / "photos", tmp_path / "incoming"
    photos.mkdir()
    incoming.mkdir()
    (photos / "other.jpg").write_bytes(photo_bytes(7))  # linked at start-up: the HashIndex is loaded
    original = photo_bytes(3)
    (incoming / "job.jpg").write_bytes(original)
    extra = f"  allowed_scan_roots: [{json.dumps(str(incoming))}]\n"
    daemon = Daemon(state_dir(tmp_path), [photos], settle=0.2)
    daemon.extra_yaml = ""
    daemon.write_config(daemon.config_text().replace("http:\n", "http:\n" + extra))
    try:
        daemon.start()
        status, job = api_call(daemon, "POST", "/api/jobs", {"path": str(incoming), "threshold": 12})
        assert status == 201, job

        def finished():
            return api_call(daemon, "GET", f"/api/jobs/{job['id']}")[1]["state"] in ("done", "failed")

        wait_for(finished, 60, message="job done")
        assert api_call(daemon, "GET", f"/api/jobs/{job['id']}")[1]["hashed"] == 1
        copy = recompressed(original, 70)
        assert copy != original
        (photos / "copy.jpg").write_bytes(copy)  # landed through the watcher, matched by the daemon
        wanted = {str(incoming / "job.jpg"), str(photos / "copy.jpg")}
        wait_for(lambda: wanted in daemon.grouped_paths(), 30, message=f"{wanted} grouped")
    finally:
        stop_started_daemons()


async def test_one_writer_connection_serves_the_pipeline_the_sorter_and_the_decisions(
    tmp_path, aiohttp_client
):
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        service = live.service
        assert service.pipeline.index is service.index and service.sorter.db is service.index.db
        seen = []
        queued = await live.json(
            "POST", "/api/decisions", {"action": "not_duplicates", "file_ids": [1, 2]}, 404
        )
        assert queued["error"]["code"] == "not_found"
        await service.door.write(lambda index: seen.append(index))
        assert seen == [service.index]  # the door's writes get the one writer Index
    finally:
        await stop_live(live, task)
