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
from comparimg.scanner.linking import Linker, MatchOptions, _LazyEmbeddingIndex
from comparimg.workers import WorkerPool
from daemon_harness import wait_for

DIMENSIONS = 32


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=DIMENSIONS).astype(np.float32)


def far_hashes(seed: int) -> tuple[int, ...]:
    """Return eight random 64-bit perceptual hashes: far from any other seed's (no hash candidate)."""
    return tuple(int(h) for h in np.random.default_rng(1000 + seed).integers(0, 2**63, 8, dtype=np.int64))


def store(index, seed: int) -> int:
    packed = pack_embedding(vector(seed))
    fingerprint = Fingerprint(f"{seed:064x}", 10, 10, "PNG", far_hashes(seed), (), packed)
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


def test_a_file_linked_while_it_loads_waits_unmarked_then_meets_its_embedding_neighbour(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(PAUSE_ENV, "600")
    with open_index(tmp_path / "index.sqlite3") as index, WorkerPool(1) as pool:
        with index.transaction():
            ids = {seed: store(index, seed) for seed in range(4)}
            index.mark_linked([ids[0], ids[1], ids[2]])  # file 3 is new too
            # A new file whose embedding is file 0's (a copy the hashes do not find: its own phash)
            copy = Fingerprint("f" * 64, 10, 10, "PNG", far_hashes(99), (), pack_embedding(vector(0)))
            new = index.upsert_fingerprint("/p/copy.png", "/p", FileIdentity(1, 99, 1, 1), copy, 0.0)
        stop = threading.Event()
        linker = Linker(index, pool, MatchOptions(mode="hash+model", crops=False), cancel=stop)
        loading = linker.load_embeddings_in_background()
        linker.link([new, ids[3]])
        assert linker.waiting == {new, ids[3]} and linker.judged == 0  # no embedding neighbour yet
        assert set(index.files_needing_link()) == {new, ids[3]}  # not marked linked
        linker.link(index.files_needing_link())  # while it loads, the waiting files are not linked again
        assert linker.judged == 0
        linker.unlink([ids[3]])  # a waiting file that goes away waits no more
        assert linker.waiting == {new}
        monkeypatch.setenv(PAUSE_ENV, "0")
        loading.abandon()  # this loader is stopped; a second one, unpaused, takes its place
        assert loading.wait(5) and loading.state == STOPPED
        assert linker.embeddings_pending is False
        linker.load_embeddings_in_background().wait(60)
        linker.link(index.files_needing_link())
        assert linker.judged == 1 and linker.waiting == set()  # the copy met file 0 through its embedding
        assert index.files_needing_link() == []
