"""The daemon: wire watcher, stability tracker, hashing and index together on one asyncio loop.

Flow: watchdog threads hand hints to the loop (`_from_thread`, the one place threads meet the loop) →
the stability tracker holds each changed path until it stops changing → ready paths go through a bounded
queue (back-pressure) to hashing tasks (worker processes) → one writer thread stores, matches and groups
→ the duplicates JSON is rewritten atomically. Reconciles (incremental scans) run at start-up, on inotify
overflow, when the watch limit is hit, on a schedule and when a paused root comes back; a root that
disappears is paused and none of its files is marked deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from comparimg import __version__
from comparimg.config import (
    EXIT_CONFIG,
    Settings,
    apply_patch,
    deepest_root,
    load_settings,
    saved_config_file,
)
from comparimg.index import (
    IndexDamaged,
    IndexFull,
    IndexInUse,
    IndexLock,
    backup_index,
    lock_index,
    verify_index,
)
from comparimg.index.connection import disk_full_as_index_full
from comparimg.logs import configure_logging
from comparimg.model import ComparImgError, ConfigError
from comparimg.notify import Notifier, watchdog_interval
from comparimg.pipeline import ScannerPipeline, pipeline_changes
from comparimg.scanner import Cancelled
from comparimg.stability import StabilityTracker
from comparimg.supervision import Supervisor, TaskFailure
from comparimg.watcher import Hint, PathFilter, Watcher, log_watch_limit

log = logging.getLogger("comparimg.service")

ROOT_CHECK_SECONDS = 1.0
STATUS_SECONDS = 5.0
EXPORT_DEBOUNCE_SECONDS = 0.2
DRAIN_SECONDS = 2.0  # the writer's current job gives up within ~0.1 s of the stop; this bounds the rest
INGEST_BATCH = 64
BACKUP_INTERVAL_SECONDS = 86_400.0  # besides the backup at each clean stop
EXIT_START_FAILED = 1
EXIT_INDEX_DAMAGED = 65  # EX_DATAERR: the index file is not a sound ComparImg index (docs/recovery.md)
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: another daemon holds the index's lock


class Pipeline(Protocol):
    """What the service needs from the ingest room; `ScannerPipeline` implements it over `Scanner`.

    Every method runs on the service's single writer thread, except `write_export`, which runs on the
    export thread and reads through a connection of its own.
    """

    def ingest(self, found: list[tuple[str, str]]) -> dict[str, Any]: ...
    def move(self, source: str, destination: str, root: str) -> dict[str, Any]: ...
    def forget(self, paths: list[str]) -> int: ...
    def reconcile(self, root: str) -> dict[str, Any]: ...
    def write_export(self, target: Path, activity: dict[str, Any]) -> int: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


# Called with the settings, the service's stop event and its urgent lane's drain. Once the event is set,
# `ingest` and `reconcile` give up within a fraction of a second (raising `Cancelled`) and what they left
# undone is reconciled at next start. The drain runs the urgent writer jobs waiting (`Service.write(...,
# urgent=True)`): the pipeline calls it between the tasks of its long jobs, with no transaction open.
PipelineFactory = Callable[[Settings, threading.Event, Callable[[], None]], Pipeline]
# An urgent writer job: the function, its arguments and the future its caller awaits.
UrgentJob = tuple[Callable[..., Any], tuple[Any, ...], Future]
# Called once the service runs; returns a coroutine function that stops what it started (the web app).
Companion = Callable[["Service"], Awaitable[Callable[[], Awaitable[None]]]]


@dataclass
class RootState:
    """What the service knows about one configured root."""

    path: str
    present: bool = False
    was_mount: bool = False
    observer: str = ""


@dataclass
class Stats:
    """Counters for status lines and the API."""

    hashed: int = 0
    rehashed: int = 0
    unchanged: int = 0
    moved: int = 0
    verified: int = 0
    deleted: int = 0
    reconciles: int = 0
    overflows: int = 0
    exports: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=10))  # the last ones, for the status

    def add_report(self, report: dict[str, Any]) -> None:
        """Given what one ingest, reconcile or job batch did (a `ScanReport.as_dict()`), add it to the
        totals since the daemon started."""
        for name in ("hashed", "rehashed", "unchanged", "moved", "verified"):
            setattr(self, name, getattr(self, name) + int(report.get(name) or 0))


def snapshot_of(path: str) -> tuple[int, int] | None:
    """Given a path, return (size, mtime_ns) if it is a regular file (not a symlink), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def root_is_present(state: RootState) -> bool:
    """Given a root's state, return whether it is there now (a directory, and still a mount if it was one)."""
    if not os.path.isdir(state.path):
        return False
    return os.path.ismount(state.path) or not state.was_mount


