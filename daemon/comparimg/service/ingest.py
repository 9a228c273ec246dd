"""The ingest loop: settle → hash → store, reconciles (incremental scans), and moves and deletions the
watcher saw. Every index write runs on the daemon's one writer thread (`Service.write`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from comparimg.config import deepest_root
from comparimg.index import IndexFull
from comparimg.scanner import Cancelled

if TYPE_CHECKING:
    from comparimg.service.daemon import Service
    from comparimg.service.interfaces import Pipeline

log = logging.getLogger("comparimg.service")

INGEST_BATCH = 64
CATCH_UP_SECONDS = 1.0  # how often to look whether files wait for the embedding index (two attribute reads)


def snapshot_of(path: str) -> tuple[int, int] | None:
    """Given a path, return (size, mtime_ns) if it is a regular file (not a symlink), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


class Ingest:
    """Feeds settled files, reconciles, moves and deletions to the pipeline on the writer thread."""

    def __init__(self, service: Service, queue_size: int):
        self.service = service
        self.ready: asyncio.Queue[tuple[str, str]] = asyncio.Queue(queue_size)
        self.in_flight = 0
        self.reconciling: set[str] = set()
        self.wake_settle = asyncio.Event()

    def depth(self) -> int:
        """Return how many files wait to be hashed or are being hashed."""
        return self.ready.qsize() + self.in_flight

    def root_of(self, path: str) -> str:
        """Given a path, return the deepest configured root holding it ("" for none)."""
        return deepest_root(path, self.service.roots) or ""

    # ---- settle → hash → store ---------------------------------------------------------------------

    async def settle_loop(self) -> None:
        """Hand each path that stopped changing to the hashing queue."""
        tracker = self.service.tracker
        while True:
            await self._wait_for_deadline()
            for path in tracker.due():
                snapshot = snapshot_of(path)
                if snapshot is None:
                    tracker.forget(path)
                elif tracker.observe(path, snapshot):
                    await self.ready.put((path, self.root_of(path)))

    async def _wait_for_deadline(self) -> None:
        deadline = self.service.tracker.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.service.clock())
        self.wake_settle.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.wake_settle.wait(), timeout)

    async def hash_loop(self) -> None:
        """Ingest settled files in batches on the writer thread."""
        while True:
            batch = [await self.ready.get()]
            while len(batch) < INGEST_BATCH and not self.ready.empty():
                batch.append(self.ready.get_nowait())
            report = await self._ingest_batch(batch)
            if report is None:  # stopped before or while it ran, or the index is full
                continue
            self.service.supervisor.healthy("ingest")
            self.service.stats.add_report(report)
            for path, _ in batch:
                log.info("event=indexed path=%r", path)
            self.service.export_dirty.set()

    async def _ingest_batch(self, batch: list[tuple[str, str]]) -> dict[str, Any] | None:
        self.in_flight += len(batch)
        try:
            return await self.service.write(self._ingest_if_present, batch)
        except IndexFull:
            # Reported as the index's problem (cleared by the next write that works); the reconcile,
            # retried with back-off, finds the batch's files once there is room again.
            self.reconcile_in_background(sorted({root for _, root in batch}), "index full")
            return None
        except Exception:
            # The batch is not lost: a reconcile of its roots (retried until it succeeds) finds its
            # files; the failure itself goes to the supervisor.
            self.reconcile_in_background(sorted({root for _, root in batch}), "ingest failed")
            raise
        finally:
            self.in_flight -= len(batch)

    def _ingest_if_present(self, batch: list[tuple[str, str]]) -> dict[str, Any] | None:
        """On the writer thread: given (path, root) pairs, ingest those whose root is still there.

        Return None when the daemon stops before or while it runs (the files are reconciled at start-up).
        """
        service = self.service
        assert service.pipeline is not None
        if service.stop_flag.is_set():
            return None
        present = [(path, root) for path, root in batch if service.root_watch.present(root)]
        try:
            return service.pipeline.ingest(present) if present else {}
        except Cancelled:
            log.info("event=ingest_interrupted files=%d reason=%r", len(present), "stopping")
            return None

    # ---- reconciles --------------------------------------------------------------------------------

    async def reconcile(self, roots: list[str] | None = None, reason: str = "request") -> None:
        """Given roots (default: all present ones), scan them incrementally so the index matches the disk."""
        states = self.service.roots
        for root in roots or list(states):
            state = states.get(root)
            if state is None or not state.present or root in self.reconciling:
                continue
            self.reconciling.add(root)
            try:
                await self._reconcile_root(root, reason)
            finally:
                self.reconciling.discard(root)
        self.service.set_state()  # also when no root was there to reconcile (all missing at start-up)

    def reconcile_in_background(self, roots: list[str] | None, reason: str) -> None:
        """Given roots (None: all) and why, reconcile them under supervision, retried until it succeeds."""
        self.service.supervisor.start(f"reconcile ({reason})", lambda: self.reconcile(roots, reason))

    async def _reconcile_root(self, root: str, reason: str) -> None:
        service = self.service
        service.state = "scanning"
        log.info("event=reconcile_start root=%r reason=%r", root, reason)
        started = service.clock()
        result = await service.write(self._reconcile_if_present, root)
        service.stats.reconciles += 1
        service.stats.add_report(result or {})
        summary = " ".join(f"{k}={v}" for k, v in sorted((result or {}).items()))
        log.info("event=reconcile_done root=%r seconds=%.2f %s", root, service.clock() - started, summary)
        service.export_dirty.set()
        service.set_state()

    def _reconcile_if_present(self, root: str) -> dict[str, int] | None:
        pipeline = self.service.pipeline
        assert pipeline is not None
        if not self.service.root_watch.present(root):
            return None
        try:
            return pipeline.reconcile(root)
        except Cancelled:  # the stop event, which the pipeline was built with
            log.info("event=reconcile_interrupted root=%r reason=%r", root, "stopping")
            return None

    async def embedding_catch_up_loop(self) -> None:
        """Every CATCH_UP_SECONDS, once the embedding index that loads in the background is ready, link again
        the files linked by their hashes alone while it loaded (their embedding neighbours were deferred, not
        dropped: they kept `needs_link`, so a stop meanwhile leaves them for the next start)."""
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            pipeline = self.service.pipeline
            if pipeline is not None and pipeline.links_waiting():
                linked = await self.service.write(self._link_waiting, pipeline)
                if linked:
                    log.info("event=embedding_neighbours_linked files=%d", linked)
                    self.service.export_dirty.set()
            self.service.supervisor.healthy("embeddings")

    def _link_waiting(self, pipeline: Pipeline) -> int | None:
        if self.service.stop_flag.is_set():
            return None
        try:
            return pipeline.link_waiting()
        except Cancelled:
            log.info("event=embedding_catch_up_interrupted reason=%r", "stopping")
            return None

    async def rescan_loop(self) -> None:
        """Reconcile every root every `watch.rescan_interval` seconds (never when it is 0)."""
        interval = self.service.settings.watch.rescan_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            await self.reconcile(reason="schedule")
            self.service.supervisor.healthy("rescan")

    # ---- moves and deletions the watcher saw -------------------------------------------------------

    async def apply_move(self, root: str, source: str, destination: str) -> None:
        """Given a root and a file or folder moved within it, let its rows follow (no re-hash)."""
        service = self.service
        assert service.pipeline is not None
        report = await service.write(
            self._if_root_present, root, service.pipeline.move, source, destination, root
        )
        if report and report.get("moved"):
            service.stats.moved += report["moved"]
            log.info("event=moved path=%r to=%r", source, destination)
        service.export_dirty.set()

    async def apply_delete(self, root: str, path: str, directory: bool) -> None:
        """Given a root and a path the watcher saw go, mark its rows missing if it really is gone."""
        service = self.service
        assert service.pipeline is not None
        # Missing is not deleted: only when the root is there and the path really is gone.
        if not service.root_watch.present(root) or os.path.lexists(path):
            return
        if await service.write(self._if_root_present, root, service.pipeline.forget, [path]):
            service.stats.deleted += 1
            log.info("event=deleted path=%r directory=%s", path, directory)
            service.export_dirty.set()

    def _if_root_present(self, root: str, func: Callable[..., Any], *args: Any) -> Any:
        """On the writer thread: given a root, run func(*args) only if the root is still there."""
        return func(*args) if self.service.root_watch.present(root) else None
