"""The user's labelled pairs: what a person said of two files (duplicate, similar, different), with the
pair's verifier features as they were when the label was given, so retraining needs neither the pictures
nor the files (a trashed copy keeps its label). Migration 6 of the index."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sqlite_utils import Database

LABEL_TABLES = (
    """CREATE TABLE pair_labels (
        file_a INTEGER NOT NULL,
        file_b INTEGER NOT NULL,
        label TEXT NOT NULL CHECK (label IN ('duplicate', 'similar', 'different')),
        source TEXT NOT NULL,
        features BLOB NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (file_a, file_b),
        CHECK (file_a < file_b)
    ) WITHOUT ROWID""",
)


@dataclass(frozen=True, slots=True)
class PairLabel:
    """One labelled pair: the files (file_a < file_b), the label, what gave it (`not_duplicates`,
    `applied`, `confirmed`, `not_similar`) and the pair's feature row (float64, A = file_a)."""

    file_a: int
    file_b: int
    label: str
    source: str
    features: np.ndarray


class LabelRows:
    """Reads and writes of `pair_labels` (a part of `Index`)."""

    db: Database

    def add_pair_labels(self, labels: Iterable[PairLabel], now: float) -> int:
        """Given labelled pairs, store them, a pair's newer label replacing its older one; return how many."""
        rows = [
            (label.file_a, label.file_b, label.label, label.source, _blob(label.features), now)
            for label in labels
        ]
        for file_a, file_b, *_ in rows:
            if file_a >= file_b:
                raise ValueError(f"a labelled pair is stored as file_a < file_b, got ({file_a}, {file_b})")
        self.db.conn.executemany(
            "INSERT INTO pair_labels (file_a, file_b, label, source, features, created) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (file_a, file_b) DO UPDATE SET "
            "label = excluded.label, source = excluded.source, features = excluded.features, "
            "created = excluded.created",
            rows,
        )
        return len(rows)

    def pair_labels(self, feature_count: int) -> list[PairLabel]:
        """Given the length of a feature row, return every labelled pair whose row has it (a row made
        for another feature layout is left out), oldest first."""
        found = []
        for file_a, file_b, label, source, blob in self.db.execute(
            "SELECT file_a, file_b, label, source, features FROM pair_labels ORDER BY created, file_a, file_b"
        ):
            features = np.frombuffer(blob, dtype="<f8").astype(np.float64)
            if len(features) == feature_count:
                found.append(PairLabel(file_a, file_b, label, source, features))
        return found

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Return the number of labelled pairs by label and by source."""
        counts: dict[str, dict[str, int]] = {"by_label": {}, "by_source": {}}
        for column, key in (("label", "by_label"), ("source", "by_source")):
            for value, count in self.db.execute(
                f"SELECT {column}, count(*) FROM pair_labels GROUP BY {column} ORDER BY {column}"
            ):
                counts[key][value] = count
        return counts


def _blob(features: np.ndarray) -> bytes:
    row = np.asarray(features, dtype="<f8")
    if row.ndim != 1 or not np.isfinite(row).all():
        raise ValueError("a labelled pair's features are one row of finite numbers")
    return row.tobytes()
