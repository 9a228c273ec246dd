"""The index room's reader pool: read-only index functions run on a few threads, each with its own reader
connection (the writer is `index.writer.IndexWriter`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from comparimg.index import Index
from comparimg.index.connection import connect_reader

T = TypeVar("T")
READER_THREADS = 4


class ReaderPool:
    """Runs read-only index functions on a few threads, each with its own reader connection."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._threads = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="comparimg-web-read")

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Await `func(reader_index, *args)` run on a reader thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._call, func, args)

    def _call(self, func: Callable[..., T], args: tuple) -> T:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = Index(self.path, connect_reader(self.path), writable=False)
            self._local.reader = reader
        return func(reader, *args)

    def close(self) -> None:
        """Close every reader connection in its own thread (SQLite wants that), then stop the threads."""
        barrier = threading.Barrier(READER_THREADS)

        def close_mine() -> None:
            barrier.wait(timeout=10)  # one call per thread: each closes the reader it opened
            reader = getattr(self._local, "reader", None)
            if reader is not None:
                reader.db.close()

        for future in [self._threads.submit(close_mine) for _ in range(READER_THREADS)]:
            future.result()
        self._threads.shutdown(wait=True)
