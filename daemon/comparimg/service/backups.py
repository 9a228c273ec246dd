"""Backups of the index (it holds the decisions and the sorter's journal): daily, and at each clean stop.
SQLite's online backup reads a snapshot beside the writer; a failure keeps the older backups."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from comparimg.index import backup_index
from comparimg.model import ComparImgError
from comparimg.service.interfaces import Stats

log = logging.getLogger("comparimg.service")

BACKUP_INTERVAL_SECONDS = 86_400.0  # besides the backup at each clean stop


class Backups:
    """Backs up one index file, recording failures in the service's last errors."""

    def __init__(self, index_path: Path, stats: Stats):
        self.index_path = Path(index_path)
        self.stats = stats

    async def loop(self) -> None:
        """Back up every BACKUP_INTERVAL_SECONDS."""
        while True:
            await asyncio.sleep(BACKUP_INTERVAL_SECONDS)
            await self.back_up("daily")

    async def back_up(self, reason: str) -> None:
        """Back up the index now; log where, or why not."""
        try:
            target = await asyncio.to_thread(backup_index, self.index_path)
        except (OSError, ComparImgError) as error:
            log.error("event=backup_failed reason=%r error=%r", reason, str(error))
            self.stats.errors.append(f"backup: {error}")
            return
        log.info("event=backed_up path=%r reason=%r", str(target), reason)
