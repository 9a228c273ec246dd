"""The embedding neighbours: an in-memory index of image embeddings that answers "which indexed images look
like this one" (cosine above a floor, best first).

First version: exact, brute force over float16 rows (a compact, faster method replaces it).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

__all__ = ["EmbeddingIndex"]

_CHUNK = 65_536  # rows scored at once, so a query's float32 scratch stays small


class EmbeddingIndex:
    """Embeddings of `dimensions` values keyed by file id; `query` returns the ids whose cosine with a vector
    reaches a floor, best first. Re-adding an id replaces its embedding; removing keeps the rows packed."""

    def __init__(self, dimensions: int):
        if int(dimensions) <= 0:
            raise ValueError(f"dimensions must be a positive number, not {dimensions!r}")
        self.dimensions = int(dimensions)
        self._vectors = np.zeros((0, self.dimensions), dtype=np.float16)
        self._ids = np.zeros(0, dtype=np.int64)
        self._count = 0
        self._rows: dict[int, int] = {}

    def __len__(self) -> int:
        return self._count

    def __contains__(self, file_id: object) -> bool:
        return file_id in self._rows

    @property
    def nbytes(self) -> int:
        """Bytes held for the vectors and the ids (the arrays' capacity, not only the rows in use)."""
        return int(self._vectors.nbytes + self._ids.nbytes)

    def add(self, file_id: int, embedding: np.ndarray) -> None:
        """Given a file id and its embedding (a unit vector of `dimensions`), index it, replacing any
        embedding the id had. Raise ValueError for a vector of another length or with non-finite values."""
        self.add_many(np.asarray([file_id], dtype=np.int64), self._checked(embedding, 1))

    def add_many(self, file_ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Given n file ids and their embeddings (n, dimensions), index them all (later rows win over earlier
        ones with the same id, and over what the index held). Raise ValueError for shapes that do not fit."""
        ids = np.asarray(file_ids, dtype=np.int64).reshape(-1)
        vectors = self._checked(embeddings, len(ids))
        for file_id, vector in zip(ids.tolist(), vectors, strict=True):
            row = self._rows.get(file_id)
            if row is None:
                row = self._append_row(file_id)
            self._vectors[row] = vector

    def remove(self, file_id: int) -> None:
        """Forget a file id (nothing happens for an id not indexed). The last row moves into its place, so the
        rows stay packed; the arrays shrink when less than a quarter is in use."""
        row = self._rows.pop(int(file_id), None)
        if row is None:
            return
        last = self._count - 1
        if row != last:
            moved = int(self._ids[last])
            self._vectors[row] = self._vectors[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._count = last
        if self._count < len(self._ids) // 4:
            self._resize(max(self._count * 2, 16))

    def query(
        self, embedding: np.ndarray, k: int = 16, min_cosine: float = 0.75, exclude: Collection[int] = ()
    ) -> list[tuple[int, float]]:
        """Given an embedding, return up to `k` (file id, cosine) pairs whose cosine is at least `min_cosine`,
        best first, leaving out the ids in `exclude`. Raise ValueError for a vector of another length."""
        query = self._checked(embedding, 1)[0].astype(np.float32)
        if k <= 0 or self._count == 0:
            return []
        excluded = {int(file_id) for file_id in exclude}
        found: list[tuple[int, float]] = []
        for start in range(0, self._count, _CHUNK):
            stop = min(start + _CHUNK, self._count)
            scores = self._vectors[start:stop].astype(np.float32) @ query
            for row in np.flatnonzero(scores >= min_cosine):
                file_id = int(self._ids[start + row])
                if file_id not in excluded:
                    found.append((file_id, float(scores[row])))
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:k]

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

    def _append_row(self, file_id: int) -> int:
        if self._count == len(self._ids):
            self._resize(max(16, self._count * 2))
        row = self._count
        self._ids[row] = file_id
        self._rows[file_id] = row
        self._count += 1
        return row

    def _resize(self, capacity: int) -> None:
        vectors = np.zeros((capacity, self.dimensions), dtype=np.float16)
        ids = np.zeros(capacity, dtype=np.int64)
        vectors[: self._count] = self._vectors[: self._count]
        ids[: self._count] = self._ids[: self._count]
        self._vectors, self._ids = vectors, ids
