"""The embedding neighbours (comparimg.embedding.neighbours.EmbeddingIndex): answers against a brute-force
float64 reference on random data, remove and replace, other dimensions, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from comparimg.embedding.neighbours import EmbeddingIndex


def unit_rows(rng: np.random.Generator, count: int, dimensions: int) -> np.ndarray:
    rows = rng.normal(size=(count, dimensions))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, count: int, dimensions: int, spread: float) -> np.ndarray:
    """Return `count` unit vectors around 10 random centres, each `spread` away from its centre: some
    cosines high (the neighbours), most near 0."""
    centres = unit_rows(rng, 10, dimensions)
    rows = centres[rng.integers(0, 10, count)] + spread * unit_rows(rng, count, dimensions)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def true_scores(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray) -> dict[int, float]:
    scores = vectors.astype(np.float64) @ query.astype(np.float64)
    return dict(zip(ids.tolist(), scores.tolist(), strict=True))


def assert_right_answer(found, truth: dict[int, float], k: int, min_cosine: float, tolerance=2e-3):
    """`found` is a right answer to a query whose true cosines are `truth`, up to `tolerance`: each cosine
    within it of the truth, best first, at most k, nothing clearly under the floor, and every id clearly
    better than the k-th best (or, with fewer than k, clearly above the floor) found."""
    assert len(found) <= k
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True)
    for file_id, score in found:
        assert abs(score - truth[file_id]) <= tolerance and truth[file_id] >= min_cosine - tolerance
    ranked = sorted(truth.values(), reverse=True)
    bar = max(min_cosine, ranked[k - 1] if len(ranked) >= k else -1.0) + tolerance
    assert {i for i, score in truth.items() if score > bar} <= {i for i, _ in found}


@pytest.mark.parametrize("dimensions", [1280, 512, 3])
def test_answers_match_brute_force_on_clustered_random_vectors(dimensions):
    rng = np.random.default_rng(dimensions)
    vectors = clustered(rng, 3000, dimensions, spread=0.6)
    ids = rng.choice(10**9, size=len(vectors), replace=False)
    index = EmbeddingIndex(dimensions)
    index.add_many(ids, vectors)
    assert len(index) == 3000 and int(ids[5]) in index and -1 not in index
    for row in rng.choice(len(vectors), size=20, replace=False):
        query = vectors[row]
        found = index.query(query, k=8, min_cosine=0.8)
        assert found and (found[0][0] == int(ids[row]) or dimensions < 64)  # in 3-d, ties abound
        assert_right_answer(found, true_scores(ids, vectors, query), 8, 0.8)


def test_exclude_k_and_the_floor():
    rng = np.random.default_rng(1)
    vectors = clustered(rng, 500, 64, spread=0.4)
    ids = np.arange(500) + 100
    index = EmbeddingIndex(64)
    index.add_many(ids, vectors)
    query = vectors[7]
    everything = index.query(query, k=1000, min_cosine=-1.0)
    assert len(everything) == 500
    assert [score for _, score in everything] == sorted((score for _, score in everything), reverse=True)
    assert index.query(query, k=3, min_cosine=-1.0) == everything[:3]
    without_itself = index.query(query, k=3, min_cosine=-1.0, exclude={107})
    assert 107 not in dict(without_itself) and without_itself == everything[1:4]
    assert all(score >= 0.9 for _, score in index.query(query, k=1000, min_cosine=0.9))
    assert index.query(query, k=0) == []


def test_remove_and_replace():
    rng = np.random.default_rng(2)
    vectors = unit_rows(rng, 200, 32)
    index = EmbeddingIndex(32)
    index.add_many(np.arange(200), vectors)
    index.remove(3)
    index.remove(3)  # twice: nothing happens
    index.remove(12345)
    assert len(index) == 199 and 3 not in index
    assert 3 not in dict(index.query(vectors[3], k=200, min_cosine=-1.0))
    index.add(150, vectors[3])  # 150 now looks like 3 did
    assert index.query(vectors[3], k=1)[0][0] == 150
    assert len(index) == 199
    assert all(other != 150 for other, _ in index.query(vectors[150], k=5, min_cosine=0.5))
    index.add(3, vectors[3])
    assert sorted(other for other, _ in index.query(vectors[3], k=2)) == [3, 150]


def test_removing_most_rows_gives_memory_back():
    rng = np.random.default_rng(3)
    index = EmbeddingIndex(128)
    vectors = unit_rows(rng, 20_000, 128)
    index.add_many(np.arange(20_000), vectors)
    full = index.nbytes
    for file_id in range(19_900):
        index.remove(file_id)
    assert len(index) == 100
    assert index.nbytes < full / 20
    for file_id in range(19_900, 20_000):
        assert index.query(vectors[file_id], k=1)[0][0] == file_id


def test_repeated_ids_in_one_batch_keep_the_last():
    rng = np.random.default_rng(4)
    vectors = unit_rows(rng, 3, 16)
    index = EmbeddingIndex(16)
    index.add_many(np.array([7, 8, 7]), vectors)
    assert len(index) == 2
    assert index.query(vectors[2], k=1)[0][0] == 7
    assert index.query(vectors[0], k=5, min_cosine=0.99) == []


def test_an_empty_index_answers_nothing():
    index = EmbeddingIndex(1280)
    assert len(index) == 0 and index.query(np.ones(1280, np.float32) / np.sqrt(1280)) == []
    index.add_many(np.zeros(0, np.int64), np.zeros((0, 1280), np.float32))
    assert len(index) == 0


def test_bad_input_is_refused_with_the_shape():
    index = EmbeddingIndex(8)
    with pytest.raises(ValueError, match=r"8 values, got shape \(7,\)"):
        index.add(1, np.ones(7, np.float32))
    with pytest.raises(ValueError, match=r"2 embedding\(s\) of 8 values, got shape \(3, 8\)"):
        index.add_many(np.array([1, 2]), np.ones((3, 8), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        index.add(1, np.full(8, np.nan, np.float32))
    with pytest.raises(ValueError, match=r"8 values, got shape \(9,\)"):
        index.query(np.ones(9, np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        EmbeddingIndex(0)
    assert len(index) == 0
