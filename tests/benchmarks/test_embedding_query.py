"""EmbeddingIndex at 1 000 000 images: load time, memory, query latency against a brute-force float32 matmul
over the same vectors, and whether planted copies are found.

The vectors are built to look like real embeddings: 204 real ones (the shipped model on crops of
scikit-image's photos) are the bases; each stored vector mixes two bases with its own random part, so most
pairs score low (median 0.2, p99 0.53: real unrelated photos give 0.16 and 0.51), pairs sharing bases score
like pictures of alike scenes, and no two are copies. Queries are
copies of stored vectors: the vector plus noise, at a true cosine of 0.80-0.97 (what the shipped model gives
resized, re-encoded, cropped, turned copies), and unrelated vectors made the same way.

Figures printed: generation and load seconds, `nbytes`, the process's RSS growth while loading (less the
baseline's float32 matrix, filled in the same loop) and its RSS after, the query median and p99 (medians of
RUNS passes over the queries) and the median CPU time of a query, the brute-force median on the same vectors
and the ratio, how many planted copies came back at k=16 and min_cosine=0.75 (and, for the first
BRUTE_QUERIES, from the brute force), the estimate's error on them, and the answers to unrelated queries.

Run: pytest -m benchmark tests/benchmarks/test_embedding_query.py -s
"""

from __future__ import annotations

import gc
import statistics
import time

import numpy as np
import pytest

from comparimg.embedding import Embedder
from comparimg.embedding.neighbours import EmbeddingIndex
from comparimg.hashing.embedder_input import embed_picture

pytestmark = pytest.mark.benchmark

COUNT = 1_000_000
CHUNK = 62_500
RUNS = 3
QUERIES = 200
BRUTE_QUERIES = 10
OWN_PART = 0.6  # the norm of each vector's own random part, against about 0.8 for its two bases
BASE_PHOTOS = (
    "astronaut", "chelsea", "camera", "coins", "hubble_deep_field", "immunohistochemistry", "page", "text",
    "brick", "grass", "gravel", "cell", "retina", "coffee", "rocket", "clock", "moon",
)  # fmt: skip


def process_memory() -> dict[str, int]:
    """Return this process's VmRSS and VmHWM (peak RSS) from /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {name: int(fields[name].split()[0]) * 1024 for name in ("VmRSS", "VmHWM")}


def base_embeddings() -> np.ndarray:
    """Return 204 real embeddings: the shipped model on 12 views (the whole, crops, a mirror) of each photo
    in BASE_PHOTOS."""
    import skimage.data

    embedder = Embedder.load()
    bases = []
    for name in BASE_PHOTOS:
        pixels = np.asarray(getattr(skimage.data, name)())
        if pixels.dtype != np.uint8:
            pixels = (255 * (pixels > 0) if pixels.dtype == bool else pixels).astype(np.uint8)
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        pixels = np.ascontiguousarray(pixels[..., :3])
        h, w = pixels.shape[:2]
        crops = [pixels] + [
            pixels[top * h // 3 : (top + 2) * h // 3, left * w // 3 : (left + 2) * w // 3]
            for top in range(2)
            for left in range(2)
        ]
        crops += [pixels[: h // 2], pixels[h // 2 :], pixels[:, : w // 2], pixels[:, w // 2 :]]
        crops += [pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4], pixels[:, ::-1], pixels[: h // 3]]
        bases.extend(embed_picture(embedder, np.ascontiguousarray(crop)) for crop in crops)
    return np.array(bases, dtype=np.float32)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def synthetic_chunk(bases: np.ndarray, noise: np.ndarray, chunk: int, out: np.ndarray) -> None:
    """Write stored vectors [chunk * CHUNK, (chunk + 1) * CHUNK) into `out` (CHUNK, dimensions), the same
    on every call: two bases mixed, plus an own part (two of the `noise` vectors, signs drawn)."""
    rng = np.random.default_rng((7, chunk))
    first, second = rng.integers(0, len(bases), (2, CHUNK))
    weight = rng.uniform(0.2, 0.8, (CHUNK, 1)).astype(np.float32)
    np.take(bases, first, axis=0, out=out)
    out *= weight
    out += (1 - weight) * bases[second]
    signs = rng.choice(np.array([-OWN_PART, OWN_PART], dtype=np.float32), (2, CHUNK, 1))
    for sign in signs:
        out += sign * noise[rng.integers(0, len(noise), CHUNK)]
    out /= np.linalg.norm(out, axis=1, keepdims=True)


def noise_vectors(dimensions: int) -> np.ndarray:
    """Return 8192 random vectors of norm 1 / sqrt(2): two of them, signed, are a vector's own part."""
    rows = np.random.default_rng(5).standard_normal((8192, dimensions), dtype=np.float32)
    return rows / (np.sqrt(2) * np.linalg.norm(rows, axis=1, keepdims=True))


def copies_of(rng: np.random.Generator, vectors: np.ndarray) -> np.ndarray:
    """Return a copy-like query for each vector: it plus noise, at a true cosine of about 0.80-0.97."""
    noise = unit(rng.standard_normal(vectors.shape).astype(np.float32))
    amount = rng.uniform(0.25, 0.75, (len(vectors), 1)).astype(np.float32)
    return unit(vectors + amount * noise)


