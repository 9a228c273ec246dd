"""Labels for retraining the verifier, from what a person decides (plain functions, no HTTP: they run on the
daemon's writer thread with the web room's writer Index, or on a reader for `features_of_pair`).

- "not duplicates" marks: every pair among the files → `different`;
- an applied trash or move of a group member with a keeper → `duplicate` for the keeper–member pairs;
- a group confirmed as duplicates → `duplicate`, a group said "not even similar" → `different`, for the
  pairs of its leader with each other member.

Each label keeps the pair's verifier features computed now from the stored fingerprints (and the embedding
cosine when both files have one), so retraining needs no picture and survives the files' removal.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from comparimg import decisions
from comparimg.embedding import unpack_embedding
from comparimg.index import Index, PairLabel, journal
from comparimg.model import Decision, Fingerprint, NotFound
from comparimg.verdicts import best_orientation, pair_features

MAX_PAIRS = 500  # a mark on a very large set of files labels this many of its pairs, not all n²/2


def features_of_pair(index: Index, file_a: int, file_b: int) -> np.ndarray | None:
    """Given an index and two file ids, return the pair's verifier features (A = file_a) from the stored
    fingerprints, with the embedding cosine when both have an embedding and the pair is upright; None when
    either file has no fingerprint."""
    first, second = index.file_by_id(file_a), index.file_by_id(file_b)
    if first is None or second is None:
        return None
    a, b = first.fingerprint, second.fingerprint
    if a is None or b is None or not a.phash or not b.phash:
        return None
    orientation = best_orientation(a, b)
    # Stored embeddings are of the upright pictures: their cosine is the turned one only for an upright pair.
    cosine = embedding_cosine(a, b) if orientation == 0 else None
    return pair_features(a, b, cosine=cosine, orientation=orientation)


def embedding_cosine(a: Fingerprint, b: Fingerprint) -> float | None:
    """Given two fingerprints, return the cosine of their embeddings, None when either has none."""
    first, second = unpack_embedding(a.embedding), unpack_embedding(b.embedding)
    if not len(first) or len(first) != len(second):
        return None
    norms = float(np.linalg.norm(first) * np.linalg.norm(second))
    return float(np.clip(first @ second / norms, -1.0, 1.0)) if norms > 0 else None


def label_pairs(index: Index, pairs: Iterable[tuple[int, int]], label: str, source: str) -> int:
    """Given pairs of file ids, a label and what gave it, store the labels with the pairs' features (a pair
    whose files have no fingerprint is skipped); return how many were stored."""
    rows = []
    for first, second in dict.fromkeys(tuple(sorted(pair)) for pair in pairs if pair[0] != pair[1]):
        features = features_of_pair(index, first, second)
        if features is not None:
            rows.append(PairLabel(first, second, label, source, features))
    if rows:
        with index.transaction():
            index.add_pair_labels(rows, time.time())
    return len(rows)


def label_not_duplicates(index: Index, file_ids: list[int], source: str = "not_duplicates") -> int:
    """Given the files a person marked "not duplicates" (or a group "not even similar": `source`
    not_similar) of each other, label their pairs `different`."""
    pairs = itertools.islice(itertools.combinations(sorted(set(file_ids)), 2), MAX_PAIRS)
    return label_pairs(index, pairs, "different", source)


def label_group(index: Index, group_id: int, label: str, source: str) -> dict[str, Any]:
    """Given a group id, a label and its source, label the pairs of the group's leader with each other
    member; return {"group_id", "label", "labelled", "file_ids"}. Raise NotFound for an unknown group."""
    groups = index.groups_by_ids([group_id])
    if not groups:
        raise NotFound(f"no group {group_id}")
    group = groups[0].group
    ids = [member.file_id for member in group.members]
    labelled = label_pairs(index, ((group.leader, other) for other in ids), label, source)
    return {"group_id": group_id, "label": label, "labelled": labelled, "file_ids": ids}


def label_applied(index: Index, decision: Decision) -> int:
    """Given a trash or move decision that was just applied (its file not yet forgotten), label its file a
    `duplicate` of the keeper(s) of its group: the members a person chose to keep, else the group's
    suggested keeper when no trash or move is decided for it. Return how many pairs were labelled."""
    file_id = decision.file_id
    groups = index.groups_by_ids([decision.group_id]) if decision.group_id else []
    groups = groups or index.groups_of([file_id])
    keepers: set[int] = set()
    for stored in groups:
        members = [m for m in stored.group.members if m.file_id != file_id]
        decided = journal.decision_states_by_file(index.db, [m.file_id for m in members])
        chosen = decisions.chosen_keepers(decided)
        keepers |= chosen or decisions.suggested_keepers({m.file_id: m.suggested for m in members}, decided)
    return label_pairs(index, ((keeper, file_id) for keeper in keepers), "duplicate", "applied")


def label_bulk_item(index: Index, item: dict[str, Any]) -> int:
    """Given a bulk item just trashed or moved, label its file a `duplicate` of its group's keepers."""
    keepers = json.loads(item["keeper_ids"]) if item.get("keeper_ids") else []
    pairs = ((keeper, item["file_id"]) for keeper in keepers)
    return label_pairs(index, pairs, "duplicate", "applied")
