"""HashIndex speed among 1 000 000 random fingerprints, against a brute-force numpy popcount scan.

Run: pytest -m benchmark tests/benchmarks/test_matching_speed.py -s
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from comparimg.matching import (
    ABSENT,
    MAX_WINDOWS,
    SLOT_AFTER_TURN,
    STRIDE,
    TURNED_WINDOWS,
    HashIndex,
    window_orientations,
)
from comparimg.model import Fingerprint

pytestmark = pytest.mark.benchmark

IMAGES = 1_000_000
WINDOWS = 10
QUERIES = 200


def random_hashes(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, size=shape, dtype=np.uint64, endpoint=True)


def close(xor: np.ndarray, threshold: int, radius: int) -> np.ndarray:
    """Given XORs, return where they are within `threshold` bits with a 16-bit chunk within `radius`."""
    chunks = np.bitwise_count(np.ascontiguousarray(xor)[..., None].view(np.uint16)).min(axis=-1)
    return (np.bitwise_count(xor) <= threshold) & (chunks <= radius)


def query_windows(fp: Fingerprint) -> tuple[np.ndarray, np.ndarray]:
    """Given a query, return (its window hashes in every orientation, the same per orientation (rows) at
    the slot where that turn puts them)."""
    turned = window_orientations(fp.windows)
    every = np.concatenate(list(turned.values()))
    slotted = np.zeros((len(turned), MAX_WINDOWS), dtype=np.uint64)
    for row, (orientation, hashes) in enumerate(turned.items()):
        slotted[row, list(SLOT_AFTER_TURN[orientation])] = hashes
    return every[every != ABSENT], slotted


def brute_force(stored: np.ndarray, present: np.ndarray, fp: Fingerprint, threshold: int) -> set[int]:
    """The same rules as HashIndex.query (window chunk radius 1), as full popcount scans."""
    phash = np.array(fp.phash, dtype=np.uint64)
    hit = (np.bitwise_count(stored[:, :1] ^ phash[None, :]) <= threshold).any(axis=1)
    for variant in phash:
        hit |= (close(stored[:, 1:] ^ variant, threshold, 1) & present[:, 1:]).any(axis=1)
    if fp.windows:
        windows, upright = query_windows(fp)
        hit |= close(stored[:, :1] ^ windows[None, :], threshold, 1).any(axis=1)
        for row in upright:
            same_slot = close(stored[:, 1:] ^ row[None, :], threshold, 1)
            hit |= (same_slot & present[:, 1:] & (row != ABSENT)[None, :]).any(axis=1)
    return set(np.flatnonzero(hit).tolist())


def plain_scan(stored: np.ndarray, fp: Fingerprint, threshold: int) -> np.ndarray:
    """The baseline: one numpy popcount pass over every stored hash for every query rule."""
    phash = np.array(fp.phash, dtype=np.uint64)
    hit = (np.bitwise_count(stored[:, :1] ^ phash[None, :]) <= threshold).any(axis=1)
    for variant in phash:
        hit |= (np.bitwise_count(stored[:, 1:] ^ variant) <= threshold).any(axis=1)
    if fp.windows:
        windows, upright = query_windows(fp)
        hit |= (np.bitwise_count(stored[:, :1] ^ windows[None, :]) <= threshold).any(axis=1)
        for row in upright:
            hit |= (np.bitwise_count(stored[:, 1:] ^ row[None, :]) <= threshold).any(axis=1)
    return np.flatnonzero(hit)


def planted_queries(rng: np.random.Generator, stored: np.ndarray, windows: int) -> list[Fingerprint]:
    """Queries whose global hash (some orientation) lies 0..10 bits from a stored image's; with windows,
    they carry them as fingerprint_file does: upright and turned, the content slot empty."""
    queries = []
    for _ in range(QUERIES):
        target = int(rng.integers(len(stored)))
        phash = random_hashes(rng, 8)
        flips = rng.choice(64, size=int(rng.integers(0, 11)), replace=False)
        phash[int(rng.integers(8))] = stored[target, 0] ^ np.uint64(sum(1 << int(bit) for bit in flips))
        hashes = random_hashes(rng, (1 + len(TURNED_WINDOWS), MAX_WINDOWS)) if windows else np.zeros((0, 0))
        hashes[:, windows:] = ABSENT
        query_windows = tuple(hashes.ravel().tolist())
        queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash.tolist()), query_windows))
    return queries


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("windows", [0, WINDOWS], ids=["global", "with-windows"])
def test_query_among_a_million(windows):
    rng = np.random.default_rng(11)
    stored = np.zeros((IMAGES, STRIDE), dtype=np.uint64)
    stored[:, : 1 + windows] = random_hashes(rng, (IMAGES, 1 + windows))
    present = np.zeros((IMAGES, STRIDE), dtype=bool)
    present[:, : 1 + windows] = True
    index = HashIndex(threshold=10)
    load_seconds, _ = timed(index.add_arrays, np.arange(IMAGES, dtype=np.int64), stored, present)
    queries = planted_queries(rng, stored, windows)
    index_times, brute_times = [], []
    for fp in queries:
        seconds, candidates = timed(index.query, fp)
        index_times.append(seconds)
        if len(brute_times) < 10:
            seconds, _ = timed(plain_scan, stored, fp, 10)
            brute_times.append(seconds)
        if len(brute_times) <= 3:
            assert {c.file_id for c in candidates} == brute_force(stored, present, fp, 10)
    index_ms = 1000 * statistics.median(index_times)
    brute_ms = 1000 * statistics.median(brute_times)
    print(
        f"\n[{windows} windows] images={IMAGES} bulk_load={load_seconds:.2f}s"
        f" bytes_per_image={index.nbytes() / IMAGES:.0f}"
        f" query_median={index_ms:.2f}ms p90={1000 * np.percentile(index_times, 90):.2f}ms"
        f" brute_force_median={brute_ms:.1f}ms speedup={brute_ms / index_ms:.0f}x"
    )
    assert index_ms <= (5.0 if windows == 0 else 10.0)


@pytest.mark.timeout(600)
def test_bulk_load_from_fingerprints():
    rng = np.random.default_rng(12)
    count = 200_000
    hashes = random_hashes(rng, (count, 1 + WINDOWS)).tolist()
    fingerprints = [
        (i, Fingerprint("", 1, 1, "PNG", (row[0],) * 8, tuple(row[1:]))) for i, row in enumerate(hashes)
    ]
    index = HashIndex()
    seconds, _ = timed(index.add_many, fingerprints)
    print(f"\nadd_many of {count} fingerprints: {seconds:.2f}s ({1e6 * seconds / count:.1f} µs per image)")
    assert len(index) == count