def brute_force(matrix: np.ndarray, query: np.ndarray, k: int = 16, min_cosine: float = 0.75) -> np.ndarray:
    scores = matrix @ query
    best = np.argpartition(scores, -k)[-k:]
    best = best[np.argsort(-scores[best])]
    return best[scores[best] >= min_cosine]


def timed(function, *arguments) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*arguments)
    return 1000 * (time.perf_counter() - start), result


@pytest.mark.timeout(1800)
def test_embedding_query_at_a_million_images():
    bases = base_embeddings()
    rng = np.random.default_rng(11)
    planted = rng.choice(COUNT, QUERIES, replace=False)
    noise = noise_vectors(bases.shape[1])
    unrelated = np.empty((CHUNK, bases.shape[1]), dtype=np.float32)  # made like the stored ones, not stored
    synthetic_chunk(bases, noise, COUNT // CHUNK, unrelated)
    unrelated = unrelated[:QUERIES].copy()
    matrix = np.empty((COUNT, bases.shape[1]), dtype=np.float32)  # every vector, for the baseline
    gc.collect()
    before = process_memory()["VmRSS"]
    index, generating, loading = EmbeddingIndex(bases.shape[1]), 0.0, 0.0
    for chunk in range(COUNT // CHUNK):
        rows = slice(chunk * CHUNK, (chunk + 1) * CHUNK)
        generating += timed(synthetic_chunk, bases, noise, chunk, matrix[rows])[0]
        loading += timed(index.add_many, np.arange(rows.start, rows.stop), matrix[rows])[0]
    gc.collect()
    after = process_memory()["VmRSS"]
    index_rss = after - before - matrix.nbytes  # the matrix's pages are all written: resident
    copies = copies_of(rng, matrix[planted])
    true_cosines = np.sum(copies * matrix[planted], axis=1)
    queries = np.concatenate([copies, unrelated])

    medians, p99s, cpu = [], [], []
    for _ in range(RUNS):
        times = [timed(index.query, query)[0] for query in queries]
        medians.append(float(np.median(times)))
        p99s.append(float(np.percentile(times, 99)))
    for query in queries:  # the CPU time a query takes, what a busy machine's waits do not inflate
        start = time.process_time()
        index.query(query)
        cpu.append(1000 * (time.process_time() - start))
    answers = [index.query(query) for query in copies]
    found = sum(int(row) in dict(answer) for row, answer in zip(planted, answers, strict=True))
    errors = [
        answer_cosine - float(truth)
        for row, answer, truth in zip(planted, answers, true_cosines, strict=True)
        for file_id, answer_cosine in answer
        if file_id == row
    ]
    unrelated_answers = sum(len(index.query(query)) for query in unrelated)

    brute = [timed(brute_force, matrix, query)[0] for query in queries[:BRUTE_QUERIES]]
    pairs = list(zip(planted[:BRUTE_QUERIES], copies, answers, strict=False))
    brute_found = sum(int(row) in brute_force(matrix, copy) for row, copy, _ in pairs)
    index_found = sum(int(row) in dict(answer) for row, _, answer in pairs)
    sample = matrix[rng.choice(COUNT, 2000, replace=False)] @ unrelated[:20].T
    del matrix

    mib, median = 2**20, statistics.median(medians)
    print(
        f"\n[{COUNT} images] generate={generating / 1000:.1f}s load={loading / 1000:.1f}s"
        f" nbytes={index.nbytes / mib:.1f}MiB ({index.nbytes / COUNT:.1f} B/image)"
        f" rss_growth={index_rss / mib:.1f}MiB (less the baseline's matrix)"
        f" rss_after_load={after / mib:.0f}MiB"
        f"\n  query median={median:.2f}ms p99={statistics.median(p99s):.2f}ms"
        f" (runs {', '.join(f'{m:.2f}' for m in medians)}) cpu_time median={np.median(cpu):.2f}ms"
        f" brute_force_float32 median={statistics.median(brute):.0f}ms"
        f" ratio={statistics.median(brute) / median:.0f}x"
        f"\n  planted copies (true cosine {true_cosines.min():.2f}-{true_cosines.max():.2f}) found:"
        f" {found}/{QUERIES} (of the first {BRUTE_QUERIES}: {index_found}, brute force {brute_found}),"
        f" estimate error mean {np.mean(errors):+.3f} max |{np.max(np.abs(errors)):.3f}|;"
        f" answers to {QUERIES} unrelated queries: {unrelated_answers}"
        f"\n  cosines of unrelated queries with stored vectors: median {np.median(sample):.2f}"
        f" p99 {np.percentile(sample, 99):.2f} p99.99 {np.percentile(sample, 99.99):.2f}"
    )
    assert statistics.median(brute) / median >= 5  # loosely: the machine may be busy (say so with figures)
    assert index.nbytes <= 100 * COUNT
    assert found >= 0.95 * QUERIES and index_found >= brute_found - 1
