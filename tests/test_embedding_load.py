"""The embedding index loaded on a thread of its own (scanner/embedding_load.py): what the writer changes
while it loads is replayed on it, so the result equals a load made afterwards; a stop ends the loader. Real
SQLite (a reader connection of its own on the same file), real EmbeddingIndex."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from comparimg.embedding import pack_embedding
from comparimg.index import open_index
from comparimg.model import FileIdentity, Fingerprint
from comparimg.scanner.embedding_load import (
    LOADING,
    PAUSE_ENV,
    READY,
    STOPPED,
    BackgroundEmbeddingIndex,
    read_embedding_index,
)
from comparimg.scanner.linking import _LazyEmbeddingIndex
from daemon_harness import wait_for

DIMENSIONS = 32


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIMENSIONS).astype(np.float32)


def store(index, seed: int) -> int:
    fingerprint = Fingerprint(f"{seed:064x}", 10, 10, "PNG", (seed,) * 8, (), pack_embedding(vector(seed)))
    identity = FileIdentity(1, seed, 1, 1)
    return index.upsert_fingerprint(f"/p/{seed}.png", "/p", identity, fingerprint, 0.0)


def answers(embeddings, seeds) -> dict[int, list[int]]:
    """Return, for each seed's vector, the ids the index finds (a copy's query: its own vector)."""
    return {seed: [i for i, _ in embeddings.query(vector(seed), k=3, min_cosine=0.99)] for seed in seeds}


def test_changes_made_while_it_loads_are_replayed_as_a_later_load_would_see_them(tmp_path, monkeypatch):
    monkeypatch.setenv(PAUSE_ENV, "1.5")  # the loader has read its snapshot, then waits: the writer goes on
    with open_index(tmp_path / "index.sqlite3") as index:
        with index.transaction():
            ids = {seed: store(index, seed) for seed in range(40)}
        loading = BackgroundEmbeddingIndex(index, threading.Event(), _LazyEmbeddingIndex)
        assert loading.state == LOADING and loading.ready_index() is None
        time.sleep(0.5)  # its snapshot is read: what follows is not in it
        with index.transaction():
            ids |= {seed: store(index, seed) for seed in range(40, 50)}  # new files, linked meanwhile
            index.mark_missing([ids[3], ids[4]])
        for seed in range(40, 50):
            loading.add(ids[seed], vector(seed))
        loading.remove(ids[3])
        loading.remove(ids[4])
        loading.add(ids[5], vector(5))  # a file the snapshot holds as well: no harm
        assert loading.wait(60) and loading.state == READY
        ready = loading.ready_index()
        loading.remove(ids[6])  # once ready, changes go straight to it
        with index.transaction():
            index.mark_missing([ids[6]])
        later = read_embedding_index(index)
    seeds = [seed for seed in range(50) if seed not in (3, 4, 6)]
    assert len(ready) == len(later) == len(seeds)
    assert answers(ready, range(50)) == answers(later, range(50))
    assert answers(ready, [3, 40]) == {3: [], 40: [ids[40]]}


def test_a_stop_ends_the_loader_and_nothing_is_ready(tmp_path, monkeypatch):
    monkeypatch.setenv(PAUSE_ENV, "600")
    stop = threading.Event()
    with open_index(tmp_path / "index.sqlite3") as index:
        with index.transaction():
            store(index, 1)
        loading = BackgroundEmbeddingIndex(index, stop, _LazyEmbeddingIndex)
        stop.set()
        assert loading.wait(5), "the loader did not stop within 5 s"
        assert loading.state == STOPPED and loading.ready_index() is None


@pytest.mark.parametrize("files", [0, 3])
def test_an_index_without_embeddings_loads_as_an_empty_one_that_takes_its_length_from_the_first(
    tmp_path, files
):
    with open_index(tmp_path / "index.sqlite3") as index:
        with index.transaction():
            for seed in range(files):
                store(index, seed)
        loading = BackgroundEmbeddingIndex(index, None, _LazyEmbeddingIndex)
        wait_for(lambda: loading.state == READY, timeout=60)
        ready = loading.ready_index()
        assert len(ready) == files
        loading.add(99, vector(99))
        assert answers(ready, [99]) == {99: [99]}
