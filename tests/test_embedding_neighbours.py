"""The embedding neighbours (comparimg.embedding.neighbours.EmbeddingIndex): copies of real photos through the
shipped model, answers against a full comparison of the sign codes and against true cosines on random data,
remove and replace, other dimensions, and bad input. Run with -s to see the estimates."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from comparimg.embedding import Embedder, neighbours
from comparimg.embedding.neighbours import EmbeddingIndex
from comparimg.hashing.embedder_input import embed_picture


def unit_rows(rng: np.random.Generator, count: int, dimensions: int) -> np.ndarray:
    rows = rng.normal(size=(count, dimensions))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, count: int, dimensions: int, spread: float) -> np.ndarray:
    """Return `count` unit vectors around 10 random centres, each `spread` away from its centre: some
    cosines high (the neighbours), most near 0."""
    centres = unit_rows(rng, 10, dimensions)
    rows = centres[rng.integers(0, 10, count)] + spread * unit_rows(rng, count, dimensions)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def full_scan(index_dimensions: int, ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int,
              min_cosine: float, exclude=()) -> list[tuple[int, float]]:  # fmt: skip
    """The answer a full comparison of every sign code gives: the reference the cascade must equal."""
    hyperplanes = neighbours._hyperplanes(index_dimensions)
    codes, query_code = vectors @ hyperplanes > 0, np.einsum("i,ij->j", query, hyperplanes) > 0
    estimates = np.cos(np.pi * np.count_nonzero(codes != query_code, axis=1) / neighbours.CODE_BITS)
    ranked = sorted(
        (-estimate, int(file_id))
        for file_id, estimate in zip(ids, estimates, strict=True)
        if estimate >= min_cosine and file_id not in exclude
    )
    return [(file_id, -negated) for negated, file_id in ranked[:k]]


def sign_code_error(cosines: np.ndarray) -> np.ndarray:
    """The standard error of a sign-code estimate at these true cosines: the angle is estimated from
    CODE_BITS draws of probability angle / pi."""
    angle = np.arccos(np.clip(cosines, -1, 1))
    share = angle / np.pi
    return np.pi * np.sin(angle) * np.sqrt(share * (1 - share) / neighbours.CODE_BITS)


@pytest.mark.parametrize(("dimensions", "min_cosine"), [(1280, 0.75), (1280, 0.3), (512, 0.8), (3, 0.9)])
def test_answers_equal_a_full_comparison_of_the_codes(dimensions, min_cosine):
    rng = np.random.default_rng(dimensions)
    vectors = clustered(rng, 3000, dimensions, spread=0.6)
    ids = rng.choice(10**9, size=len(vectors), replace=False)
    index = EmbeddingIndex(dimensions)
    index.add_many(ids, vectors)
    assert len(index) == 3000 and int(ids[5]) in index and -1 not in index
    sizes = []
    for row in rng.choice(len(vectors), size=20, replace=False):
        found = index.query(vectors[row], k=8, min_cosine=min_cosine)
        assert found == full_scan(dimensions, ids, vectors, vectors[row], 8, min_cosine)
        # Itself first, at 1 or a bit off it (a component within rounding of 0 may flip a bit); in 3-d, exact
        # ties abound
        assert (found[0][0] == int(ids[row]) and found[0][1] > 0.999) or dimensions < 64
        sizes.append(len(found))
    assert max(sizes) == 8  # not a trivially empty answer


def test_estimates_are_within_the_sign_code_error_and_every_clear_neighbour_is_found():
    rng = np.random.default_rng(7)
    vectors = clustered(rng, 5000, 1280, spread=0.9)
    ids = np.arange(len(vectors)) * 3
    index = EmbeddingIndex(1280)
    index.add_many(ids, vectors)
    worst = 0.0
    for row in rng.choice(len(vectors), size=30, replace=False):
        truth = vectors @ vectors[row]
        found = dict(index.query(vectors[row], k=len(vectors), min_cosine=0.7))
        rows = np.array(list(found)) // 3
        errors = np.abs(np.array(list(found.values())) - truth[rows])
        assert np.all(errors <= 5 * sign_code_error(truth[rows]) + 1e-3)
        clear = np.flatnonzero(truth >= 0.7 + 5 * sign_code_error(truth))
        assert set(ids[clear].tolist()) <= set(found)
        assert np.all(truth[rows] >= 0.7 - 5 * sign_code_error(truth[rows]) - 1e-3)
        worst = max(worst, float(errors.max()))
    print(f"\nlargest estimate error among answers: {worst:.3f}")


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
    empty = EmbeddingIndex(128).nbytes  # the hyperplanes
    full = index.nbytes - empty
    for file_id in range(19_900):
        index.remove(file_id)
    assert len(index) == 100
    assert index.nbytes - empty < full / 10
    for file_id in range(19_900, 20_000):
        assert index.query(vectors[file_id], k=1)[0][0] == file_id


def test_adds_in_any_order_replaces_and_removes_keep_every_id_findable():
    rng = np.random.default_rng(6)
    vectors = unit_rows(rng, 12_000, 24)
    index, held = EmbeddingIndex(24), {}
    for step in range(9000):  # past the tail's limit and a compaction: ids in random order, some again
        file_id = int(rng.integers(0, 6000)) * 7 - 20_000  # negative ids too
        if rng.random() < 0.2 and held:
            gone = int(rng.choice(list(held)))
            index.remove(gone)
            del held[gone]
        else:
            index.add(file_id, vectors[step])
            held[file_id] = step
    batch = rng.choice(6000, 3000, replace=False) * 7 - 20_000  # new ids and held ones
    index.add_many(batch, vectors[9000:])
    held.update((int(file_id), 9000 + row) for row, file_id in enumerate(batch))
    assert len(index) == len(held)
    for file_id, row in held.items():
        assert file_id in index
        assert [found for found, _ in index.query(vectors[row], k=1, min_cosine=0.999)] == [file_id]
    assert not any(file_id in index for file_id in range(-20_001, 22_000, 7))  # none of these was added
    assert sum(file_id in index for file_id in range(-20_000, 22_000, 7)) == len(held)


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
    with pytest.raises(ValueError, match="min_cosine"):
        index.query(np.ones(8, np.float32), min_cosine=float("nan"))
    with pytest.raises(ValueError, match="dimensions"):
        EmbeddingIndex(0)
    assert len(index) == 0


# Copies of real photos through the shipped model: the photos the verifier's training never sees
# (tools/verifier_pairs.TEST_PHOTOS) and the tests' other sample photos as unrelated pictures.
HELD_OUT = ("coffee", "rocket", "clock", "moon")
FLOOR = 0.7  # the floor a caller uses to get every copy the shipped model scores >= 0.75


def perspective(image: Image.Image, tilt: float = 0.08) -> Image.Image:
    """The top seen further away: its corners come closer together."""
    width, height = image.size
    source = [(tilt * width, 0), (width - tilt * width, 0), (width, height), (0, height)]
    target = [(0, 0), (width, 0), (width, height), (0, height)]
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    coefficients = np.linalg.solve(np.array(rows, float), np.array(values, float)).tolist()
    return image.transform(image.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)


def copies(image: Image.Image) -> dict[str, Image.Image]:
    width, height = image.size
    side = min(width, height)
    turned = image.rotate(2.5, resample=Image.Resampling.BICUBIC)
    trim_x, trim_y = round(width * 0.06), round(height * 0.06)
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=50)
    return {
        "resized 40 %": image.resize((width * 2 // 5, height * 2 // 5), Image.Resampling.LANCZOS),
        "JPEG q50": Image.open(io.BytesIO(encoded.getvalue())).convert("RGB"),
        "cropped 10 %": image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)),
        "turned 2.5°": turned.crop((trim_x, trim_y, width - trim_x, height - trim_y)),
        "perspective": perspective(image),
        "square crop": image.crop(
            ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
        ),
        "white frame": ImageOps.expand(image, border=round(side * 0.05), fill=(255, 255, 255)),
    }


@pytest.fixture(scope="module")
def real_embeddings(photos) -> tuple[dict[str, np.ndarray], dict[tuple[str, str], np.ndarray]]:
    """Return ({photo: embedding} for the tests' photos and the held-out ones, {(photo, edit): embedding}
    for the held-out photos' copies), by the shipped model."""
    import skimage.data

    embedder = Embedder.load()
    pictures = {name: Image.fromarray(pixels) for name, pixels in photos.items()}
    pictures.update(
        (name, Image.fromarray(getattr(skimage.data, name)()).convert("RGB")) for name in HELD_OUT
    )
    originals = {name: embed_picture(embedder, picture) for name, picture in pictures.items()}
    edited = {
        (name, edit): embed_picture(embedder, copy)
        for name in HELD_OUT
        for edit, copy in copies(pictures[name]).items()
    }
    return originals, edited


def test_every_copy_of_a_real_photo_comes_back_and_no_unrelated_photo(real_embeddings):
    originals, edited = real_embeddings
    index = EmbeddingIndex(1280)
    ids = {key: number for number, key in enumerate([*originals, *edited])}
    index.add_many(np.array(list(ids.values())), np.array([*originals.values(), *edited.values()]))
    print(f"\ncopy: true cosine -> estimate (floor {FLOOR})")
    for name in HELD_OUT:
        answer = dict(index.query(originals[name], k=16, min_cosine=FLOOR, exclude={ids[name]}))
        for (photo, edit), vector in edited.items():
            if photo != name:
                continue
            truth = float(vector @ originals[name])
            estimate = answer.get(ids[photo, edit])
            print(
                f"  {name:7s} {edit:13s} {truth:.3f} -> {'missed' if estimate is None else f'{estimate:.3f}'}"
            )
            assert estimate is not None and abs(estimate - truth) <= 0.1
        unrelated = [key for key, number in ids.items() if number in answer and key[0] != name]
        assert not unrelated, f"{name}: {unrelated} came back"
