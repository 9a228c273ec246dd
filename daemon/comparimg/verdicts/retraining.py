"""Retraining from the user's own decisions (pure numpy: the daemon has no scikit-learn).

The shipped tree ensemble stays as it is; a retrained model adds a small multinomial logistic *head* over
its raw class scores and the standardised features (see verifier.py), fitted on the shipped training pairs
(`verifier_pairs.npz`, features only: no image is needed) and the user's labelled pairs, regularised
towards "no change" (the head starts as the identity). So a few dozen labels can move the decision where
the user's taste differs, and nowhere else much.

Adoption rule (`retrain` applies it): the candidate is adopted only if it does at least as well as the
current model on the shipped validation pairs (`duplicate_score`: balanced accuracy of the decision that
matters, duplicate or not, over the four stages of evidence) and strictly better on a held-out share of the
user's labels (agreement with their label). "Similar" and "different" both mean "not a duplicate" to the
first figure, so a user who calls bursts "different" is not held back by a shipped label "similar".
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comparimg.model import ModelError
from comparimg.verdicts.features import EMBEDDING_FEATURES, FEATURE_COUNT, PIXEL_FEATURES, mask_features
from comparimg.verdicts.verifier import (
    LABELS,
    SHIPPED_PAIRS,
    Verifier,
    read_checked,
    shipped_manifest,
    softmax,
)

STAGES = ((), PIXEL_FEATURES, EMBEDDING_FEATURES, (*EMBEDDING_FEATURES, *PIXEL_FEATURES))
MIN_LABELS = 10
HOLDOUT_SHARE = 0.3
USER_WEIGHT = 1.0  # the user's labels weigh as much, in all, as the shipped training pairs
REGULARISATION = 1e-3
STEPS = 400
STEP_SIZE = 0.05
DUPLICATE = LABELS.index("duplicate")


@dataclass(frozen=True, slots=True)
class ShippedPairs:
    """The shipped pairs' features and labels (indices in LABELS), training and validation."""

    train_features: np.ndarray
    train_labels: np.ndarray
    validation_features: np.ndarray
    validation_labels: np.ndarray
    validation_kinds: np.ndarray

    @classmethod
    def load(cls, path: str | Path | None = None, sha256: str | None = None) -> ShippedPairs:
        """Given nothing, return the shipped pairs, checked against the manifest's sha256; given a path
        (and optionally its sha256), those. Raise ModelError naming the file when it is missing, damaged
        or not a pairs file for these features."""
        if path is None:
            path, sha256 = SHIPPED_PAIRS, shipped_manifest()["pairs_sha256"]
        read_checked(str(path), sha256)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                pairs = cls(*(np.array(arrays[name]) for name in (
                    "train_features", "train_labels", "validation_features", "validation_labels",
                    "validation_kinds")))  # fmt: skip
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(str(path), f"not a pairs file: {error}") from error
        for rows, labels in ((pairs.train_features, pairs.train_labels),
                             (pairs.validation_features, pairs.validation_labels)):  # fmt: skip
            if rows.ndim != 2 or rows.shape[1] != FEATURE_COUNT or len(rows) != len(labels):
                raise ModelError(
                    str(path), f"made for other features (shape {rows.shape}): retrain the shipped model"
                )
        return pairs


@dataclass(frozen=True, slots=True)
class Retraining:
    """The outcome of `retrain`: the candidate model, whether the adoption rule accepts it and why, and
    the figures it was judged by."""

    candidate: Verifier
    adopted: bool
    reason: str
    figures: dict[str, Any]


