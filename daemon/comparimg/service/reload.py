"""Settings changes (SIGHUP, `PATCH /api/config`): the service owns the settings and pushes each change to
every room that holds a piece of them — the stability tracker, logging, the sorter (roots, trash, move
targets), the scanner (matching, include/exclude: a new pipeline) and the watcher (roots, observer). The
web room holds none: it reads them through the service. `http` and `index` stay as started until a restart
(the server listens where it was started, and its Host check must match that)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from comparimg.config import Settings
from comparimg.logs import configure_logging
from comparimg.model import ConfigError
from comparimg.pipeline import pipeline_changes
from comparimg.service.roots import root_paths

if TYPE_CHECKING:
    from comparimg.service.daemon import Service

log = logging.getLogger("comparimg.service")


def pinned(new: Settings, old: Settings) -> Settings:
    """Given new settings and those in force, return the new ones with `http` and `index` kept as they are
    (they change only with a restart)."""
    if new.index_path != old.index_path or new.http != old.http:
        log.warning("event=reload_partial reason=%r", "index and http changes need a restart")
    return dataclasses.replace(new, index_path=old.index_path, http=old.http)


class Reloader:
    """Re-reads the configuration on SIGHUP and applies settings to the running service."""

    def __init__(self, service: Service, reload_settings: Callable[[], Settings] | None):
        self.service = service
        self.reload_settings = reload_settings
        self._one_at_a_time = asyncio.Lock()  # a SIGHUP and a PATCH never interleave their pushes

    async def reload(self) -> bool:
        """Re-read the configuration; apply it if valid, keep the old one if not. Return whether applied."""
        service = self.service
        if self.reload_settings is None:
            log.warning("event=reload_ignored reason=%r", "no configuration source")
            return False
        service.notifications.notifier.reloading()
        try:
            new = await asyncio.to_thread(self.reload_settings)
        except ConfigError as error:
            log.error("event=reload_refused error=%r", str(error))
            service.stats.errors.append(f"reload: {error}")
            return False
        else:
            await self.apply(new)
            return True
        finally:
            # After RELOADING=1 systemd waits for READY=1 whatever happened; refused, the old settings stay.
            service.notifications.notifier.send("READY=1", f"STATUS={service.notifications.status_line()}")

    async def apply(self, new: Settings) -> None:
        """Given validated settings, make them the service's and push them to every room holding a piece."""
        async with self._one_at_a_time:
            await self._apply(new)

    async def _apply(self, new: Settings) -> None:
        service = self.service
        old = service.settings
        service.settings = new = pinned(new, old)
        service.tracker.settle_seconds = new.watch.settle_seconds
        if new.logging != old.logging:
            configure_logging(new.logging.format, new.logging.level)
        if service.sorter is not None:
            await service.write(service.sorter.retarget, new.root_paths(), new.sorter, urgent=True)
        restart_pipeline = pipeline_changes(old, new)
        if restart_pipeline:
            await service.write(service.swap_pipeline, new)
        if new.watch != old.watch or root_paths(new) != root_paths(old):
            await self._restart_watcher()
        elif restart_pipeline:
            service.ingest.reconcile_in_background(None, "reload")
        service.export_dirty.set()
        log.info("event=reloaded source=%r", new.source)

    async def _restart_watcher(self) -> None:
        service = self.service
        await asyncio.to_thread(service.root_watch.stop)
        service.start_watching()
        service.ingest.reconcile_in_background(None, "reload")
