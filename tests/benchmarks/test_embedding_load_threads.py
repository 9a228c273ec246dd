"""Loading an EmbeddingIndex with one OpenBLAS thread and with two: the hyperplanes' QR decomposition and
`add_many` of 100 000 random 1 280-value embeddings, each in a fresh process (the thread count is fixed when
numpy is imported). Why every ComparImg process uses one BLAS thread (`comparimg/__init__.py`): on a busy
machine, OpenBLAS threads spinning on cores the hashing workers hold make both slower.

Run: pytest -m benchmark tests/benchmarks/test_embedding_load_threads.py -s
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

import pytest

from daemon_harness import env_with_package

pytestmark = pytest.mark.benchmark

RUNS = 3
LOAD = """
import time
import numpy as np
from comparimg.embedding.neighbours import EmbeddingIndex
vectors = np.random.default_rng(0).standard_normal((100_000, 1280)).astype(np.float16)
started = time.perf_counter()
index = EmbeddingIndex(1280)
built = time.perf_counter() - started
started = time.perf_counter()
for start in range(0, len(vectors), 65_536):
    block = vectors[start : start + 65_536]
    index.add_many(np.arange(start, start + len(block)), block.astype(np.float32))
print(built, time.perf_counter() - started)
"""


def timed_load(threads: int) -> tuple[float, float]:
    env = env_with_package({"OPENBLAS_NUM_THREADS": str(threads)})
    done = subprocess.run([sys.executable, "-c", LOAD], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    built, added = map(float, done.stdout.split())
    return built, added


@pytest.mark.timeout(1800)
def test_one_blas_thread_builds_and_loads_the_embedding_index_no_slower():
    figures = {threads: [] for threads in (1, 2)}
    for _ in range(RUNS):  # alternately, so the machine's load weighs on both alike
        for threads in figures:
            figures[threads].append(timed_load(threads))
    load = os.getloadavg()[0]
    for threads, runs in figures.items():
        built = statistics.median(b for b, _ in runs)
        added = statistics.median(a for _, a in runs)
        print(f"\nOPENBLAS_NUM_THREADS={threads}: hyperplanes {built:.2f} s, add 100 000 {added:.2f} s "
              f"(medians of {RUNS}; load {load:.1f})")  # fmt: skip
    assert statistics.median(b for b, _ in figures[1]) < 2.0
