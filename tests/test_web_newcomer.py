"""What a newcomer met on the daemon's API (issue 10): the export's `stats`, the status document, the log
of what people do through the API, and `PATCH /api/config` saving only what it changed. The real daemon
and the real aiohttp app on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys

import pytest
import yaml

from comparimg import cli
from comparimg.export import REPORT_KEYS, STATS_KEYS
from comparimg.scanner import ScanReport
from comparimg.service import settings_for_run
from web_support import make_settings, start_live, stop_live


async def wait_for(predicate, timeout: float = 30.0):
    """Poll an async predicate until it returns something true; return that. Fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def photos(tmp_path, write_photo):
    """A root holding a photo, an exact copy of it and a file that is not an image."""
    root = tmp_path / "photos"
    original = write_photo(root / "a.jpg", "astronaut", size=(256, 256))
    shutil.copyfile(original, root / "b.jpg")
    (root / "broken.jpg").write_bytes(b"not a picture at all")
    return root


async def watching(live) -> dict:
    async def settled():
        status = await live.json("GET", "/api/status")
        return status if status["state"] == "watching" else None

    return await wait_for(settled)


def test_report_keys_are_the_scan_reports_fields():
    assert ScanReport.__slots__ == REPORT_KEYS


async def test_export_stats_have_the_shape_of_the_scan_stats(photos, tmp_path, aiohttp_client, monkeypatch):
    out = tmp_path / "scan.json"
    monkeypatch.setattr(sys, "argv", ["comparimg"])
    status = await asyncio.to_thread(cli.main, ["scan", str(photos), "--json", str(out), "--workers", "1"])
    assert status == 0
    scan_stats = json.loads(out.read_text())["stats"]
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        await watching(live)
        served = (await live.json("GET", "/api/export"))["stats"]
        export_file = live.settings.export_path

        async def written():
            return export_file.exists() and json.loads(export_file.read_text())["groups"]

        await wait_for(written)
        kept = json.loads(export_file.read_text())["stats"]
    finally:
        await stop_live(live, task)
    assert set(scan_stats) == set(served) == set(kept) == set(STATS_KEYS)
    assert served["files"] == scan_stats["files"] == 3
    assert served["errors"] == scan_stats["errors"] == 1
    assert served["groups"] == scan_stats["groups"] == 1
    assert served["hashed"] >= 2 and served["threshold"] == 10 and served["workers"] == 1


async def test_status_has_one_name_per_field_counts_the_start_up_scan_and_shows_broken_files(
    photos, tmp_path, aiohttp_client
):
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        status = await watching(live)
    finally:
        await stop_live(live, task)
    assert "uptime" not in status and "queue" not in status
    assert isinstance(status["uptime_seconds"], float) and status["queue_depth"] == 0
    assert status["hashed"] == 2  # by the start-up scan (the third file is in error)
    assert any(str(photos / "broken.jpg") in error for error in status["last_errors"])
    assert status["error_count"] == 1


async def test_each_action_through_the_api_is_one_log_line(photos, tmp_path, aiohttp_client, caplog):
    caplog.set_level(logging.INFO, logger="comparimg")
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        await watching(live)
        job = await live.json("POST", "/api/jobs", {"path": str(photos)}, status=201)
        await live.wait_job(job["id"])
        group = (await live.json("GET", "/api/groups"))["groups"][0]
        keep, copy = group["members"][0], group["members"][1]
        queued = await live.json(
            "POST", "/api/decisions", {"action": "keep", "file_id": keep["file_id"]}, status=201
        )
        await live.json("DELETE", f"/api/decisions/{queued['id']}")
        await live.json("POST", "/api/decisions", {"action": "trash", "file_id": copy["file_id"]}, status=201)
        applied = await live.json("POST", "/api/decisions/apply", {})
        action_id = applied["outcomes"][0]["action_id"]
        await live.json("POST", f"/api/undo/{action_id}", {})
    finally:
        await stop_live(live, task)
    lines = [r.getMessage() for r in caplog.records if r.name == "comparimg.web"]

    def one(event: str, count: int = 1) -> str:
        found = [line for line in lines if line.startswith(f"event={event} ")]
        assert len(found) == count, (event, lines)
        return " ".join(found)

    assert str(photos) in one("job_started") and "by=api" in one("job_started")
    assert "state=done" in one("job_ended")
    assert keep["path"] in one("decision_queued", 2) and copy["path"] in one("decision_queued", 2)
    assert keep["path"] in one("decision_cancelled") and "by=api" in one("decision_cancelled")
    assert copy["path"] in one("decisions_applied") and "applied=1" in one("decisions_applied")
    assert copy["path"] in one("undo") and "by=api" in one("undo") and f"action={action_id}" in one("undo")


async def test_a_patch_saves_what_it_changed_not_the_command_line_overrides(tmp_path, aiohttp_client):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("# mine\nroots: [~/Pictures]\nmatching:\n  orientations: false\n")
    config_file.chmod(0o640)
    scratch = make_settings(tmp_path)
    settings = settings_for_run(
        str(config_file),
        watch=[str(tmp_path / "photos")],
        index=str(scratch.index_path),
        export=str(scratch.export_path),
        listen="127.0.0.1:0",
        token_file=str(scratch.http.token_file),
    )
    live, task = await start_live(tmp_path, aiohttp_client, settings=settings, config_path=config_file)
    try:
        new = await live.json("PATCH", "/api/config", {"matching": {"threshold": 6}})
        assert new["matching"] == {"threshold": 6, "orientations": False, "crops": True, "mode": "hash+model"}
        assert new["roots"][0]["path"] == str(tmp_path / "photos")  # the override is still in force
    finally:
        await stop_live(live, task)
    assert yaml.safe_load(config_file.read_text()) == {
        "roots": ["~/Pictures"],
        "matching": {"orientations": False, "threshold": 6},
    }
    assert config_file.stat().st_mode & 0o777 == 0o640


async def test_a_patch_without_a_configuration_file_writes_only_the_patch(tmp_path, aiohttp_client):
    live, task = await start_live(tmp_path, aiohttp_client)
    try:
        await live.json(
            "PATCH", "/api/config", {"watch": {"settle_seconds": 1.5}, "logging": {"level": "debug"}}
        )
    finally:
        await stop_live(live, task)
    saved = yaml.safe_load((tmp_path / "state" / "config.yaml").read_text())
    assert saved == {"watch": {"settle_seconds": 1.5}, "logging": {"level": "debug"}}
