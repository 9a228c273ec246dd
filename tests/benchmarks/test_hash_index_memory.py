"""HashIndex memory, bulk-load time and query latency at 10 000, 100 000 and 1 000 000 images.

The stored fingerprints have the real shape (a global hash and the window slots as `fingerprint_entries`
makes them: 10 windows, the content slot filled for one image in ten); the queries have 8 orientations and
the 44 window hashes of the turned layout, planted 0..10 bits from a stored image's global hash or window.
Figures printed: bulk-load seconds, `nbytes()`, the resident-memory (RSS) growth and peak growth of a fresh
process building it (as at a restart; medians of RUNS processes), query p50 and p99 (medians of RUNS passes
over the queries); the baseline in the same run is a brute-force numpy popcount scan of the same rules over
the raw hash matrix (whose own size is printed as `raw`).

Run: pytest -m benchmark tests/benchmarks/test_hash_index_memory.py -s
"""

from __future__ import annotations

import itertools
import json
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

from comparimg.matching import ABSENT, MAX_WINDOWS, STRIDE, TURNED_WINDOWS, HashIndex
from comparimg.model import Fingerprint

pytestmark = pytest.mark.benchmark

RUNS = 3
QUERIES = 300
BRUTE_QUERIES = 5
WINDOWS = 10  # upright windows per image; slot WINDOWS is the content slot
CONTENT_EVERY = 10  # one image in ten has a border, hence a content hash


