"""How long the index writer waits for the embedding index at the first link after a start, with it loaded on
the writer thread at first use (as `comparimg scan` still does) and loaded in the background (the daemon).

An index of COUNT files with random 1 280-value embeddings (real SQLite, written through the index's own
API); the index's hyperplanes made once beforehand (pytest imports numpy before comparimg can ask for one
BLAS thread, which makes them slow on a busy machine); then, for each way, a fresh Linker in mode
`hash+model` links one new file, timed from the Linker's creation. In the background way the file is
linked by its hashes and waits for the embedding index (`Linker.waiting`); the time it took to load is
printed too.

Run: pytest -m benchmark tests/benchmarks/test_embedding_load_stall.py -s
(`COMPARIMG_STALL_FILES`, default 100 000, sets COUNT.)
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from comparimg.embedding import pack_embedding
from comparimg.embedding.neighbours import EmbeddingIndex
from comparimg.index import open_index
from comparimg.model import FileIdentity, Fingerprint
from comparimg.scanner.linking import Linker, MatchOptions
from comparimg.workers import WorkerPool

pytestmark = pytest.mark.benchmark

COUNT = int(os.environ.get("COMPARIMG_STALL_FILES", "100000"))
DIMENSIONS = 1280


def fingerprint(seed: int, embedding: np.ndarray) -> Fingerprint:
    rng = np.random.default_rng(seed)
    phash = tuple(int(h) for h in rng.integers(0, 2**63, 8, dtype=np.int64))
    return Fingerprint(f"{seed:064x}", 10, 10, "PNG", phash, (), pack_embedding(embedding))


@pytest.mark.timeout(3600)
def test_the_first_link_does_not_wait_for_the_embedding_index(tmp_path):
    rng = np.random.default_rng(0)
    with open_index(tmp_path / "index.sqlite3") as index, WorkerPool(1) as pool:
        started = time.monotonic()
        for start in range(0, COUNT, 10_000):
            vectors = rng.standard_normal((min(10_000, COUNT - start), DIMENSIONS)).astype(np.float32)
            with index.transaction():
                for offset, vector in enumerate(vectors):
                    seed = start + offset
                    identity = FileIdentity(1, seed, 1, 1)
                    index.upsert_fingerprint(f"/p/{seed}.png", "/p", identity, fingerprint(seed, vector), 0.0)
            index.mark_linked(range(start + 1, start + len(vectors) + 1))
        print(f"\n{COUNT} files with embeddings written in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        EmbeddingIndex(DIMENSIONS)  # its hyperplanes are made once per process: not counted below
        print(f"hyperplanes made in {time.monotonic() - started:.2f} s (a BLAS thread per core here)")
        options = MatchOptions(mode="hash+model", crops=False)
        for way in ("on the writer thread", "in the background"):
            with index.transaction():
                new = index.upsert_fingerprint(
                    f"/p/new-{way}.png", "/p", FileIdentity(2, len(way), 1, 1),
                    fingerprint(COUNT + len(way), rng.standard_normal(DIMENSIONS)), 0.0,
                )  # fmt: skip
            started = time.monotonic()
            linker = Linker(index, pool, options)
            loader = linker.load_embeddings_in_background() if way == "in the background" else None
            linker.hash_index  # noqa: B018 - the HashIndex loads on the writer thread either way
            hashes = time.monotonic() - started
            linker.link([new])
            stalled = time.monotonic() - started
            line = f"{way}: first link returned after {stalled:.2f} s (HashIndex {hashes:.2f} s)"
            if loader is not None:
                assert linker.waiting == {new}
                loader.wait()
                line += f"; embedding index ready after {loader.seconds:.2f} s"
            print(line + f" (load {os.getloadavg()[0]:.1f})")