class Service:
    """The running daemon. Create it, then `await run()`; `stop()` and `reload()` may be called any time."""

    def __init__(
        self,
        settings: Settings,
        pipeline_factory: PipelineFactory,
        *,
        reload_settings: Callable[[], Settings] | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        companion: Companion | None = None,
    ):
        """Given settings, a factory of the ingest pipeline and, optionally, how to re-read the settings
        (SIGHUP), a notifier, a clock and a companion (the web app), return a service not yet running."""
        self.settings = settings
        self._pipeline_factory = pipeline_factory
        self._reload_settings = reload_settings
        self._notifier = notifier or Notifier.from_environment()
        self._clock = clock
        self._companion = companion
        self.state = "starting"
        self.stats = Stats()
        self.started = time.time()
        self.roots: dict[str, RootState] = {}
        self.tracker = StabilityTracker(settings.watch.settle_seconds, clock)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="comparimg-writer")
        self._urgent: queue.SimpleQueue[UrgentJob] = queue.SimpleQueue()
        self._index_full: TaskFailure | None = None  # set while writes are refused for want of disk space
        self._exporter = ThreadPoolExecutor(1, thread_name_prefix="comparimg-export")
        self.supervisor = Supervisor(self._set_state)
        self._stopping = asyncio.Event()
        self._stop_flag = threading.Event()  # the same, readable from the writer thread
        self._wake_settle = asyncio.Event()
        self._export_dirty = asyncio.Event()
        self._reconciling: set[str] = set()
        self._ready: asyncio.Queue[tuple[str, str]] = asyncio.Queue(settings.watch.queue_size)
        self._in_flight = 0
        self.pipeline: Pipeline | None = None
        self.watcher: Watcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- public surface (web app, cli) -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the daemon's state for `GET /api/status`: state, roots, queue depth, counters, uptime and
        its own last errors (task failures, export and reload problems; the web room adds the index's)."""
        return {
            "state": self.state,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 1),
            "roots": [
                {"path": r.path, "state": "watching" if r.present else "paused", "observer": r.observer}
                for r in self.roots.values()
            ],
            "pending": len(self.tracker),
            "queue_depth": self._ready.qsize() + self._in_flight,
            "hashed": self.stats.hashed,
            "moved": self.stats.moved,
            "deleted": self.stats.deleted,
            "reconciles": self.stats.reconciles,
            "overflows": self.stats.overflows,
            "problems": self._problems(),
            "last_errors": list(self.stats.errors),
            "model": self._model_stage().get("status"),
        }

    def _problems(self) -> list[dict[str, object]]:
        """Return the failing tasks, then the full index disk if writes are refused for want of space, then
        the model that could not be loaded (the daemon runs in mode `hash` meanwhile)."""
        full = [self._index_full.as_dict()] if self._index_full is not None else []
        model = self._model_stage().get("problem")
        return self.supervisor.problems() + full + ([model] if model else [])

    def _model_stage(self) -> dict[str, Any]:
        """Return {"status": the pipeline's model stage as the status shows it, "problem": the problem
        entry when the model could not be loaded}; empty for a pipeline without a model stage."""
        stage = getattr(self.pipeline, "model_stage", None)
        if stage is None:
            return {}
        status = stage.as_dict()
        if not stage.error:
            return {"status": status}
        reason = f"ModelError: {stage.error}; running in mode {stage.mode_in_use}"
        return {"status": status, "problem": TaskFailure("model", reason, self.started).as_dict()}

    def activity(self) -> dict[str, Any]:
        """Return what the daemon did since it started, for the duplicates JSON's `stats`
        (`export.daemon_stats`): hashed, rehashed, unchanged, moved, verified, seconds, absent_roots,
        threshold, workers."""
        pool = getattr(self.pipeline, "pool", None)
        return {
            "hashed": self.stats.hashed,
            "rehashed": self.stats.rehashed,
            "unchanged": self.stats.unchanged,
            "moved": self.stats.moved,
            "verified": self.stats.verified,
            "seconds": round(time.time() - self.started, 1),
            "absent_roots": [r.path for r in self.roots.values() if not r.present],
            "threshold": self.settings.matching.threshold,
            "workers": getattr(pool, "size", self.settings.hashing.workers),
        }

    def count_report(self, report: dict[str, Any]) -> None:
        """Given the report of work done outside the service's own loops (an API scan job's batch), add it
        to the totals that `status` and `activity` show."""
        self.stats.add_report(report)

    async def write(self, func: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        """Given a function and its arguments, run it on the single writer thread and return its result.

        An `urgent` job (a short one a person waits for: queue or cancel a decision) does not wait for the
        long job running there (an ingest with minutes of pair checks): the long job runs the urgent jobs
        waiting between two of its tasks, with no transaction open (see `run_urgent`). Raise what func
        raises; IndexFull when the index's disk is full (the daemon is then `degraded` until a write works).
        """
        if urgent:
            job: Future = Future()
            self._urgent.put((func, args, job))
            self._writer.submit(self.run_urgent)  # for when the writer is idle or runs a short job
            pending = asyncio.wrap_future(job)
        else:
            pending = asyncio.get_running_loop().run_in_executor(self._writer, self._run_job, func, args)
        try:
            result = await pending
        except IndexFull as error:
            self._index_is_full(error)
            raise
        self._index_has_room()
        return result

    def run_urgent(self) -> None:
        """On the writer thread, with no transaction open on the index: run every urgent job waiting, oldest
        first, handing each its result or exception (a failing job never disturbs its caller)."""
        while True:
            try:
                func, args, job = self._urgent.get_nowait()
            except queue.Empty:
                return
            if not job.set_running_or_notify_cancel():  # its caller gave up
                continue
            try:
                result = self._run_job(func, args)
            except Exception as error:
                job.set_exception(error)
            else:
                job.set_result(result)

    def _run_job(self, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """On the writer thread: run func(*args); SQLite's "disk full" raises IndexFull whatever wrote."""
        with disk_full_as_index_full(self.settings.index_path):
            return func(*args)

    def _index_is_full(self, error: IndexFull) -> None:
        if self._index_full is None:
            log.error("event=index_full error=%r", str(error))
            self._index_full = TaskFailure("index", f"IndexFull: {error}", time.time())
        else:
            self._index_full.failures += 1
        self._set_state()

    def _index_has_room(self) -> None:
        if self._index_full is not None:
            log.info("event=index_writable reason=%r", "a write succeeded")
            self._index_full = None
            self._set_state()

    def stop(self) -> None:
        """Ask the service to drain and exit (SIGTERM)."""
        self._stop_flag.set()
        if not self._stopping.is_set():
            log.info("event=stopping")
            self._stopping.set()

    async def reconcile(self, roots: list[str] | None = None, reason: str = "request") -> None:
        """Given roots (default: all present ones), scan them incrementally so the index matches the disk."""
        for root in roots or list(self.roots):
            state = self.roots.get(root)
            if state is None or not state.present or root in self._reconciling:
                continue
            self._reconciling.add(root)
            try:
                await self._reconcile_root(root, reason)
            finally:
                self._reconciling.discard(root)
        self._set_state()  # also when no root was there to reconcile (all missing at start-up)

    def _reconcile_in_background(self, roots: list[str] | None, reason: str) -> None:
        """Given roots (None: all) and why, reconcile them under supervision, retried until it succeeds."""
        self.supervisor.start(f"reconcile ({reason})", lambda: self.reconcile(roots, reason))

    # ---- life cycle --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until `stop()`; return the exit status (0). Raise IndexInUse when another daemon uses the
        index, IndexDamaged when the index file is not sound (nothing is started on it)."""
        index_lock = await asyncio.to_thread(self._claim_index)
        try:
            return await self._run_claimed()
        finally:
            index_lock.release()

    def _claim_index(self) -> IndexLock:
        """Take the index's single-instance lock, then check the file whole; return the lock."""
        index_lock = lock_index(Path(self.settings.index_path))
        try:
            verify_index(Path(self.settings.index_path))
        except BaseException:
            index_lock.release()
            raise
        return index_lock

    async def _run_claimed(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._install_signals()
        self.pipeline = await self.write(
            self._pipeline_factory, self.settings, self._stop_flag, self.run_urgent
        )
        stop_companion = None
        try:
            self._start_watcher()
            self._check_roots(initial=True)
            if self._companion is not None:
                stop_companion = await self._companion(self)
            self._start_tasks()
            self.state = "scanning"
            self._notifier.ready(self._status_line())
            log.info(
                "event=ready roots=%d version=%s config=%r",
                len(self.roots),
                __version__,
                self.settings.source or "built-in defaults",
            )
            self._reconcile_in_background(None, "start-up")
            await self._stopping.wait()
        finally:
            await self._shutdown(stop_companion)
        return 0

    def _install_signals(self) -> None:
        assert self._loop is not None
        self._loop.add_signal_handler(signal.SIGTERM, self.stop)
        self._loop.add_signal_handler(signal.SIGINT, self.stop)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        self.supervisor.start("reload", self.reload, retry=False)

    def _start_tasks(self) -> None:
        for name, loop in (
            ("settle", self._settle_loop),
            ("ingest", self._hash_loop),
            ("export", self._export_loop),
            ("roots", self._root_loop),
            ("status", self._status_loop),
            ("rescan", self._rescan_loop),
            ("backup", self._backup_loop),
        ):
            self.supervisor.start(name, loop)
        interval = watchdog_interval(os.environ, os.getpid())
        if interval:
            self.supervisor.start("watchdog", lambda: self._watchdog_loop(interval))

    def _spawn(self, name: str, coroutine: Awaitable[Any]) -> None:
        """Given a name and a one-shot coroutine (a watcher hint's work), run it; a failure is reported."""
        self.supervisor.start(name, lambda: coroutine, retry=False)

    async def _shutdown(self, stop_companion: Callable[[], Awaitable[None]] | None) -> None:
        self.state = "stopping"
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(signum)
        self._notifier.stopping(self._status_line())
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
        await self._drain()
        await self.supervisor.cancel_all()
        if stop_companion is not None:
            await stop_companion()
        if self.pipeline is not None:
            await self._write_export()
            await self.write(self.pipeline.close)
            await self._backup_index("clean stop")
        self._writer.shutdown(wait=True)
        self._exporter.shutdown(wait=True)
        log.info("event=stopped hashed=%d", self.stats.hashed)

    async def _drain(self) -> None:
        """Wait, for at most DRAIN_SECONDS, for the batch on the writer thread to commit what it finished
        and give up the rest (the stop event cancels it); queued files are not started. Whatever is left
        is found again by the next start's reconcile."""
        deadline = self._clock() + DRAIN_SECONDS
        while self._in_flight and self._clock() < deadline:
            await asyncio.sleep(0.02)
        if self._in_flight:
            log.warning("event=drain_timeout left=%d", self._in_flight)
        if self._ready.qsize():
            log.info("event=drain_skipped queued=%d reason=%r", self._ready.qsize(), "reconciled at start-up")

    # ---- roots and the watcher ---------------------------------------------------------------------

    def _start_watcher(self) -> None:
        watch = self.settings.watch
        self.watcher = Watcher(
            self._from_thread,
            PathFilter(include=tuple(watch.include), exclude=tuple(watch.exclude)),
            observer=watch.observer,
            polling_interval=watch.polling_interval,
        )
        self.watcher.start()
        self.roots = {p: RootState(p) for p in self._root_paths(self.settings)}

    @staticmethod
    def _root_paths(settings: Settings) -> list[str]:
        return [_absolute(str(r)) for r in settings.root_paths()]

    def _check_roots(self, initial: bool = False) -> list[str]:
        """Pause roots that vanished, resume those back; return the roots that came back."""
        back = []
        for state in self.roots.values():
            present = root_is_present(state)
            if present and not state.present:
                self._resume(state, initial)
                back.append(state.path)
            elif state.present and not present:
                self._pause(state)
            elif initial and not present:
                log.warning("event=root_paused root=%r reason=%r", state.path, "missing at start-up")
        return back

    def _resume(self, state: RootState, initial: bool) -> None:
        assert self.watcher is not None
        state.was_mount = state.was_mount or os.path.ismount(state.path)
        try:
            state.observer = self.watcher.watch(state.path)
        except OSError as error:
            log.error("event=watch_failed root=%r error=%r", state.path, str(error))
            return
        state.present = True
        log.info(
            "event=%s root=%r observer=%s",
            "root_watched" if initial else "root_resumed",
            state.path,
            state.observer,
        )

    def _pause(self, state: RootState) -> None:
        assert self.watcher is not None
        state.present = False
        self.watcher.unwatch(state.path)
        self.tracker.forget_under(state.path)
        log.warning("event=root_paused root=%r reason=%r", state.path, "root disappeared; files kept")
        self._set_state()

    async def _root_loop(self) -> None:
        while True:
            await asyncio.sleep(ROOT_CHECK_SECONDS)
            back = self._check_roots()
            if back:
                self._reconcile_in_background(back, "root back")
            self.supervisor.healthy("roots")

    # ---- hints from the watcher --------------------------------------------------------------------

    def _from_thread(self, hint: Hint) -> None:
        """Given a hint on a watchdog thread, hand it to the event loop (the one place threads meet it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_hint, hint)

    def _on_hint(self, hint: Hint) -> None:
        state = self.roots.get(hint.root)
        if state is None or not state.present or self._stopping.is_set():
            return
        handler = getattr(self, f"_hint_{hint.kind}", None)
        if handler is not None:
            handler(hint)

    def _hint_changed(self, hint: Hint) -> None:
        snapshot = snapshot_of(hint.path)
        if snapshot is None:
            self.tracker.forget(hint.path)
            return
        self.tracker.touch(hint.path)  # no-op unless already pending
        if self.tracker.observe(hint.path, snapshot):  # only with settle_seconds = 0
            self._spawn("watch events", self._ready.put((hint.path, hint.root)))
        self._wake_settle.set()

    def _hint_moved(self, hint: Hint) -> None:
        if hint.path in self.tracker:
            self.tracker.rename(hint.path, hint.destination)
            return
        self._spawn("watch events", self._apply_move(hint))

    def _hint_deleted(self, hint: Hint) -> None:
        self.tracker.forget(hint.path)
        self._spawn("watch events", self._apply_delete(hint.root, hint.path, directory=False))

    def _hint_dir_deleted(self, hint: Hint) -> None:
        self.tracker.forget_under(hint.path)
        self._spawn("watch events", self._apply_delete(hint.root, hint.path, directory=True))

    def _hint_overflow(self, hint: Hint) -> None:
        self.stats.overflows += 1
        log.warning("event=overflow root=%r action=reconcile", hint.root)
        self._reconcile_in_background([hint.root], "inotify overflow")

    def _hint_watch_limit(self, hint: Hint) -> None:
        assert self.watcher is not None
        log_watch_limit(hint.path)
        if self.watcher.kind_of(hint.root) == "polling":
            return
        self.watcher.use_polling(hint.root)
        self.roots[hint.root].observer = "polling"
        self._reconcile_in_background([hint.root], "watch limit")

    async def _apply_move(self, hint: Hint) -> None:
        assert self.pipeline is not None
        report = await self.write(
            self._if_root_present, hint.root, self.pipeline.move, hint.path, hint.destination, hint.root
        )
        if report and report.get("moved"):
            self.stats.moved += report["moved"]
            log.info("event=moved path=%r to=%r", hint.path, hint.destination)
        self._export_dirty.set()

    async def _apply_delete(self, root: str, path: str, directory: bool) -> None:
        assert self.pipeline is not None
        # Missing is not deleted: only when the root is there and the path really is gone.
        if not self._root_present_now(root) or os.path.lexists(path):
            return
        if await self.write(self._if_root_present, root, self.pipeline.forget, [path]):
            self.stats.deleted += 1
            log.info("event=deleted path=%r directory=%s", path, directory)
            self._export_dirty.set()

    def _if_root_present(self, root: str, func: Callable[..., Any], *args: Any) -> Any:
        """On the writer thread: given a root, run func(*args) only if the root is still there."""
        return func(*args) if self._root_present_now(root) else None

    def _root_present_now(self, root: str) -> bool:
        state = self.roots.get(root)
        return state is not None and state.present and root_is_present(state)

    # ---- settle → hash → store ---------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        while True:
            await self._wait_for_deadline()
            for path in self.tracker.due():
                snapshot = snapshot_of(path)
                if snapshot is None:
                    self.tracker.forget(path)
                elif self.tracker.observe(path, snapshot):
                    await self._ready.put((path, self._root_of(path)))

    async def _wait_for_deadline(self) -> None:
        deadline = self.tracker.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        self._wake_settle.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake_settle.wait(), timeout)

    def _root_of(self, path: str) -> str:
        return deepest_root(path, self.roots) or ""

    async def _hash_loop(self) -> None:
        while True:
            batch = [await self._ready.get()]
            while len(batch) < INGEST_BATCH and not self._ready.empty():
                batch.append(self._ready.get_nowait())
            self._in_flight += len(batch)
            try:
                report = await self.write(self._ingest_if_present, batch)
            except IndexFull:
                # Reported as the index's problem (cleared by the next write that works); the reconcile,
                # retried with back-off, finds the batch's files once there is room again.
                self._reconcile_in_background(sorted({root for _, root in batch}), "index full")
                continue
            except Exception:
                # The batch is not lost: a reconcile of its roots (retried until it succeeds) finds its
                # files; the failure itself goes to the supervisor.
                self._reconcile_in_background(sorted({root for _, root in batch}), "ingest failed")
                raise
            finally:
                self._in_flight -= len(batch)
            if report is None:  # stopped before or while it ran
                continue
            self.supervisor.healthy("ingest")
            self.stats.add_report(report)
            for path, _ in batch:
                log.info("event=indexed path=%r", path)
            self._export_dirty.set()

    def _ingest_if_present(self, batch: list[tuple[str, str]]) -> dict[str, Any] | None:
        """On the writer thread: given (path, root) pairs, ingest those whose root is still there.

        Return None when the daemon stops before or while it runs (the files are reconciled at start-up).
        """
        assert self.pipeline is not None
        if self._stop_flag.is_set():
            return None
        present = [(path, root) for path, root in batch if self._root_present_now(root)]
        try:
            return self.pipeline.ingest(present) if present else {}
        except Cancelled:
            log.info("event=ingest_interrupted files=%d reason=%r", len(present), "stopping")
            return None

    async def _reconcile_root(self, root: str, reason: str) -> None:
        assert self.pipeline is not None
        self.state = "scanning"
        log.info("event=reconcile_start root=%r reason=%r", root, reason)
        started = self._clock()
        result = await self.write(self._reconcile_if_present, root)
        self.stats.reconciles += 1
        self.stats.add_report(result or {})
        summary = " ".join(f"{k}={v}" for k, v in sorted((result or {}).items()))
        log.info("event=reconcile_done root=%r seconds=%.2f %s", root, self._clock() - started, summary)
        self._export_dirty.set()
        self._set_state()

    def _reconcile_if_present(self, root: str) -> dict[str, int] | None:
        assert self.pipeline is not None
        if not self._root_present_now(root):
            return None
        try:
            return self.pipeline.reconcile(root)
        except Cancelled:  # the stop event, which the pipeline was built with
            log.info("event=reconcile_interrupted root=%r reason=%r", root, "stopping")
            return None

    async def _rescan_loop(self) -> None:
        interval = self.settings.watch.rescan_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.reconcile(reason="schedule")
            self.supervisor.healthy("rescan")

    # ---- backups of the index (decisions and journal) --------------------------------------------

    async def _backup_loop(self) -> None:
        while True:
            await asyncio.sleep(BACKUP_INTERVAL_SECONDS)
            await self._backup_index("daily")

    async def _backup_index(self, reason: str) -> None:
        # Runs beside the writer (SQLite's online backup reads a snapshot); a failure keeps the older backups.
        try:
            target = await asyncio.to_thread(backup_index, Path(self.settings.index_path))
        except (OSError, ComparImgError) as error:
            log.error("event=backup_failed reason=%r error=%r", reason, str(error))
            self.stats.errors.append(f"backup: {error}")
            return
        log.info("event=backed_up path=%r reason=%r", str(target), reason)

    # ---- export, status, watchdog ------------------------------------------------------------------

    async def _export_loop(self) -> None:
        while True:
            await self._export_dirty.wait()
            await asyncio.sleep(EXPORT_DEBOUNCE_SECONDS)
            self._export_dirty.clear()
            await self._write_export()

    async def _write_export(self) -> None:
        target = self.settings.export_path
        if target is None or self.pipeline is None:
            return
        loop = asyncio.get_running_loop()
        try:
            groups = await loop.run_in_executor(
                self._exporter, self.pipeline.write_export, Path(target), self.activity()
            )
        except OSError as error:
            log.error("event=export_failed path=%r error=%r", str(target), str(error))
            self.stats.errors.append(f"export: {error}")
            return
        self.stats.exports += 1
        log.debug("event=exported path=%r groups=%d", str(target), groups)

    def _set_state(self) -> None:
        if self.state == "stopping":
            return
        if self.supervisor.failures or self._index_full is not None or "problem" in self._model_stage():
            self.state = "degraded"
        elif self._reconciling:
            self.state = "scanning"
        elif not any(r.present for r in self.roots.values()):
            self.state = "paused"
        elif any(not r.present for r in self.roots.values()):
            self.state = "degraded"
        else:
            self.state = "watching"

    def _status_line(self) -> str:
        paused = sum(not r.present for r in self.roots.values())
        return (
            f"{self.state}: {len(self.roots)} roots ({paused} paused), {self.stats.hashed} hashed, "
            f"{len(self.tracker)} settling, {self._ready.qsize() + self._in_flight} queued"
        )

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self._notifier.status(self._status_line())

    async def _watchdog_loop(self, interval: float) -> None:
        # Runs on the loop itself: a stalled loop stops the pings and systemd restarts the service; so does
        # a task that keeps failing (the core is stuck though the loop turns).
        while True:
            stuck = self.supervisor.stuck()
            if stuck is None:
                self._notifier.watchdog()
            else:
                log.error("event=watchdog_withheld task=%s reason=%r", stuck.task, stuck.reason)
            await asyncio.sleep(interval)

    # ---- SIGHUP ------------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the configuration; apply it if valid, keep the old one if not. Return whether applied."""
        if self._reload_settings is None:
            log.warning("event=reload_ignored reason=%r", "no configuration source")
            return False
        self._notifier.reloading()
        try:
            new = await asyncio.to_thread(self._reload_settings)
        except ConfigError as error:
            log.error("event=reload_refused error=%r", str(error))
            self.stats.errors.append(f"reload: {error}")
            return False
        else:
            await self.apply_settings(new)
            return True
        finally:
            # After RELOADING=1 systemd waits for READY=1 whatever happened; refused, the old settings stay.
            self._notifier.send("READY=1", f"STATUS={self._status_line()}")

    async def apply_settings(self, new: Settings) -> None:
        """Given validated settings, apply them live (SIGHUP, `PATCH /api/config`): watcher, settle time,
        export, logging; matching, hashing, include/exclude and reference roots restart the pipeline."""
        old, self.settings = self.settings, new
        self.tracker.settle_seconds = new.watch.settle_seconds
        if new.logging != old.logging:
            configure_logging(new.logging.format, new.logging.level)
        if new.index_path != old.index_path or new.http != old.http:
            log.warning("event=reload_partial reason=%r", "index and http changes need a restart")
        restart_pipeline = pipeline_changes(old, new)
        if restart_pipeline:
            pipeline_settings = dataclasses.replace(new, index_path=old.index_path)
            await self.write(self._swap_pipeline, pipeline_settings)
        if new.watch != old.watch or self._root_paths(new) != self._root_paths(old):
            await self._restart_watcher()
        elif restart_pipeline:
            self._reconcile_in_background(None, "reload")
        self._export_dirty.set()
        log.info("event=reloaded source=%r", new.source)

    def _swap_pipeline(self, settings: Settings) -> None:
        """On the writer thread: given new settings, start a new pipeline, then close the old one."""
        fresh = self._pipeline_factory(settings, self._stop_flag, self.run_urgent)
        old, self.pipeline = self.pipeline, fresh
        if old is not None:
            old.close()
        log.info("event=pipeline_restarted")

    async def _restart_watcher(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
        self._start_watcher()
        self._check_roots(initial=True)
        self._reconcile_in_background(None, "reload")


def default_config_file() -> Path:
    """Return where `comparimg run` without --config keeps its settings (`PATCH /api/config` writes there)."""
    return saved_config_file()


def config_to_read(config: str | None) -> str | None:
    """Given `run`'s --config (None without it), return the file to read now: without --config, the file
    `PATCH /api/config` saves, once it exists (so a SIGHUP after a PATCH keeps what the PATCH saved)."""
    if config is not None:
        return config
    saved = default_config_file()
    return str(saved) if saved.exists() else None


def format_settings_error(error: ConfigError) -> str:
    """Given a configuration error, return the one-line message the CLI prints."""
    return f"comparimg: bad configuration: {error}"


def settings_for_run(
    config: str | None,
    watch: list[str] | None = None,
    index: str | None = None,
    export: str | None = None,
    listen: str | None = None,
    token_file: str | None = None,
) -> Settings:
    """Given `comparimg run`'s options, return the settings: the file (or built-in defaults) with the
    command-line overrides applied. Raise ConfigError naming the file or "command line"."""
    settings = load_settings(config)
    patch: dict[str, Any] = {}
    if watch:
        patch["roots"] = [_absolute(p) for p in watch]
    if index:
        patch["index"] = _absolute(index)
    if export:
        patch["export"] = _absolute(export)
    http = {"listen": listen} if listen else {}
    if token_file:
        http["token_file"] = _absolute(token_file)
    if http:
        patch["http"] = http
    if not patch:
        return settings
    return dataclasses.replace(apply_patch(settings, patch, source="command line"), source=settings.source)


async def run_service(
    settings: Settings, reload_settings: Callable[[], Settings] | None, companion: Companion | None = None
) -> int:
    """Given settings, how to re-read them and an optional companion (the web app), run the daemon."""
    service = Service(settings, ScannerPipeline, reload_settings=reload_settings, companion=companion)
    return await service.run()


def run_command(
    config: str | None,
    watch: list[str] | None = None,
    index: str | None = None,
    export: str | None = None,
    listen: str | None = None,
    companion: Companion | None = None,
    token_file: str | None = None,
) -> int:
    """Given `comparimg run`'s options, run the daemon until SIGTERM; return the exit status
    (78 for a bad configuration, naming the file, key path and value)."""

    def load() -> Settings:
        return settings_for_run(config_to_read(config), watch, index, export, listen, token_file)

    try:
        settings = load()
    except ConfigError as error:
        print(format_settings_error(error), file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.logging.format, settings.logging.level)
    try:
        return asyncio.run(run_service(settings, load, companion))
    except IndexInUse as error:
        return _refuse_start(error, EXIT_ALREADY_RUNNING)
    except IndexDamaged as error:
        return _refuse_start(error, EXIT_INDEX_DAMAGED)
    except (OSError, ComparImgError) as error:  # the index, the workers or the socket could not be set up
        log.error("event=start_failed error=%r", str(error))
        return EXIT_START_FAILED


def _refuse_start(error: ComparImgError, status: int) -> int:
    """Given why the daemon may not start on its index, say so on stderr and return the exit status."""
    log.error("event=start_refused status=%d error=%r", status, str(error))
    print(f"comparimg: {error}", file=sys.stderr, flush=True)
    return status
