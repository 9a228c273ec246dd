"""Scan jobs launched over HTTP: walk a folder, then feed its files in batches through the daemon's one
scanner (hash, link, regroup) on its writer thread, with progress, and cancel between batches. A job's own
threshold or orientations are matching options of its batches over the same index and HashIndex, so what
it hashed is matched with every file the watcher lands later."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import itertools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from comparimg.config import deepest_root
from comparimg.model import Conflict, NotFound
from comparimg.scanner import MatchOptions, ScanOptions
from comparimg.scanner.walk import FoundFile, walk_images

log = logging.getLogger("comparimg.web")
BATCH = 32


class JobState(enum.StrEnum):
    """Where a scan job is (the API shows the value)."""

    queued = "queued"
    running = "running"
    done = "done"
    cancelled = "cancelled"
    failed = "failed"


ENDED = (JobState.done, JobState.cancelled, JobState.failed)


class Daemon(Protocol):
    """What jobs need of the service (`door.Door` gives it)."""

    def scan_options(self) -> ScanOptions:
        """Return the scanner's options in force (extensions, excludes, matching). Raise Conflict when
        the pipeline is not running."""
        ...

    async def ingest_files(self, found: list[tuple[str, str]], match: MatchOptions) -> dict[str, Any]:
        """Ingest (path, root) pairs through the daemon's scanner with these matching options; return the
        report (`ScanReport.as_dict()`)."""
        ...

    def count_report(self, report: dict[str, Any]) -> None:
        """Add a batch's report to the daemon's totals."""
        ...


@dataclasses.dataclass
class Job:
    """One scan job and its progress."""

    id: int
    path: str
    root: str
    recursive: bool
    threshold: int
    orientations: bool
    state: JobState = JobState.queued
    total: int | None = None
    done: int = 0
    hashed: int = 0
    errors: int = 0
    groups: int = 0
    error: str | None = None
    started: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the job as the API shows it."""
        return dataclasses.asdict(self)


def list_images(
    folder: str, recursive: bool, extensions: frozenset[str], exclude: tuple[str, ...]
) -> list[str]:
    """Return the image paths a job covers: the whole tree, or only the folder's own files."""
    if not recursive:
        exclude = (*exclude, "*/*")  # prunes the walk below the first level of sub-folders
    found = (item.path for item in walk_images(folder, extensions, exclude) if isinstance(item, FoundFile))
    if recursive:
        return list(found)
    return [path for path in found if os.path.dirname(path) == folder.rstrip("/")]


class JobRunner:
    """Runs jobs one at a time (they share the one index writer), newest first in listings."""

    def __init__(self, daemon: Daemon, publish: Callable[[str, dict[str, Any]], None]):
        self.daemon = daemon
        self.publish = publish
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._tasks: dict[int, asyncio.Task] = {}
        self._one_at_a_time = asyncio.Lock()

    def start(self, path: str, root: str, recursive: bool, threshold: int, orientations: bool) -> Job:
        """Queue a job for a checked folder (`root` is the configured root holding it); return it."""
        job = Job(next(self._ids), path, root, recursive, threshold, orientations)
        self._jobs[job.id] = job
        self._tasks[job.id] = asyncio.ensure_future(self._run(job))
        self.publish("job", job.as_dict())
        return job

    def jobs(self) -> list[Job]:
        """Return every job of this run, newest first."""
        return sorted(self._jobs.values(), key=lambda job: -job.id)

    def job(self, job_id: int) -> Job:
        """Return one job. Raise NotFound."""
        if job_id not in self._jobs:
            raise NotFound(f"no job {job_id}")
        return self._jobs[job_id]

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued or running job (it stops before its next batch). Raise NotFound or Conflict."""
        job = self.job(job_id)
        if job.state in ENDED:
            raise Conflict(f"job {job_id} has already ended ({job.state})")
        self._tasks[job_id].cancel()
        return job

    async def close(self) -> None:
        """Cancel every job and wait for them to stop."""
        for task in self._tasks.values():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, job: Job) -> None:
        try:
            async with self._one_at_a_time:
                job.state = JobState.running
                self.publish("job", job.as_dict())
                await self._scan(job)
                job.state = JobState.done
        except asyncio.CancelledError:
            job.state = JobState.cancelled
        except Exception as error:  # a loop boundary: the job fails, the daemon goes on
            job.state, job.error = JobState.failed, f"{type(error).__name__}: {error}"
        finally:
            job.finished = time.time()
            self.publish("job", job.as_dict())
            log.info(
                "event=job_ended job=%d path=%r state=%s files=%s hashed=%d errors=%d error=%r",
                job.id,
                job.path,
                job.state,
                job.done,
                job.hashed,
                job.errors,
                job.error,
            )

    async def _scan(self, job: Job) -> None:
        options = self.daemon.scan_options()
        paths = await asyncio.to_thread(
            list_images, job.path, job.recursive, options.extensions, options.exclude
        )
        job.total = len(paths)
        match = dataclasses.replace(options.match, threshold=job.threshold, orientations=job.orientations)
        for start in range(0, len(paths), BATCH):
            batch = [(path, job.root) for path in paths[start : start + BATCH]]
            report = await self.daemon.ingest_files(batch, match)
            self.daemon.count_report(report)
            job.done += len(batch)
            job.hashed += report["hashed"]
            job.errors += report["errors"]
            job.groups = report["groups"] or job.groups
            self.publish("job", job.as_dict())
        self.publish("group", {"job": job.id})


def root_holding(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """Return the deepest of `roots` that holds `path` (or is it), comparing resolved paths."""
    base = deepest_root(os.path.realpath(path), [os.path.realpath(root) for root in roots])
    return Path(base) if base else None
