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
import io
import zipfile
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
SHIPPED_WEIGHT = 1.0
USER_WEIGHT = 1.0  # the user's labels weigh as much, in all, as the shipped training pairs
REGULARISATION = 1e-3
NEWTON_STEPS = 25
DUPLICATE = LABELS.index("duplicate")


@dataclass(frozen=True, slots=True)
class ShippedPairs:
    """The shipped pairs' features and labels (indices in LABELS), training and validation."""

    train_features: np.ndarray
    train_labels: np.ndarray
    train_out_of_fold_scores: (
        np.ndarray
    )  # raw scores of `staged(train_features)` from trees fitted without their photo
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
        data = read_checked(str(path), sha256)  # the bytes checked are the bytes read
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                pairs = cls(*(np.array(arrays[name]) for name in (
                    "train_features", "train_labels", "train_out_of_fold_scores", "validation_features",
                    "validation_labels", "validation_kinds")))  # fmt: skip
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ModelError(str(path), f"not a pairs file: {error}") from error
        for rows, labels in ((pairs.train_features, pairs.train_labels),
                             (pairs.validation_features, pairs.validation_labels)):  # fmt: skip
            if rows.ndim != 2 or rows.shape[1] != FEATURE_COUNT or len(rows) != len(labels):
                raise ModelError(
                    str(path), f"made for other features (shape {rows.shape}): retrain the shipped model"
                )
        if pairs.train_out_of_fold_scores.shape != (len(STAGES) * len(pairs.train_labels), len(LABELS)):
            raise ModelError(str(path), "its out-of-fold scores do not match its training pairs")
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
    head = fit_head(base, shipped, rows[fit], labels[fit])
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
    base: Verifier, shipped: ShippedPairs, user_rows: np.ndarray, user_labels: np.ndarray
) -> dict[str, Any]:
    """Given a model without head (the shipped trees), the shipped pairs and the user's labelled pairs,
    return the head (JSON-ready) minimising the weighted cross-entropy over the shipped training pairs and
    the user's pairs, each at every stage of evidence, plus REGULARISATION times the squared distance to
    "no change". The shipped pairs enter with their out-of-fold raw scores (the trees' scores on their own
    training pairs are too sure to anchor anything), the user's with the trees' scores. Deterministic:
    damped Newton steps on a convex problem."""
    stacked, origin = staged(shipped.train_features)
    shipped_labels = shipped.train_labels
    mean = stacked.mean(axis=0)
    scale = np.where(stacked.std(axis=0) > 1e-9, stacked.std(axis=0), 1.0)
    # The user's pairs at every stage too: the head must not learn from them alone what a feature that
    # was not computed means.
    user_stacked, user_origin = staged(user_rows)
    inputs = np.vstack([stacked, user_stacked])
    targets = np.concatenate([shipped_labels[origin], user_labels[user_origin]]).astype(np.int64)
    weights = np.concatenate([
        np.full(len(stacked), SHIPPED_WEIGHT / len(stacked)),
        np.full(len(user_stacked), USER_WEIGHT / max(1, len(user_stacked))),
    ])  # fmt: skip
    weights /= weights.sum()
    raw = np.vstack([shipped.train_out_of_fold_scores, base.raw_scores(user_stacked)])
    standard = (inputs - mean) / scale
    design = np.hstack([raw, standard, np.ones((len(inputs), 1))])  # (n, classes + features + 1)
    classes = len(LABELS)
    initial = np.hstack([np.eye(classes), np.zeros((classes, FEATURE_COUNT + 1))])
    theta = _newton(design, np.eye(classes)[targets], weights, initial)
    return {
        "weights_raw": theta[:, :classes].tolist(),
        "weights_features": theta[:, classes : classes + FEATURE_COUNT].tolist(),
        "bias": theta[:, -1].tolist(),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
    }


def _newton(design: np.ndarray, onehot: np.ndarray, weights: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Given the design matrix (n, d), the one-hot targets (n, classes), the row weights (summing to 1) and
    the initial parameters (classes, d), return the parameters minimising the weighted cross-entropy plus
    REGULARISATION * |theta - initial|^2 (Newton's method: a strictly convex problem of a few dozen
    parameters, solved to precision in a few steps, so the result does not depend on a step size)."""
    classes, width = initial.shape
    theta = initial.copy()
    for _ in range(NEWTON_STEPS):
        probabilities = softmax(design @ theta.T)
        gradient = ((probabilities - onehot) * weights[:, None]).T @ design + 2 * REGULARISATION * (
            theta - initial
        )
        # Hessian blocks (c, k): sum_i w_i (p_ic [c == k] - p_ic p_ik) x_i x_i^T
        coupling = probabilities[:, :, None] * (np.eye(classes)[None] - probabilities[:, None, :])
        hessian = np.einsum("i,ick,ia,ib->cakb", weights, coupling, design, design, optimize=True)
        hessian = hessian.reshape(classes * width, classes * width)
        hessian += 2 * REGULARISATION * np.eye(classes * width)
        step = np.linalg.solve(hessian, gradient.ravel()).reshape(classes, width)
        # Backtracking: far from the optimum a full step can overshoot (confident trees, flat softmax).
        current, size = _objective(theta, design, onehot, weights, initial), 1.0
        while size > 1e-6 and _objective(theta - size * step, design, onehot, weights, initial) > current:
            size /= 2
        theta = theta - size * step
        if size * np.abs(step).max() < 1e-9:
            break
    return theta


def _objective(theta, design, onehot, weights, initial) -> float:
    scores = design @ theta.T
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(np.sum(weights * np.sum(onehot * log_probabilities, axis=1)))
    return loss + REGULARISATION * float(np.sum((theta - initial) ** 2))