def random_hashes(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(1, np.iinfo(np.uint64).max, size=shape, dtype=np.uint64, endpoint=True)


def flip(rng: np.random.Generator, value: np.uint64, bits: int) -> int:
    """Given a hash, return it with `bits` random bits flipped."""
    flips = rng.choice(64, size=bits, replace=False)
    return int(value) ^ sum(1 << int(bit) for bit in flips)


def stored_entries(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (count, STRIDE) entry hashes and presence shaped as `fingerprint_entries` makes them."""
    hashes = random_hashes(rng, (count, STRIDE))
    hashes[np.arange(count) % CONTENT_EVERY != 0, 1 + WINDOWS] = ABSENT
    return hashes, hashes != ABSENT


def planted_queries(rng: np.random.Generator, hashes: np.ndarray) -> list[Fingerprint]:
    """Queries in the real shape, each planted near a stored image: half by the global hash (some
    orientation), half by one window (a crop of it)."""
    queries = []
    for number in range(QUERIES):
        target = int(rng.integers(len(hashes)))
        phash = random_hashes(rng, 8).tolist()
        windows = random_hashes(rng, (1 + len(TURNED_WINDOWS), MAX_WINDOWS))
        windows[:, MAX_WINDOWS - 1] = ABSENT
        windows = windows.tolist()
        if number % 2 == 0:
            phash[int(rng.integers(8))] = flip(rng, hashes[target, 0], int(rng.integers(0, 11)))
        else:
            slot = int(rng.integers(WINDOWS))
            windows[0][slot] = flip(rng, hashes[target, 1 + slot], int(rng.integers(0, 5)))
        queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash), tuple(itertools.chain(*windows))))
    return queries


def brute_force_scan(hashes: np.ndarray, present: np.ndarray, fp: Fingerprint, threshold: int) -> np.ndarray:
    """The baseline: every query hash against every stored hash it is compared with, one popcount pass each
    (global hashes against everything, upright windows against everything)."""
    queried = np.array([*fp.phash, *fp.windows[:MAX_WINDOWS]], dtype=np.uint64)
    queried = queried[queried != ABSENT]
    hit = np.zeros(len(hashes), dtype=bool)
    for value in queried:
        hit |= ((np.bitwise_count(hashes ^ value) <= threshold) & present).any(axis=1)
    return np.flatnonzero(hit)


# A restart: a fresh process builds the index from arrays already in memory and reports what it cost.
CHILD = """
import gc, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_hash_index_memory import process_memory, stored_entries
from comparimg.matching import HashIndex
count = int(sys.argv[1])
hashes, present = stored_entries(np.random.default_rng(count), count)
gc.collect()
before = process_memory()["VmRSS"]
start = time.perf_counter()
index = HashIndex(threshold=10)
index.add_arrays(np.arange(count, dtype=np.int64), hashes, present)
seconds = time.perf_counter() - start
gc.collect()
after = process_memory()
print(json.dumps({"seconds": seconds, "rss": after["VmRSS"] - before, "peak": after["VmHWM"] - before,
                  "nbytes": index.nbytes()}))
"""


def process_memory() -> dict[str, int]:
    """Return this process's VmRSS and VmHWM (peak RSS) from /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def build_in_a_fresh_process(count: int) -> dict:
    """Given a count, build its index in a new Python process; return its load seconds, RSS growth, peak
    RSS growth and nbytes."""
    folder = str(pathlib.Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(count), folder],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def query_times(index: HashIndex, queries: list[Fingerprint]) -> list[float]:
    times = []
    for fp in queries:
        start = time.perf_counter()
        index.query(fp)
        times.append(time.perf_counter() - start)
    return times


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("count", [10_000, 100_000, 1_000_000])
def test_hash_index_memory_load_and_query(count):
    builds = [build_in_a_fresh_process(count) for _ in range(RUNS)]
    rng = np.random.default_rng(count)
    hashes, present = stored_entries(rng, count)
    queries = planted_queries(rng, hashes)
    index = HashIndex(threshold=10)
    index.add_arrays(np.arange(count, dtype=np.int64), hashes, present)
    p50s, p99s = [], []
    for _ in range(RUNS):
        times = query_times(index, queries)
        p50s.append(1000 * float(np.percentile(times, 50)))
        p99s.append(1000 * float(np.percentile(times, 99)))
    found = sum(len(index.query(fp)) for fp in queries[:50])
    brute = []
    for fp in queries[:BRUTE_QUERIES]:
        start = time.perf_counter()
        brute_force_scan(hashes, present, fp, 10)
        brute.append(1000 * (time.perf_counter() - start))
    loads = [build["seconds"] for build in builds]
    rss = statistics.median(build["rss"] for build in builds)
    peak = statistics.median(build["peak"] for build in builds)
    nbytes = builds[0]["nbytes"]
    mib, load = 2**20, statistics.median(loads)
    print(
        f"\n[{count} images] load={load:.2f}s (runs {', '.join(f'{s:.2f}' for s in loads)})"
        f" nbytes={nbytes / mib:.1f}MiB ({nbytes / count:.0f} B/image)"
        f" rss_growth={rss / mib:.1f}MiB ({rss / count:.0f} B/image) peak_growth={peak / mib:.1f}MiB"
        f" raw={hashes.nbytes / count:.0f} B/image"
        f" query_p50={statistics.median(p50s):.2f}ms p99={statistics.median(p99s):.2f}ms"
        f" (runs p50 {', '.join(f'{t:.2f}' for t in p50s)}; p99 {', '.join(f'{t:.2f}' for t in p99s)})"
        f" brute_force_median={statistics.median(brute):.1f}ms candidates_in_50_queries={found}"
    )
    assert found >= 25  # the planted neighbours are found
    if count == 1_000_000:
        assert nbytes <= 500 * mib and rss <= 500 * mib


# A restart of the daemon: a fresh process opens the index file and loads the HashIndex as the Linker does
# (`linking.load_hash_index`: `Index.fingerprint_rows` in batches, `hash_entries`, one `add_arrays`); then,
# apart, how long reading the rows alone takes.
RESTART = """
import gc, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
from test_hash_index_memory import process_memory
from comparimg.index import open_index
from comparimg.scanner.linking import hash_entries, load_hash_index
index = open_index(sys.argv[1])
gc.collect()
before = process_memory()["VmRSS"]
start = time.perf_counter()
hash_index = load_hash_index(index, 10, crops=True)
seconds = time.perf_counter() - start
gc.collect()
after = process_memory()
start = time.perf_counter()
for batch in index.fingerprint_rows():
    hash_entries(batch, True)
read = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "read": read, "rss": after["VmRSS"] - before,
                  "peak": after["VmHWM"] - before, "count": len(hash_index)}))
"""


def fill_index(path: pathlib.Path, count: int) -> None:
    """Given an index file path, write `count` `ok` rows with 8 hash variants and 44 window hashes each."""
    from comparimg.index import open_index

    rng = np.random.default_rng(count)
    index = open_index(path)
    with index.transaction():
        for first in range(0, count, 50_000):
            ids = range(first, min(first + 50_000, count))
            phash = random_hashes(rng, (len(ids), 8)).astype("<u8")
            windows = random_hashes(rng, (len(ids), 4 * MAX_WINDOWS)).astype("<u8")
            windows[:, MAX_WINDOWS - 1 :: MAX_WINDOWS] = ABSENT  # no content slot (no border)
            rows = [
                (
                    i + 1,
                    "/r",
                    f"/r/{i}.jpg",
                    1,
                    i,
                    1000,
                    0,
                    f"{i:064x}",
                    100,
                    100,
                    "JPEG",
                    int(phash[n, 0] >> 1),
                    phash[n].tobytes(),
                    windows[n].tobytes(),
                    "ok",
                    0.0,
                    0.0,
                )
                for n, i in enumerate(ids)
            ]
            index.db.conn.executemany(
                "INSERT INTO files (id, root, path, device, inode, size, mtime_ns, content_hash, width, "
                "height, format, phash, phash_variants, windows, state, first_seen, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    index.close()


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("count", [100_000, 1_000_000])
def test_restart_loads_the_hash_index_from_the_index_file(tmp_path, count):
    path = tmp_path / "index.db"
    fill_index(path, count)
    folder = str(pathlib.Path(__file__).parent)
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", RESTART, str(path), folder],
                capture_output=True,
                text=True,
                timeout=900,
                check=True,
            ).stdout
        )
        for _ in range(RUNS)
    ]
    assert all(run["count"] == count for run in runs)
    mib = 2**20
    rss, peak = statistics.median(r["rss"] for r in runs), statistics.median(r["peak"] for r in runs)
    loads = [r["seconds"] for r in runs]
    print(
        f"\n[restart, {count} rows] load={statistics.median(loads):.2f}s"
        f" (runs {', '.join(f'{s:.2f}' for s in loads)};"
        f" reading the rows {statistics.median(r['read'] for r in runs):.2f}s)"
        f" rss_growth={rss / mib:.1f}MiB ({rss / count:.0f} B/image) peak_growth={peak / mib:.1f}MiB"
        f" file={path.stat().st_size / mib:.0f}MiB"
    )
    if count == 1_000_000:
        assert statistics.median(loads) <= 10 and rss <= 500 * mib


