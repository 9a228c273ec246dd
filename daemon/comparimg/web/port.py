"""What the web room needs from the running daemon: the seam `service.Service` already offers.

`cli run` passes a companion to the service; once the service runs, the companion calls
`web.create_app(settings, service, config_path=...)` and starts it on the same loop. The web room owns the
decision queue, the sorter, jobs and everything HTTP; every index write of the web room (decisions, the
sorter's journal, not-duplicates, rows of moved files) runs on the service's single writer thread (`write`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from comparimg.config import Settings, deepest_root
from comparimg.model import Conflict
from comparimg.scanner import Scanner
from comparimg.verdicts.store import ModelStore, VerifierHolder


class PipelinePort(Protocol):
    """The part of `pipeline.ScannerPipeline` the web room uses (only on the writer thread)."""

    scanner: Scanner


class DaemonPort(Protocol):
    """The daemon as the web room sees it."""

    settings: Settings
    pipeline: PipelinePort | None
    model_store: ModelStore  # the user's retrained verifiers on disk
    verifier: VerifierHolder  # the verifier in use

    def status(self) -> dict[str, Any]:
        """Return {"state", "version", "uptime_seconds", "roots", "queue_depth", "hashed", "last_errors"…}."""
        ...

    def activity(self) -> dict[str, Any]:
        """Return what the daemon did since it started (for `export.daemon_stats`)."""
        ...

    def count_report(self, report: dict[str, Any]) -> None:
        """Add the report of an API scan job's batch to the daemon's totals."""
        ...

    async def write(self, func: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        """Run `func(*args)` on the daemon's single index-writer thread; return its result. An `urgent`
        (short) job runs between the tasks of a long one rather than after it."""
        ...

    async def apply_settings(self, new: Settings) -> None:
        """Apply validated, saved settings to the running daemon (what SIGHUP does after re-reading)."""
        ...


async def files_moved(
    daemon: DaemonPort, moves: list[tuple[int, str | None]], roots: tuple[Path, ...]
) -> None:
    """Tell the index that files left their path (None: trashed or moved out of the roots) or came back
    (a path, after an undo), so their rows and groups follow at once rather than at the next scan."""
    if daemon.pipeline is not None and moves:
        await daemon.write(_files_moved, daemon.pipeline.scanner, moves, roots)


def _files_moved(scanner: Scanner, moves: list[tuple[int, str | None]], roots: tuple[Path, ...]) -> None:
    gone: list[str] = []
    back: list[tuple[str, str]] = []
    for file_id, new_path in moves:
        row = scanner.index.file_by_id(file_id)
        if new_path is None:
            if row is not None and not os.path.lexists(row.path):
                gone.append(row.path)
            continue
        root = deepest_root(new_path, roots)
        if root is not None:
            back.append((new_path, root))
    if gone:
        scanner.forget_paths(gone)
    if back:
        scanner.ingest_files(back)


async def files_gone(daemon: DaemonPort, file_ids: list[int]) -> None:
    """Tell the index that files were trashed or moved away, through the writer's urgent lane: forgetting
    them only marks rows missing and regroups, which may run between the tasks of a long scan."""
    if daemon.pipeline is not None and file_ids:
        await daemon.write(
            _files_moved, daemon.pipeline.scanner, [(f, None) for f in file_ids], (), urgent=True
        )


async def not_duplicates(daemon: DaemonPort, file_ids: list[int]) -> None:
    """Remember that no two of `file_ids` are duplicates and regroup them, on the daemon's writer."""
    if daemon.pipeline is None:
        raise Conflict("the daemon's pipeline is not running")
    await daemon.write(_not_duplicates, daemon.pipeline.scanner, file_ids, urgent=True)


def _not_duplicates(scanner: Scanner, file_ids: list[int]) -> None:
    ids = sorted(set(file_ids))
    now = time.time()
    with scanner.index.transaction(durable=True):
        for position, first in enumerate(ids):
            for second in ids[position + 1 :]:
                scanner.index.add_not_duplicate(first, second, now)
    scanner.linker.regroup(ids)
