"""The daemon's EmbeddingIndex, loaded on a thread of its own so the index writer never waits for it.

Loading the embeddings of a million indexed images takes tens of seconds; built on the writer thread at the
first link, it held up every write (decisions, the watcher's files) that long. `BackgroundEmbeddingIndex`
reads them through a reader connection of its own while the writer goes on:

    loading = BackgroundEmbeddingIndex(index, stop)    # starts the thread
    loading.state                    # "loading", then "ready" (or "failed", "stopped")
    loading.add(file_id, vector)     # on the writer thread, as files are linked or unlinked...
    loading.remove(file_id)          # ...kept aside until the loaded index takes them
    loading.ready_index()            # on the writer thread: the EmbeddingIndex, or None while loading

The loader reads one snapshot of the index; every change the writer thread makes from before the thread
starts is recorded and, once the snapshot is loaded, replayed on it in order (a remove and an add are both
idempotent, so a change the snapshot already holds does no harm). The result is what a load at that moment
would give. What the linker does with files linked meanwhile is in `linking.Linker.link`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np

from comparimg.index import Index

log = logging.getLogger(__name__)

LOADING, READY, FAILED, STOPPED = "loading", "ready", "failed", "stopped"
# A fault-injection hook like `$COMPARIMG_CRASH_AT`: the loader waits this many seconds once it has read its
# first batch of rows (its snapshot taken), as a million embeddings would make it, so a test can watch the
# daemon, and change the index, while the embedding index is loading. Unset: 0.
PAUSE_ENV = "COMPARIMG_EMBEDDING_LOAD_PAUSE"


def read_embedding_index(
    index: Index, stopped: Callable[[], bool] = lambda: False, first_read: Callable[[], None] = lambda: None
):
    """Given an index (a reader's), optionally what says the work is to stop and what to call once the first
    batch of rows is read, return the EmbeddingIndex of every `ok` file with an embedding, or None when
    there is none (the dimensions are not known yet) or `stopped()` (asked between batches of rows)."""
    from comparimg.embedding.neighbours import EmbeddingIndex

    embeddings = None
    for ids, matrix in index.embedding_batches():
        if embeddings is None:
            first_read()
        if stopped():
            return None
        if embeddings is None:
            embeddings = EmbeddingIndex(matrix.shape[1])
        embeddings.add_many(ids, matrix.astype(np.float32))
    return embeddings


class BackgroundEmbeddingIndex:
    """An EmbeddingIndex being loaded on its own thread; see the module docstring. Every method but `state`
    and `error` belongs to the writer thread."""

    def __init__(self, index: Index, stop: threading.Event | None = None, empty=None):
        """Given the writer's Index, the daemon's stop event and what to hold when the index has no
        embedding yet (`empty()`: an index whose dimensions come with its first file), start loading."""
        self._empty = empty
        self._changes: list[tuple[int, np.ndarray | None]] = []  # (file id, vector or None for a removal)
        self._loaded = None
        self._ready = None
        self.error = ""
        self._state = LOADING
        self._stop = stop
        self._abandoned = threading.Event()  # `abandon`: the pipeline that wanted it is closed
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._load, args=(index,), name="embedding-index", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        """Return "loading", "ready" (loaded; the writer may not have taken it yet), "failed" or "stopped"."""
        return self._state

    def _stopped(self) -> bool:
        return self._abandoned.is_set() or (self._stop is not None and self._stop.is_set())

    def abandon(self) -> None:
        """Stop loading (within a batch of rows): the index is no longer wanted."""
        self._abandoned.set()

    def _pause(self) -> None:
        """Wait `$COMPARIMG_EMBEDDING_LOAD_PAUSE` seconds (none when unset), or until the stop."""
        deadline = time.monotonic() + float(os.environ.get(PAUSE_ENV) or 0)
        while time.monotonic() < deadline and not self._stopped():
            time.sleep(0.05)

    def _load(self, index: Index) -> None:
        started = time.monotonic()
        try:
            with index.open_reader() as reader:
                loaded = read_embedding_index(reader, self._stopped, self._pause)
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
            log.error("event=embedding_index_failed error=%r: files are linked by their hashes", self.error)
            self._state = FAILED
            return
        if self._stopped():
            self._state = STOPPED
            return
        self._loaded = loaded if loaded is not None else self._empty()
        self.seconds = time.monotonic() - started
        log.info("event=embedding_index_loaded files=%d seconds=%.2f", len(self._loaded), self.seconds)
        self._state = READY

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the loading thread to end (at most `timeout` seconds); return whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def ready_index(self):
        """Return the loaded EmbeddingIndex with every change since the load began applied, or None while
        it is loading (or when it failed or was stopped)."""
        if self._ready is None and self._state == READY:
            ready, self._loaded = self._loaded, None
            for file_id, vector in self._changes:
                _apply(ready, file_id, vector)
            self._changes = []
            self._ready = ready
        return self._ready

    def add(self, file_id: int, vector: np.ndarray) -> None:
        """Given a file id and its embedding, index it (now, or once loaded). Raise ValueError for another
        length than the loaded index's."""
        ready = self.ready_index()
        if ready is None:
            self._changes.append((file_id, vector))
        else:
            ready.add(file_id, vector)

    def remove(self, file_id: int) -> None:
        """Given a file id, forget it (now, or once loaded)."""
        ready = self.ready_index()
        if ready is None:
            self._changes.append((file_id, None))
        else:
            ready.remove(file_id)


def _apply(embeddings, file_id: int, vector: np.ndarray | None) -> None:
    embeddings.remove(file_id)
    if vector is None:
        return
    try:
        embeddings.add(file_id, vector)
    except ValueError as error:  # another model's length: found by its hashes only
        log.warning("embedding_not_indexed file=%s reason=%s", file_id, error)
