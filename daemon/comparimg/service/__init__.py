"""The daemon: wire watcher, stability tracker, hashing, index and sorter together on one asyncio loop.

Flow: watchdog threads hand hints to the loop (`Service._from_thread`, the one place threads meet it) →
the hint table (`hints`) sends each kind to its handler → the stability tracker holds each changed path
until it stops changing → ready paths go through a bounded queue (back-pressure) to hashing tasks (worker
processes) → the index's one writer thread stores, matches and groups (`ingest`) → the duplicates JSON is
rewritten atomically (`notifications`). Reconciles (incremental scans) run at start-up, on inotify
overflow, when the watch limit is hit, on a schedule and when a paused root comes back; a root that
disappears is paused and none of its files is marked deleted (`roots`). The service owns the settings and
pushes each change to the rooms holding a piece of them (`reload`); the web reaches it through one door
(`door.Core`).

    service/daemon.py          Service: owns settings, index writer and readers, sorter, pipeline; life cycle
    service/roots.py           root supervision: pause / resume roots that disappear and come back
    service/ingest.py          settle → hash → store, reconciles, moves and deletions
    service/hints.py           the typed table routing watcher hints
    service/reload.py          SIGHUP and PATCH: apply settings, push them to every room
    service/notifications.py   systemd status and watchdog, the duplicates JSON
    service/interfaces.py      the pipeline and companion it is given, its counters
    service/backups.py         daily and clean-stop backups of the index
    service/door.py            the one door the web reaches the core by
    service/decision_queue.py  check, queue and apply decisions through the sorter
    service/bulk_actions.py    decisions by rule: preview, apply and undo a batch a chunk at a time
    service/jobs.py            scan jobs through the daemon's one scanner
    service/run.py             `comparimg run`: settings, exit statuses
"""

from comparimg.service.daemon import Service
from comparimg.service.ingest import snapshot_of
from comparimg.service.interfaces import Companion, Pipeline, PipelineFactory, Stats
from comparimg.service.roots import RootState, root_is_present
from comparimg.service.run import (
    EXIT_ALREADY_RUNNING,
    EXIT_INDEX_DAMAGED,
    EXIT_START_FAILED,
    config_to_read,
    default_config_file,
    format_settings_error,
    run_command,
    run_service,
    settings_for_run,
)

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_INDEX_DAMAGED",
    "EXIT_START_FAILED",
    "Companion",
    "Pipeline",
    "PipelineFactory",
    "RootState",
    "Service",
    "Stats",
    "config_to_read",
    "default_config_file",
    "format_settings_error",
    "root_is_present",
    "run_command",
    "run_service",
    "settings_for_run",
    "snapshot_of",
]
