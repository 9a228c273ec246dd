"""The embedding neighbours: an in-memory index of image embeddings that answers "which indexed images look
like this one" (cosine at least a floor, best first), for a million images in a few milliseconds and about
89 bytes an image.

Method (docs/model.md, "Searching embeddings"): each embedding is kept only as its 640 sign bits against
fixed random hyperplanes (SimHash): bit j says on which side of hyperplane j the vector lies. Two vectors at
angle θ fall on different sides of a random hyperplane with probability θ / π, so the Hamming distance h of
their codes estimates the cosine as cos(π h / 640) (standard error about 0.02 near 0.85, measured on real
embeddings). The hyperplanes are orthonormal columns drawn from a fixed seed, so the method needs no
training data and fits an encoder of any dimension; codes are never stored anywhere, the index is rebuilt
from the stored embeddings.

A query compares its code with every indexed code, in a cascade: the first three 64-bit words of every row,
then word by word on the rows still in the running. A row is dropped once its partial distance exceeds what
any row whose full distance gives an estimate at the floor would show there, plus 4.5 standard deviations
(a hypergeometric bound), so the cascade drops a row the full comparison would return with a chance below
1e-5, and most rows after the first three words.

Rows: the code words column by column (10 uint64), the file id (int64) and a live flag, 89 bytes. Rows are
kept in file id order, a lookup is a binary search, except for a tail of at most `_TAIL_LIMIT` rows added
out of order (searched apart, then merged in). A removed row is only flagged dead until a
quarter of the rows are dead, then the arrays are compacted (and shrunk).
"""

from __future__ import annotations

import functools
from collections.abc import Collection

import numpy as np

__all__ = ["CODE_BITS", "EmbeddingIndex"]

CODE_BITS = 640
_WORDS = CODE_BITS // 64
_FIRST_WORDS = 3  # compared for every row; the rest only for rows still in the running
_MARGIN = 4.5  # standard deviations of a row's partial distance allowed above what the floor gives
_SEED = 20_261_207  # the hyperplanes; codes live only in memory, so any fixed seed will do
_CHUNK = 65_536  # rows compared at once: a chunk's scratch arrays stay in the CPU's cache
_TAIL_LIMIT = 4096
_GROWTH = 8  # the arrays grow by an eighth (at least _MIN_CAPACITY rows)
_MIN_CAPACITY = 1024


