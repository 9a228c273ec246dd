"""Views about the daemon itself: status, configuration, scan jobs, export, events, metrics, the page."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from comparimg import config
from comparimg.export import build_export, daemon_stats
from comparimg.index import Index, review
from comparimg.model import Refused
from comparimg.service.jobs import root_holding
from comparimg.web import config_patch, schemas
from comparimg.web.errors import BadInput
from comparimg.web.events import sse_frame
from comparimg.web.inputs import BODY, QUERY, path_id
from comparimg.web.keys import CONFIG_LOCK, CONFIG_PATH, CORE, EVENTS, METRICS, current_settings

log = logging.getLogger("comparimg.web")
HEARTBEAT_SECONDS = 15.0
STATUS_ERRORS = 10
STATIC = resources.files("comparimg.web") / "static"


async def status_document(app: web.Application) -> dict[str, Any]:
    """Return the status: the daemon's own view, the index counts, the decision queue, and the last errors
    (the daemon's own, then the files the index holds in error, most recent first; at most
    STATUS_ERRORS, `error_count` says how many there are)."""
    daemon_status = dict(app[CORE].status())

    def read(index: Index) -> tuple[dict[str, int], int, list[tuple[str, str]]]:
        return index.counts(), review.queued_count(index.db), review.recent_errors(index.db, STATUS_ERRORS)

    counts, queued, broken = await app[CORE].read(read)
    own = [str(e) for e in daemon_status.get("last_errors", [])]
    paused = [r["path"] for r in daemon_status.get("roots", []) if r.get("state") == "paused"]
    return {
        **daemon_status,
        "counts": counts,
        "decisions_queued": queued,
        "paused_roots": paused,
        "last_errors": [*own, *(f"{path}: {reason}" for path, reason in broken)][:STATUS_ERRORS],
        "error_count": len(own) + counts.get("files_error", 0),
    }


async def get_status(request: web.Request) -> web.Response:
    """GET /api/status → state, counts, queue depth, decisions queued, paused roots, errors, version."""
    return web.json_response(await status_document(request.app))


async def get_config(request: web.Request) -> web.Response:
    """GET /api/config → the settings in force, YAML-shaped."""
    return web.json_response(config.settings_to_dict(current_settings(request.app)))


async def patch_config(request: web.Request) -> web.Response:
    """PATCH /api/config {partial YAML-shaped mapping} → the new settings. Only the settings of
    `config_patch.api_settable` may change (403 `file_only_setting` naming the key otherwise); the change is
    validated by the same schema as the YAML file (400), merged into the configuration file's own content
    (never the command-line overrides), then applied live."""
    patch = request[BODY]
    app = request.app
    config_patch.check_settable(patch)
    async with app[CONFIG_LOCK]:  # two patches at once must not lose one another's keys
        old = app[CORE].settings
        new = dataclasses.replace(config.apply_patch(old, patch), source=old.source)
        if new.http != old.http:  # check_settable refuses http.*; never lock the API out
            raise Refused("this change would move what the API is bound to; it was not applied")
        await asyncio.to_thread(config_patch.save_patch, app[CONFIG_PATH], patch)
        await app[CORE].apply_settings(new)
    app[EVENTS].publish("status", {"reason": "config"})
    log.info("event=config_changed by=api keys=%s", ",".join(_key_paths(patch)))
    return web.json_response(config.settings_to_dict(current_settings(app)))


def _key_paths(patch: dict[str, Any]) -> list[str]:
    return [
        f"{key}.{sub}" if isinstance(value, dict) else str(key)
        for key, value in patch.items()
        for sub in (value if isinstance(value, dict) else [None])
    ]


async def post_job(request: web.Request) -> web.Response:
    """POST /api/jobs {"path", "recursive"?, "threshold"?, "orientations"?} → 201 with the job.

    The folder must resolve inside `http.allowed_scan_roots` (403 otherwise) and exist (400)."""
    body: schemas.JobRequest = request[BODY]
    settings = current_settings(request.app)
    raw = body.path
    if not os.path.isabs(raw):
        raise BadInput("path must be absolute")
    folder = Path(os.path.realpath(raw))
    if root_holding(folder, settings.scan_roots()) is None:
        raise Refused(f"{raw} is not under an allowed scan root")
    if not folder.is_dir():
        raise BadInput(f"{raw} is not a folder")
    recursive = body.recursive
    threshold = settings.matching.threshold if body.threshold is None else body.threshold
    orientations = settings.matching.orientations if body.orientations is None else body.orientations
    root = root_holding(folder, settings.root_paths()) or folder
    job = request.app[CORE].jobs.start(str(folder), str(root), recursive, threshold, orientations)
    log.info(
        "event=job_started by=api job=%d path=%r recursive=%s threshold=%d orientations=%s",
        job.id,
        job.path,
        recursive,
        threshold,
        orientations,
    )
    return web.json_response(job.as_dict(), status=201)


async def list_jobs(request: web.Request) -> web.Response:
    """GET /api/jobs → {"jobs": [...]}, newest first."""
    return web.json_response({"jobs": [job.as_dict() for job in request.app[CORE].jobs.jobs()]})


async def get_job(request: web.Request) -> web.Response:
    """GET /api/jobs/{id} → one job with its progress. 404 for an unknown id."""
    return web.json_response(request.app[CORE].jobs.job(path_id(request)).as_dict())


async def cancel_job(request: web.Request) -> web.Response:
    """DELETE /api/jobs/{id} → the job (it stops before its next batch). 404 unknown, 409 ended."""
    job = request.app[CORE].jobs.cancel(path_id(request))
    log.info("event=job_cancel_requested by=api job=%d path=%r", job.id, job.path)
    return web.json_response(job.as_dict())


async def get_export(request: web.Request) -> web.Response:
    """GET /api/export → the duplicates JSON (the same document as `comparimg scan --json`, its `stats`
    those of the daemon: `export.daemon_stats`)."""
    roots = [str(p) for p in current_settings(request.app).root_paths()]  # build_export makes them absolute
    activity = request.app[CORE].activity()

    def read(index: Index) -> dict[str, Any]:
        return build_export(index, roots, daemon_stats(index.counts(), activity))

    return web.json_response(await request.app[CORE].read(read))


async def events(request: web.Request) -> web.StreamResponse:
    """GET /api/events → text/event-stream: group, job, decision, decision_applied, undone, status."""
    hub = request.app[EVENTS]
    queue = hub.subscribe()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    left = request[QUERY].max_events or -1  # -1: never ends
    try:
        await response.write(sse_frame("hello", {"status": await status_document(request.app)}))
        left -= 1
        while not hub.closed and left != 0:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if item is None:
                break
            await response.write(sse_frame(*item))
            left -= 1
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics → Prometheus text format (token required, as for the API)."""
    status = await status_document(request.app)
    body = await asyncio.to_thread(request.app[METRICS].render, status)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index_page(request: web.Request) -> web.Response:
    """GET / → the review page (static; it authenticates with the login cookie)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    return web.Response(
        text=page,
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            "Cache-Control": "no-store",
        },
    )


def static_root() -> Path:
    """Return the folder of the page's static files."""
    return Path(str(STATIC))
