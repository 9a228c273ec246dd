"""The running daemon: owns the settings, the index's one writer and reader pool, the sorter, the pipeline
and the watcher, and runs the loops of the other service modules under supervision."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from comparimg import __version__
from comparimg.config import Settings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import Index, IndexFull, IndexLock, lock_index, verify_index
from comparimg.index.readers import ReaderPool
from comparimg.index.writer import IndexWriter
from comparimg.model import ModelError
from comparimg.notify import Notifier, watchdog_interval
from comparimg.service.backups import Backups
from comparimg.service.door import Door
from comparimg.service.hints import HintRouter
from comparimg.service.ingest import Ingest
from comparimg.service.interfaces import Companion, Pipeline, PipelineFactory, Stats
from comparimg.service.notifications import Notifications
from comparimg.service.reload import Reloader
from comparimg.service.roots import ROOT_CHECK_SECONDS, Roots, RootState
from comparimg.sorter import Sorter
from comparimg.stability import StabilityTracker
from comparimg.supervision import Supervisor, TaskFailure
from comparimg.verdicts.store import ModelStore, VerifierHolder
from comparimg.watcher import Hint

log = logging.getLogger("comparimg.service")

DRAIN_SECONDS = 2.0  # the writer's current job gives up within ~0.1 s of the stop; this bounds the rest


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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        companion: Companion | None = None,
    ):
        """Given settings, a factory of the ingest pipeline and, optionally, how to re-read the settings
        (SIGHUP), a notifier, a clock, how to sleep between root checks and a companion (the web app),
        return a service not yet running."""
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self._pipeline_factory = pipeline_factory
        self._companion = companion
        self.state = "starting"
        self.stats = Stats()
        self.started = time.time()
        self.tracker = StabilityTracker(settings.watch.settle_seconds, clock)
        self.writer = IndexWriter(settings.index_path)
        self.readers: ReaderPool | None = None
        self._index_full: TaskFailure | None = None  # set while writes are refused for want of disk space
        self.supervisor = Supervisor(self.set_state)
        self.stopping = asyncio.Event()
        self.stop_flag = threading.Event()  # the same, readable from the writer thread
        self.export_dirty = asyncio.Event()
        self.pipeline: Pipeline | None = None
        self.sorter: Sorter | None = None
        self.root_watch = Roots(self.tracker, self.set_state)
        self.ingest = Ingest(self, settings.watch.queue_size)
        self.hints = HintRouter(self)
        self.notifications = Notifications(self, notifier or Notifier.from_environment())
        self.reloader = Reloader(self, reload_settings)
        # The verifier in use (the user's retrained one when adopted), swapped whole by a retraining.
        self.model_store = ModelStore(settings.index_path.parent / "models")
        self.verifier = self._load_verifier()
        self.door = Door(self)  # the web room's one way in
        self.backups = Backups(settings.index_path, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _load_verifier(self) -> VerifierHolder:
        """Return the holder of the verifier in use: the user's retrained one, the shipped one standing in
        for a user model that cannot be loaded, or none when not even the shipped one can be (its file
        missing or damaged). Either problem is logged naming the file and kept for the status; without a
        verifier the pipeline runs in mode `hash` (`scanner.model_stage`) and the daemon starts all the
        same."""
        try:
            holder = VerifierHolder(self.model_store.load())
        except ModelError as error:
            log.error("event=verifier_unavailable file=%s reason=%r using=hash", error.path, error.reason)
            self.stats.errors.append(f"verifier: {error}; running in mode hash")
            return VerifierHolder.unavailable(error)
        if holder.in_use.problem:  # the shipped model stands in: said in /api/status and /api/model
            self.stats.errors.append(f"verifier: {holder.in_use.problem}")
        return holder

    @property
    def roots(self) -> dict[str, RootState]:
        """Return the configured roots by absolute path, with their state."""
        return self.root_watch.states

    @property
    def index(self) -> Index:
        """Return the process's one writer `Index` (use it only inside `write`)."""
        assert self.writer.index is not None, "the service is not running"
        return self.writer.index

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
            "queue_depth": self.ingest.depth(),
            "hashed": self.stats.hashed,
            "moved": self.stats.moved,
            "deleted": self.stats.deleted,
            "reconciles": self.stats.reconciles,
            "overflows": self.stats.overflows,
            "problems": self._problems(),
            "model": self._model_stage().get("status"),
            "last_errors": list(self.stats.errors),
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
        status = stage.as_dict() | self.pipeline.embedding_status()
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
            "absent_roots": self.root_watch.absent(),
            "threshold": self.settings.matching.threshold,
            "workers": getattr(pool, "size", self.settings.hashing.workers),
        }

    def count_report(self, report: dict[str, Any]) -> None:
        """Given the report of work done outside the service's own loops (an API scan job's batch), add it
        to the totals that `status` and `activity` show."""
        self.stats.add_report(report)

    async def write(self, func: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        """Given a function and its arguments, run it on the index's one writer thread (`IndexWriter.run`)
        and return its result. Raise what func raises; IndexFull when the index's disk is full (the daemon
        is then `degraded` until a write works)."""
        try:
            result = await self.writer.run(func, *args, urgent=urgent)
        except IndexFull as error:
            self._index_is_full(error)
            raise
        self._index_has_room()
        return result

    def run_urgent(self) -> None:
        """On the writer thread, with no transaction open: run the urgent writer jobs waiting."""
        self.writer.run_urgent()

    def _index_is_full(self, error: IndexFull) -> None:
        if self._index_full is None:
            log.error("event=index_full error=%r", str(error))
            self._index_full = TaskFailure("index", f"IndexFull: {error}", time.time())
        else:
            self._index_full.failures += 1
        self.set_state()

    def _index_has_room(self) -> None:
        if self._index_full is not None:
            log.info("event=index_writable reason=%r", "a write succeeded")
            self._index_full = None
            self.set_state()

    def stop(self) -> None:
        """Ask the service to drain and exit (SIGTERM)."""
        self.stop_flag.set()
        if not self.stopping.is_set():
            log.info("event=stopping")
            self.stopping.set()

    async def reconcile(self, roots: list[str] | None = None, reason: str = "request") -> None:
        """Given roots (default: all present ones), scan them incrementally so the index matches the disk."""
        await self.ingest.reconcile(roots, reason)

    async def reload(self) -> bool:
        """Re-read the configuration; apply it if valid, keep the old one if not. Return whether applied."""
        return await self.reloader.reload()

    async def apply_settings(self, new: Settings) -> None:
        """Given validated settings, apply them live and push them to every room (SIGHUP, PATCH)."""
        await self.reloader.apply(new)

    def set_state(self) -> None:
        """Work out the state from the failures, reconciles and roots."""
        if self.state == "stopping":
            return
        states = self.roots.values()
        if self.supervisor.failures or self._index_full is not None or "problem" in self._model_stage():
            self.state = "degraded"
        elif self.ingest.reconciling:
            self.state = "scanning"
        elif not any(r.present for r in states):
            self.state = "paused"
        elif any(not r.present for r in states):
            self.state = "degraded"
        else:
            self.state = "watching"

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
        stop_companion = None
        try:
            await self._open_index_rooms()
            self.start_watching()
            if self._companion is not None:
                stop_companion = await self._companion(self)
            self._start_tasks()
            self.state = "scanning"
            self.notifications.notifier.ready(self.notifications.status_line())
            log.info(
                "event=ready roots=%d version=%s config=%r",
                len(self.roots),
                __version__,
                self.settings.source or "built-in defaults",
            )
            self.ingest.reconcile_in_background(None, "start-up")
            await self.stopping.wait()
        finally:
            await self._shutdown(stop_companion)
        return 0

    async def _open_index_rooms(self) -> None:
        """Open the one writer Index, the reader pool, the pipeline and the sorter (running its recovery)."""
        index = await self.writer.open()
        self.readers = ReaderPool(self.settings.index_path)
        self.pipeline = await self.write(
            self._pipeline_factory, self.settings, index, self.stop_flag, self.run_urgent, self.verifier
        )
        self.sorter = Sorter(index.db, self.settings.root_paths(), self.settings.sorter, content_hash_file)
        for result in await self.write(self.sorter.recover):
            log.warning(
                "event=sorter_recovered action=%s state=%s source=%r dest=%r",
                result.action_id,
                result.state,
                result.source,
                result.dest,
            )

    def swap_pipeline(self, settings: Settings) -> None:
        """On the writer thread: given new settings, start a new pipeline, then close the old one."""
        fresh = self._pipeline_factory(settings, self.index, self.stop_flag, self.run_urgent, self.verifier)
        old, self.pipeline = self.pipeline, fresh
        if old is not None:
            old.close()
        log.info("event=pipeline_restarted")

    def start_watching(self) -> None:
        """Start the watcher on the configured roots (those missing are paused)."""
        self.root_watch.start(self.settings, self._from_thread)

    def _install_signals(self) -> None:
        assert self._loop is not None
        self._loop.add_signal_handler(signal.SIGTERM, self.stop)
        self._loop.add_signal_handler(signal.SIGINT, self.stop)
        self._loop.add_signal_handler(signal.SIGHUP, self._reload_in_background)

    def _reload_in_background(self) -> None:
        self.supervisor.start("reload", self.reload, retry=False)

    def _start_tasks(self) -> None:
        for name, loop in (
            ("settle", self.ingest.settle_loop),
            ("ingest", self.ingest.hash_loop),
            ("export", self.notifications.export_loop),
            ("roots", self._root_loop),
            ("status", self.notifications.status_loop),
            ("rescan", self.ingest.rescan_loop),
            ("embeddings", self.ingest.embedding_catch_up_loop),
            ("backup", self.backups.loop),
        ):
            self.supervisor.start(name, loop)
        interval = watchdog_interval(os.environ, os.getpid())
        if interval:
            self.supervisor.start("watchdog", lambda: self.notifications.watchdog_loop(interval))

    def _from_thread(self, hint: Hint) -> None:
        """Given a hint on a watchdog thread, hand it to the event loop (the one place threads meet it)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.hints.route, hint)

    async def _root_loop(self) -> None:
        while True:
            await self._sleep(ROOT_CHECK_SECONDS)
            back = self.root_watch.check()
            if back:
                self.ingest.reconcile_in_background(back, "root back")
            self.supervisor.healthy("roots")

    async def _shutdown(self, stop_companion: Callable[[], Awaitable[None]] | None) -> None:
        self.state = "stopping"
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(signum)
        self.notifications.notifier.stopping(self.notifications.status_line())
        await asyncio.to_thread(self.root_watch.stop)
        await self._drain()
        await self.supervisor.cancel_all()
        await self.door.close()
        if stop_companion is not None:
            await stop_companion()
        if self.pipeline is not None:
            await self.notifications.write_export()
            await self.write(self.pipeline.close)
        if self.readers is not None:
            self.readers.close()
        await self.writer.close()
        if self.pipeline is not None:
            await self.backups.back_up("clean stop")
        self.notifications.close()
        log.info("event=stopped hashed=%d", self.stats.hashed)

    async def _drain(self) -> None:
        """Wait, for at most DRAIN_SECONDS, for the batch on the writer thread to commit what it finished
        and give up the rest (the stop event cancels it); queued files are not started. Whatever is left
        is found again by the next start's reconcile."""
        deadline = self.clock() + DRAIN_SECONDS
        while self.ingest.in_flight and self.clock() < deadline:
            await asyncio.sleep(0.02)
        if self.ingest.in_flight:
            log.warning("event=drain_timeout left=%d", self.ingest.in_flight)
        if self.ingest.ready.qsize():
            queued = self.ingest.ready.qsize()
            log.info("event=drain_skipped queued=%d reason=%r", queued, "reconciled at start-up")