class EmbeddingIndex:
    """Embeddings of `dimensions` values keyed by file id; `query` returns the ids whose estimated cosine
    with a vector reaches a floor, best first. Re-adding an id replaces its embedding."""

    def __init__(self, dimensions: int):
        if not isinstance(dimensions, int | np.integer) or int(dimensions) <= 0:
            raise ValueError(f"dimensions must be a positive whole number, not {dimensions!r}")
        self.dimensions = int(dimensions)
        self._hyperplanes = _hyperplanes(self.dimensions)
        self._words = np.zeros((_WORDS, 0), dtype=np.uint64)  # column by column: word j of every row
        self._ids = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._count = 0  # rows in use, dead ones included
        self._dead = 0
        self._sorted = 0  # rows [0, _sorted) are in file id order; the tail [_sorted, _count) is not

    def __len__(self) -> int:
        return self._count - self._dead

    def __contains__(self, file_id: object) -> bool:
        if not isinstance(file_id, int | np.integer):
            return False
        row = self._row(int(file_id))
        return row is not None and bool(self._alive[row])

    @property
    def nbytes(self) -> int:
        """Bytes held: the codes, ids and live flags (their capacity, not only the rows in use) and the
        hyperplanes."""
        arrays = (self._words, self._ids, self._alive, self._hyperplanes)
        return int(sum(array.nbytes for array in arrays))

    def add(self, file_id: int, embedding: np.ndarray) -> None:
        """Given a file id and its embedding (`dimensions` values; only its direction counts), index it,
        replacing what the id had. Raise ValueError for another length or non-finite values."""
        self.add_many(np.asarray([file_id], dtype=np.int64), self._checked(embedding, 1))

    def add_many(self, file_ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Given n file ids and their embeddings (n, dimensions), index them all (a later row wins over an
        earlier one with the same id, and over what the index held). Raise ValueError for shapes that do not
        fit or non-finite values."""
        ids = np.asarray(file_ids).reshape(-1)
        if len(ids) and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"file ids must be whole numbers, not {ids.dtype}")
        ids = ids.astype(np.int64)
        if np.shape(embeddings) != (len(ids), self.dimensions):
            self._checked(embeddings, len(ids))  # raises, naming the shapes
        codes = np.empty((_WORDS, len(ids)), dtype=np.uint64)
        for start in range(0, len(ids), _CHUNK):  # a block at a time: float32 copies stay small
            block = self._checked(embeddings[start : start + _CHUNK], min(_CHUNK, len(ids) - start))
            codes[:, start : start + _CHUNK] = self._encode(block)
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            _, first = np.unique(ids[::-1], return_index=True)
            keep = len(ids) - 1 - first  # the last row of a repeated id, in id order
            ids, codes = ids[keep], codes[:, keep]
        rows = self._rows(ids)
        known = rows >= 0
        if known.any():
            self._words[:, rows[known]] = codes[:, known]
            self._dead -= int(np.count_nonzero(~self._alive[rows[known]]))
            self._alive[rows[known]] = True
        if not known.all():
            self._append(ids[~known], codes[:, ~known])

    def remove(self, file_id: int) -> None:
        """Forget a file id (nothing happens for an id not indexed)."""
        row = self._row(int(file_id))
        if row is None or not self._alive[row]:
            return
        self._alive[row] = False
        self._dead += 1
        if self._dead > max(self._count // 4, 64):
            self._compact()

    def query(
        self, embedding: np.ndarray, k: int = 16, min_cosine: float = 0.75, exclude: Collection[int] = ()
    ) -> list[tuple[int, float]]:
        """Given an embedding, return up to `k` (file id, estimated cosine) pairs whose estimate is at least
        `min_cosine`, best first (ties by id), leaving out the ids in `exclude`. The estimate's standard error
        is about 0.02 near a cosine of 0.85 (0.03 near 0.7): to get every image whose true cosine reaches c,
        ask for c - 0.05 and check the true cosines of the answers. Raise ValueError for a vector of another
        length or with non-finite values, or a floor that is not a number."""
        if not np.isfinite(min_cosine):
            raise ValueError(f"min_cosine must be a number, not {min_cosine!r}")
        code = self._query_code(self._checked(embedding, 1)[0])
        if k <= 0 or self._count == 0:
            return []
        limits = _partial_limits(float(min_cosine))
        rows, distances = self._first_words(code, limits[_FIRST_WORDS])
        for word in range(_FIRST_WORDS, _WORDS):
            distances += np.bitwise_count(self._words[word, rows] ^ code[word])
            near = distances <= limits[word + 1]
            rows, distances = rows[near], distances[near]
        live = self._alive[rows]
        rows, distances = rows[live], distances[live]
        return self._best(self._ids[rows], distances, k, exclude)

    def _first_words(self, code: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        # Rows whose first _FIRST_WORDS words lie within `limit` bits of the query's, and those distances.
        found_rows, found_distances = [], []
        scratch = np.empty(min(_CHUNK, self._count), dtype=np.uint64)
        counts = np.empty(len(scratch), dtype=np.uint8)
        total = np.empty(len(scratch), dtype=np.uint8)
        for start in range(0, self._count, _CHUNK):
            stop = min(start + _CHUNK, self._count)
            size = stop - start
            xor, count, distance = scratch[:size], counts[:size], total[:size]
            np.bitwise_xor(self._words[0, start:stop], code[0], out=xor)
            np.bitwise_count(xor, out=distance)
            for word in range(1, _FIRST_WORDS):
                np.bitwise_xor(self._words[word, start:stop], code[word], out=xor)
                np.bitwise_count(xor, out=count)
                distance += count
            near = np.flatnonzero(distance <= limit)
            found_rows.append(near + start)
            found_distances.append(distance[near].astype(np.int32))
        return np.concatenate(found_rows), np.concatenate(found_distances)

    @staticmethod
    def _best(
        ids: np.ndarray, distances: np.ndarray, k: int, exclude: Collection[int]
    ) -> list[tuple[int, float]]:
        if len(exclude):
            kept = ~np.isin(ids, np.fromiter((int(i) for i in exclude), dtype=np.int64, count=len(exclude)))
            ids, distances = ids[kept], distances[kept]
        order = np.lexsort((ids, distances))[:k]
        cosines = np.cos(np.pi * distances[order] / CODE_BITS)
        return [(int(i), float(c)) for i, c in zip(ids[order], cosines, strict=True)]

    def _checked(self, embeddings: np.ndarray, count: int) -> np.ndarray:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1 and count == 1:
            vectors = vectors[np.newaxis]
        if vectors.shape != (count, self.dimensions):
            raise ValueError(
                f"expected {count} embedding(s) of {self.dimensions} values, got shape {np.shape(embeddings)}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("an embedding holds non-finite values")
        return vectors

    def _encode(self, vectors: np.ndarray) -> np.ndarray:
        """Given vectors (n, dimensions), return their codes column by column: (_WORDS, n) uint64."""
        bits = (vectors @ self._hyperplanes) > 0
        packed = np.packbits(bits, axis=1, bitorder="little").view("<u8").astype(np.uint64, copy=False)
        return np.ascontiguousarray(packed.T)

    def _query_code(self, vector: np.ndarray) -> np.ndarray:
        """Given one vector, return its code (_WORDS,) uint64. einsum, not BLAS: a threaded BLAS call waits
        for its threads, tens of milliseconds on a busy machine, for what one core does in a tenth of one."""
        bits = np.einsum("i,ij->j", vector, self._hyperplanes) > 0
        return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64, copy=False)

    def _row(self, file_id: int) -> int | None:
        rows = self._rows(np.asarray([file_id], dtype=np.int64))
        return None if rows[0] < 0 else int(rows[0])

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Given file ids, return the row of each (-1 for an id not held): a binary search in the sorted
        rows, then in the tail's."""
        rows = np.full(len(ids), -1, dtype=np.int64)
        for start, stop in ((0, self._sorted), (self._sorted, self._count)):
            if stop == start:
                continue
            held = self._ids[start:stop]
            order = None if start == 0 else np.argsort(held)
            ordered = held if order is None else held[order]
            position = np.minimum(np.searchsorted(ordered, ids), len(ordered) - 1)
            found = ordered[position] == ids
            at = position if order is None else order[position]
            rows[found] = start + at[found]
        return rows

    def _append(self, ids: np.ndarray, codes: np.ndarray) -> None:
        # New ids, in id order: they extend the sorted rows when they follow them, else join the tail,
        # merged in once it outgrows _TAIL_LIMIT.
        needed = self._count + len(ids)
        if needed > len(self._ids):
            self._resize(max(needed, len(self._ids) + max(_MIN_CAPACITY, len(self._ids) // _GROWTH)))
        start, self._count = self._count, needed
        self._ids[start:needed] = ids
        self._alive[start:needed] = True
        self._words[:, start:needed] = codes
        follows = self._sorted == start and (start == 0 or ids[0] > self._ids[start - 1])
        if follows:
            self._sorted = needed
        elif self._count - self._sorted > _TAIL_LIMIT:
            self._merge_tail()

    def _merge_tail(self) -> None:
        # Sort the tail; when its ids do not all follow the sorted rows', sort every row.
        start = self._sorted
        if start == self._count:
            return
        if start > 0 and self._ids[start : self._count].min() <= self._ids[start - 1]:
            start = 0
        self._permute(start, start + np.argsort(self._ids[start : self._count], kind="stable"))
        self._sorted = self._count

    def _permute(self, start: int, order: np.ndarray) -> None:
        # Rows [start, start + len(order)) become the rows `order` names.
        stop = start + len(order)
        self._ids[start:stop] = self._ids[order]
        self._alive[start:stop] = self._alive[order]
        self._words[:, start:stop] = self._words[:, order]

    def _compact(self) -> None:
        self._merge_tail()
        keep = np.flatnonzero(self._alive[: self._count])
        self._permute(0, keep)
        self._count = self._sorted = len(keep)
        self._dead = 0
        self._resize(self._count + max(_MIN_CAPACITY, self._count // _GROWTH))

    def _resize(self, capacity: int) -> None:
        count = self._count
        words = np.zeros((_WORDS, capacity), dtype=np.uint64)
        words[:, :count] = self._words[:, :count]
        ids = np.zeros(capacity, dtype=np.int64)
        ids[:count] = self._ids[:count]
        alive = np.zeros(capacity, dtype=bool)
        alive[:count] = self._alive[:count]
        self._words, self._ids, self._alive = words, ids, alive


@functools.cache
def _hyperplanes(dimensions: int) -> np.ndarray:
    """Return CODE_BITS unit hyperplane normals (dimensions, CODE_BITS) float32, drawn from _SEED: blocks of
    mutually orthogonal columns (orthogonal directions make the estimate steadier than independent ones).
    Made once per dimension and process (read-only): a QR decomposition takes a while on a busy machine."""
    rng = np.random.default_rng(_SEED)
    blocks = []
    for start in range(0, CODE_BITS, dimensions):
        gaussian = rng.standard_normal((dimensions, min(dimensions, CODE_BITS - start)))
        orthonormal, _ = np.linalg.qr(gaussian)
        blocks.append(orthonormal)
    hyperplanes = np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)
    hyperplanes.flags.writeable = False
    return hyperplanes


def _partial_limits(min_cosine: float) -> np.ndarray:
    """Given a cosine floor, return for w = 0.._WORDS the largest distance over the first w words a row may
    show and still be returned: the full distance whose estimate is the floor, and for fewer words that
    distance's share plus _MARGIN standard deviations (drawing 64 w of CODE_BITS bits is hypergeometric)."""
    share = np.arccos(np.clip(min_cosine, -1.0, 1.0)) / np.pi
    full = np.floor(share * CODE_BITS + 1e-9)
    bits = 64.0 * np.arange(_WORDS + 1)
    rate = full / CODE_BITS
    spread = np.sqrt(bits * rate * (1 - rate) * (CODE_BITS - bits) / (CODE_BITS - 1))
    limits = np.floor(bits * rate + _MARGIN * spread)
    limits[-1] = full
    return np.minimum(limits, bits).astype(np.int64)