@pytest.mark.timeout(3600)
def test_queries_after_a_restart_and_thirty_thousand_adds():
    # The daemon's steady state: a bulk-loaded million, then files landing one by one (pending list, small
    # segments, merges).
    count, added = 1_000_000, 30_000
    rng = np.random.default_rng(count)
    hashes, present = stored_entries(rng, count + added)
    queries = planted_queries(rng, hashes)
    index = HashIndex(threshold=10)
    index.add_arrays(np.arange(count, dtype=np.int64), hashes[:count], present[:count])
    start = time.perf_counter()
    for row in range(count, count + added):
        windows = tuple(int(value) for value in hashes[row, 1:])
        index.add(row, Fingerprint("", 1, 1, "PNG", (int(hashes[row, 0]),) * 8, windows))
    add_us = 1e6 * (time.perf_counter() - start) / added
    p50s, p99s = [], []
    for _ in range(RUNS):
        times = query_times(index, queries)
        p50s.append(1000 * float(np.percentile(times, 50)))
        p99s.append(1000 * float(np.percentile(times, 99)))
    print(
        f"\n[{count} + {added} added one by one] add={add_us:.0f}µs each"
        f" nbytes={index.nbytes() / len(index):.0f} B/image"
        f" query_p50={statistics.median(p50s):.2f}ms p99={statistics.median(p99s):.2f}ms"
        f" (runs p50 {', '.join(f'{t:.2f}' for t in p50s)})"
    )
