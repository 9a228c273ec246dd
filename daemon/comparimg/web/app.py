"""The application factory: middlewares, routes, and the resources opened and closed with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from comparimg.config import Settings, reachable_base_url
from comparimg.index import review
from comparimg.web.bulk import BatchRunner
from comparimg.web.errors import error_middleware
from comparimg.web.events import EventHub
from comparimg.web.keys import (
    BATCHES,
    CONFIG_LOCK,
    CONFIG_PATH,
    CORE,
    EVENTS,
    METRICS,
    THUMBNAILER,
    TOKEN,
    current_settings,
)
from comparimg.web.port import Core
from comparimg.web.routes import add_routes
from comparimg.web.runtime import LazyWorkerPool, Metrics
from comparimg.web.security import ensure_token, security_middleware
from comparimg.workers import WorkerLimits

log = logging.getLogger("comparimg.web")
CHANGE_POLL_SECONDS = 1.0


def create_app(core: Core, config_path: Path | None = None) -> web.Application:
    """Given the door to the running daemon (`service.door.Door`) and the configuration file that
    `PATCH /api/config` writes (default: `config.yaml` beside the index), return the aiohttp application
    (not yet started)."""
    settings = core.settings
    app = web.Application(
        middlewares=[error_middleware, security_middleware, _count_requests],
        client_max_size=settings.http.max_body_bytes,
    )
    app[CORE] = core
    app[CONFIG_PATH] = Path(config_path or settings.index_path.parent / "config.yaml")
    app[CONFIG_LOCK] = asyncio.Lock()
    app[EVENTS] = EventHub()
    core.listen(app[EVENTS].publish)
    app.cleanup_ctx.append(_token)
    app.cleanup_ctx.append(_thumbnailer)
    app.cleanup_ctx.append(_batches_and_metrics)
    app.on_shutdown.append(_end_event_streams)
    add_routes(app)
    return app


async def serve(app: web.Application, host: str, port: int) -> Callable[[], Awaitable[None]]:
    """Start `app` on host:port (on the running loop), log the login link, and return the coroutine
    function that stops it (the companion seam of `service.Service`). Raise OSError if it cannot bind."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    settings = current_settings(app).http
    url = login_url_for(settings.host, bound, app[TOKEN])
    log.info("event=http_listening host=%s port=%d token_file=%s", host, bound, settings.token_file)
    print(f"comparimg: open {url} to log in (token in {settings.token_file})", file=sys.stderr, flush=True)
    return runner.cleanup


def login_url(settings: Settings, token: str) -> str:
    """Return the link that logs the page in (printed at start; it carries the token once)."""
    return login_url_for(settings.http.host, settings.http.port, token)


def login_url_for(host: str, port: int, token: str) -> str:
    """Return the login link for a listening address (a wildcard address is shown as 127.0.0.1)."""
    return f"{reachable_base_url(host, port)}/login?token={token}"


async def _token(app: web.Application) -> AsyncIterator[None]:
    app[TOKEN] = ensure_token(current_settings(app).http.token_file)
    yield


async def _thumbnailer(app: web.Application) -> AsyncIterator[None]:
    hashing = current_settings(app).hashing
    app[THUMBNAILER] = LazyWorkerPool(WorkerLimits(hashing.timeout_seconds, hashing.memory_limit_mb))
    yield
    app[THUMBNAILER].close()


async def _batches_and_metrics(app: web.Application) -> AsyncIterator[None]:
    app[BATCHES] = BatchRunner(app)
    app[METRICS] = Metrics()
    initial = await app[CORE].read(_group_signature)
    watcher = asyncio.ensure_future(_publish_changes(app, initial))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await app[BATCHES].close()


async def _publish_changes(app: web.Application, last_groups: tuple[int, int, int]) -> None:
    """Publish `group` when the groups change (whoever found them: watcher, rescan or job) and `status`
    when the daemon's state changes, by looking every CHANGE_POLL_SECONDS (cheap: two counts)."""
    last_state = app[CORE].status().get("state")
    while True:
        await asyncio.sleep(CHANGE_POLL_SECONDS)
        try:
            groups = await app[CORE].read(_group_signature)
        except Exception:  # a loop boundary: log, keep watching
            log.exception("event=change_poll_failed")
            continue
        state = app[CORE].status().get("state")
        if groups != last_groups:
            app[EVENTS].publish("group", {"groups": groups[0], "last_id": groups[1]})
        if state != last_state:
            app[EVENTS].publish("status", {"state": state})
        last_groups, last_state = groups, state


def _group_signature(index) -> tuple[int, int, int]:
    return review.group_signature(index.db)


async def _end_event_streams(app: web.Application) -> None:
    app[EVENTS].close()


@web.middleware
async def _count_requests(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    app = request.app
    if METRICS in app:
        app[METRICS].requests.labels(request.method, route, str(response.status)).inc()
    return response