def staged(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given full feature rows, return (the rows as each stage of evidence sees them, stacked; the index of
    the row each came from)."""
    stacked = [mask_features(rows, names) for names in STAGES]
    return np.vstack(stacked), np.tile(np.arange(len(rows)), len(STAGES))


def duplicate_score(model: Verifier, rows: np.ndarray, labels: np.ndarray) -> float:
    """Given a model and labelled pairs, return the balanced accuracy of its duplicate-or-not decision over
    every stage of evidence (mean of the recall of duplicates and of non-duplicates)."""
    stacked, origin = staged(rows)
    called = model.predict(stacked) == DUPLICATE
    truth = labels[origin] == DUPLICATE
    shares = [float(np.mean(called[truth]))] if truth.any() else []
    shares += [float(np.mean(~called[~truth]))] if (~truth).any() else []
    return float(np.mean(shares))


def agreement(model: Verifier, rows: np.ndarray, labels: np.ndarray) -> float:
    """Given a model and labelled pairs, return the share of pairs where it gives their label."""
    return float(np.mean(model.predict(rows) == labels)) if len(labels) else 0.0


def label_indices(labels: Sequence[str]) -> np.ndarray:
    """Given label names, return their indices in LABELS. Raise ValueError naming an unknown label."""
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown labels {unknown}: expected {list(LABELS)}")
    return np.array([LABELS.index(label) for label in labels], dtype=np.int64)


def retrain(
    shipped: ShippedPairs,
    user_features: np.ndarray,
    user_labels: Sequence[str],
    current: Verifier,
    holdout_share: float = HOLDOUT_SHARE,
    seed: int = 0,
) -> Retraining:
    """Given the shipped pairs, the user's labelled pairs (feature rows, label names), the model in use and
    the share of the user's labels held out, return the Retraining: a candidate with a head fitted on the
    shipped training pairs and the rest of the user's labels (its tree ensemble is `current`'s), and whether
    the adoption rule accepts it. Raise ValueError for rows of the wrong shape, unknown labels or a
    holdout share outside (0, 1)."""
    rows = np.asarray(user_features, dtype=np.float64).reshape(-1, FEATURE_COUNT)
    labels = label_indices(user_labels)
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} feature rows for {len(labels)} labels")
    if not 0 < holdout_share < 1:
        raise ValueError(f"the held-out share lies in (0, 1), got {holdout_share}")
    order = np.random.default_rng(seed).permutation(len(labels))
    held = order[: round(holdout_share * len(labels))]
    fit = order[len(held) :]
    base = _without_head(current)
    head = fit_head(base, shipped.train_features, shipped.train_labels, rows[fit], labels[fit])
    candidate = Verifier(base.document | {"head": head}, "<retrained>")
    figures = {
        "user_labels": len(labels),
        "user_labels_by_class": {name: int(np.sum(labels == k)) for k, name in enumerate(LABELS)},
        "user_held_out": len(held),
        "shipped_validation_pairs": len(shipped.validation_labels),
    }
    for name, model in (("current", current), ("candidate", candidate)):
        figures[name] = {
            "shipped_validation_duplicate_score": round(
                duplicate_score(model, shipped.validation_features, shipped.validation_labels), 4
            ),
            "shipped_validation_agreement": round(
                agreement(model, shipped.validation_features, shipped.validation_labels), 4
            ),
            "user_held_out_agreement": round(agreement(model, rows[held], labels[held]), 4),
        }
    adopted, reason = _adoption(figures, len(labels), len(held))
    candidate.document["validation"] = candidate.document.get("validation", {}) | {"retraining": figures}
    return Retraining(candidate, adopted, reason, figures)


def _adoption(figures: dict[str, Any], count: int, held: int) -> tuple[bool, str]:
    if count < MIN_LABELS or held < 3:
        return False, f"too few labels: {count} (at least {MIN_LABELS}, 3 of them held out)"
    current, candidate = figures["current"], figures["candidate"]
    shipped_key, user_key = "shipped_validation_duplicate_score", "user_held_out_agreement"
    if candidate[shipped_key] < current[shipped_key]:
        return (
            False,
            f"worse on the shipped validation pairs ({candidate[shipped_key]} < {current[shipped_key]})",
        )
    if candidate[user_key] <= current[user_key]:
        return False, f"not better on the held-out labels ({candidate[user_key]} <= {current[user_key]})"
    return True, (
        f"held-out labels {current[user_key]} -> {candidate[user_key]}, "
        f"shipped validation {current[shipped_key]} -> {candidate[shipped_key]}"
    )


def _without_head(model: Verifier) -> Verifier:
    document = copy.deepcopy({key: value for key, value in model.document.items() if key != "head"})
    return Verifier(document, model.path)


def fit_head(
    base: Verifier,
    shipped_rows: np.ndarray,
    shipped_labels: np.ndarray,
    user_rows: np.ndarray,
    user_labels: np.ndarray,
) -> dict[str, Any]:
    """Given a model without head, the shipped training pairs and the user's labelled pairs, return the
    head (JSON-ready) minimising the weighted cross-entropy over every stage of the shipped pairs and the
    user's pairs as given, plus REGULARISATION times the squared distance to "no change". Deterministic:
    full-batch Adam steps."""
    stacked, origin = staged(shipped_rows)
    mean = stacked.mean(axis=0)
    scale = np.where(stacked.std(axis=0) > 1e-9, stacked.std(axis=0), 1.0)
    inputs = np.vstack([stacked, user_rows])
    targets = np.concatenate([shipped_labels[origin], user_labels]).astype(np.int64)
    weights = np.concatenate([
        np.full(len(stacked), 1.0 / len(stacked)),
        np.full(len(user_rows), USER_WEIGHT / max(1, len(user_rows))),
    ])  # fmt: skip
    weights /= weights.sum()
    raw = base.raw_scores(inputs)
    standard = (inputs - mean) / scale
    design = np.hstack([raw, standard, np.ones((len(inputs), 1))])  # (n, classes + features + 1)
    classes = len(LABELS)
    initial = np.hstack([np.eye(classes), np.zeros((classes, FEATURE_COUNT + 1))])
    theta = initial.copy()
    onehot = np.eye(classes)[targets]
    moment, second = np.zeros_like(theta), np.zeros_like(theta)
    for step in range(1, STEPS + 1):
        probabilities = softmax(design @ theta.T)
        gradient = ((probabilities - onehot) * weights[:, None]).T @ design
        gradient += 2 * REGULARISATION * (theta - initial)
        moment = 0.9 * moment + 0.1 * gradient
        second = 0.999 * second + 0.001 * gradient * gradient
        corrected = (moment / (1 - 0.9**step)) / (np.sqrt(second / (1 - 0.999**step)) + 1e-8)
        theta -= STEP_SIZE * corrected
    return {
        "weights_raw": theta[:, :classes].tolist(),
        "weights_features": theta[:, classes : classes + FEATURE_COUNT].tolist(),
        "bias": theta[:, -1].tolist(),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
    }
