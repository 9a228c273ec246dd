"""The index room's one writer per process: a thread, its urgent lane and the writer connection it opens.

    writer = IndexWriter(path)
    index = await writer.open()                       # the process's only writer `Index`
    rows = await writer.run(func, arg)                # func(arg) on the writer thread
    await writer.run(short_func, urgent=True)         # runs between the tasks of a long job
    await writer.close()

Every write of the daemon (ingest, reconcile, decisions, the sorter's journal) runs on this one thread
through this one connection, so a write never waits on, or fails against, another connection's open write
transaction. SQLite's "disk full" raises `IndexFull`, whatever wrote.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from comparimg.index import Index, open_index
from comparimg.index.connection import disk_full_as_index_full

# An urgent writer job: the function, its arguments and the future its caller awaits.
UrgentJob = tuple[Callable[..., Any], tuple[Any, ...], Future]


class IndexWriter:
    """The writer thread of one index file and the writer `Index` it opened (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.index: Index | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="comparimg-writer")
        self._urgent: queue.SimpleQueue[UrgentJob] = queue.SimpleQueue()

    async def open(self) -> Index:
        """Open (creating, migrating) the writer `Index` on the writer thread; return it."""
        self.index = await self.run(open_index, self.path)
        return self.index

    async def run(self, func: Callable[..., Any], *args: Any, urgent: bool = False) -> Any:
        """Given a function and its arguments, run it on the writer thread and return its result.

        An `urgent` job (a short one a person waits for) does not wait for the long job running there: the
        long job runs the urgent jobs waiting between two of its tasks, with no transaction open (see
        `run_urgent`). Raise what func raises; IndexFull when the index's disk is full.
        """
        if urgent:
            job: Future = Future()
            self._urgent.put((func, args, job))
            self._thread.submit(self.run_urgent)  # for when the writer is idle or runs a short job
            return await asyncio.wrap_future(job)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_job, func, args)

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
        with disk_full_as_index_full(self.path):
            return func(*args)

    async def close(self) -> None:
        """Close the writer `Index` (on its thread), then stop the thread."""
        if self.index is not None:
            await self.run(self.index.close)
            self.index = None
        self._thread.shutdown(wait=True)
