"""What the daemon tells the outside while it runs: systemd status lines and watchdog pings, and the
duplicates JSON rewritten (debounced, atomically) after each change of the index."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from comparimg.notify import Notifier

if TYPE_CHECKING:
    from comparimg.service.daemon import Service

log = logging.getLogger("comparimg.service")

STATUS_SECONDS = 5.0
EXPORT_DEBOUNCE_SECONDS = 0.2
# Between two exports, at least this many times the last one's duration: the export rebuilds the whole
# document, so on a big library under a stream of changes (a batch of 10 000 decisions) it would otherwise
# take a third of the daemon's time; this keeps it near a fifth at most, and the file still follows within
# seconds.
EXPORT_PAUSE_FACTOR = 4.0


class Notifications:
    """The status lines, the watchdog and the export of one service."""

    def __init__(self, service: Service, notifier: Notifier):
        self.service = service
        self.notifier = notifier
        self._exporter = ThreadPoolExecutor(1, thread_name_prefix="comparimg-export")
        self._last_export_seconds = 0.0

    def status_line(self) -> str:
        """Return the one-line state systemd shows (`systemctl status`)."""
        service = self.service
        paused = len(service.root_watch.absent())
        return (
            f"{service.state}: {len(service.roots)} roots ({paused} paused), {service.stats.hashed} hashed, "
            f"{len(service.tracker)} settling, {service.ingest.depth()} queued"
        )

    async def status_loop(self) -> None:
        """Send the status line every STATUS_SECONDS."""
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.notifier.status(self.status_line())

    async def watchdog_loop(self, interval: float) -> None:
        """Ping the systemd watchdog every `interval` seconds while no task is stuck."""
        # Runs on the loop itself: a stalled loop stops the pings and systemd restarts the service; so does
        # a task that keeps failing (the core is stuck though the loop turns).
        while True:
            stuck = self.service.supervisor.stuck()
            if stuck is None:
                self.notifier.watchdog()
            else:
                log.error("event=watchdog_withheld task=%s reason=%r", stuck.task, stuck.reason)
            await asyncio.sleep(interval)

    async def export_loop(self) -> None:
        """Rewrite the duplicates JSON a moment after the index changed."""
        dirty = self.service.export_dirty
        while True:
            await dirty.wait()
            await asyncio.sleep(max(EXPORT_DEBOUNCE_SECONDS, EXPORT_PAUSE_FACTOR * self._last_export_seconds))
            dirty.clear()
            started = time.monotonic()
            await self.write_export()
            self._last_export_seconds = time.monotonic() - started

    async def write_export(self) -> None:
        """Write the duplicates JSON now (on the export thread, through a reader connection)."""
        service = self.service
        target = service.settings.export_path
        if target is None or service.pipeline is None:
            return
        loop = asyncio.get_running_loop()
        try:
            groups = await loop.run_in_executor(
                self._exporter, service.pipeline.write_export, Path(target), service.activity()
            )
        except OSError as error:
            log.error("event=export_failed path=%r error=%r", str(target), str(error))
            service.stats.errors.append(f"export: {error}")
            return
        service.stats.exports += 1
        log.debug("event=exported path=%r groups=%d", str(target), groups)

    def close(self) -> None:
        """Stop the export thread."""
        self._exporter.shutdown(wait=True)
