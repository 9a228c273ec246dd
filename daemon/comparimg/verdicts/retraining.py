"""Retraining from the user's own decisions (pure numpy: the daemon has no scikit-learn).

The shipped tree ensemble stays as it is; a retrained model adds a small *head* (see verifier.py): two
logistic decisions, duplicate or not, then similar or different, each over the ensemble's log-odds and the
standardised features, fitted on the shipped training pairs (`verifier_pairs.npz`, features and
out-of-fold scores only: no image is needed) and the user's labelled pairs, regularised towards "no change"
(the head starts as the ensemble itself). So a few dozen labels can move the decision where the user's
taste differs, and nowhere else much.

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
from comparimg.shipped_files import shipped_model_file
from comparimg.verdicts.features import EMBEDDING_FEATURES, FEATURE_COUNT, PIXEL_FEATURES, mask_features
from comparimg.verdicts.verifier import (
    LABELS,
    SHIPPED_PAIRS,
    Verifier,
    head_inputs,
    read_checked,
    shipped_manifest,
)

STAGES = ((), PIXEL_FEATURES, EMBEDDING_FEATURES, (*EMBEDDING_FEATURES, *PIXEL_FEATURES))
MIN_LABELS = 10
HOLDOUT_SHARE = 0.3
SHIPPED_WEIGHT = 1.0
USER_WEIGHT = 1.0  # the user's labels weigh as much, in all, as the shipped training pairs
REGULARISATION = 1e-2
NEWTON_STEPS = 25
DUPLICATE = LABELS.index("duplicate")
SIMILAR = LABELS.index("similar")


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
            path, sha256 = shipped_model_file(SHIPPED_PAIRS), shipped_manifest()["pairs_sha256"]
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
    the adoption rule accepts it. Two candidates are judged by the rule, the full head first, then the
    head with the duplicate decision left as it was; the first accepted one is returned (else the full
    one). Raise ValueError for rows of the wrong shape, unknown labels or a
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
    unchanged = [1.0] + [0.0] * (FEATURE_COUNT + 1)
    # Each decision must earn its place: the full head first, then the one that changes only how the
    # pairs that are not duplicates are split (a user's taste about bursts need not move any duplicate).
    candidates = {
        "both decisions": Verifier(base.document | {"head": head}, "<retrained>"),
        "similar or different only": Verifier(
            base.document | {"head": head | {"duplicate": unchanged}}, "<retrained>"
        ),
    }
    figures: dict[str, Any] = {
        "user_labels": len(labels),
        "user_labels_by_class": {name: int(np.sum(labels == k)) for k, name in enumerate(LABELS)},
        "user_held_out": len(held),
        "shipped_validation_pairs": len(shipped.validation_labels),
        "current": _figures(current, shipped, rows[held], labels[held]),
        "candidates": {
            name: _figures(model, shipped, rows[held], labels[held]) for name, model in candidates.items()
        },
    }
    outcomes = {
        name: _adoption(figures["current"], figures["candidates"][name], len(labels), len(held))
        for name in candidates
    }
    chosen = next((name for name, (adopted, _) in outcomes.items() if adopted), "both decisions")
    adopted, reason = outcomes[chosen]
    candidate = candidates[chosen]
    figures["candidate"] = figures["candidates"][chosen] | {"decisions": chosen}
    candidate.document["validation"] = candidate.document.get("validation", {}) | {"retraining": figures}
    return Retraining(candidate, adopted, reason, figures)


def _figures(model: Verifier, shipped: ShippedPairs, held_rows: np.ndarray, held_labels: np.ndarray) -> dict:
    validation = (shipped.validation_features, shipped.validation_labels)
    return {
        "shipped_validation_duplicate_score": round(duplicate_score(model, *validation), 4),
        "shipped_validation_agreement": round(agreement(model, *validation), 4),
        "user_held_out_agreement": round(agreement(model, held_rows, held_labels), 4),
    }


def _adoption(current: dict, candidate: dict, count: int, held: int) -> tuple[bool, str]:
    if count < MIN_LABELS or held < 3:
        return False, f"too few labels: {count} (at least {MIN_LABELS}, 3 of them held out)"
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
    return the head (JSON-ready, see verifier.py): its two logistic decisions, duplicate or not, then
    similar or different among the rest, each minimising the weighted cross-entropy over the shipped
    training pairs and the user's pairs (each at every stage of evidence) plus REGULARISATION times the
    squared distance to "no change". Two decisions, not one softmax: a user who only moves pairs between
    similar and different leaves the duplicate decision as it was. The shipped pairs enter with their
    out-of-fold scores (the trees are too sure of their own training pairs), the user's with the trees'
    scores. Deterministic: damped Newton steps on convex problems."""
    stacked, origin = staged(shipped.train_features)
    mean = stacked.mean(axis=0)
    scale = np.where(stacked.std(axis=0) > 1e-9, stacked.std(axis=0), 1.0)
    # The user's pairs at every stage too: the head must not learn from them alone what a feature that
    # was not computed means.
    user_stacked, user_origin = staged(user_rows)
    inputs = np.vstack([stacked, user_stacked])
    targets = np.concatenate([shipped.train_labels[origin], user_labels[user_origin]]).astype(np.int64)
    from_user = np.arange(len(inputs)) >= len(stacked)
    odds = head_inputs(np.vstack([shipped.train_out_of_fold_scores, base.raw_scores(user_stacked)]))
    standard = (inputs - mean) / scale
    head: dict[str, Any] = {"mean": mean.tolist(), "scale": scale.tolist()}
    for name, chosen, positive, start in (
        ("duplicate", np.ones(len(inputs), dtype=bool), targets == DUPLICATE, odds[0]),
        ("similar", targets != DUPLICATE, targets == SIMILAR, odds[1]),
    ):
        design = np.hstack([start[:, None], standard, np.ones((len(inputs), 1))])[chosen]
        initial = np.zeros(design.shape[1])
        initial[0] = 1.0
        weights = _weights(from_user[chosen])
        head[name] = _newton(design, positive[chosen].astype(np.float64), weights, initial).tolist()
    return head


def _weights(from_user: np.ndarray) -> np.ndarray:
    # The shipped rows share SHIPPED_WEIGHT, the user's USER_WEIGHT, whatever their numbers.
    users = max(1, int(from_user.sum()))
    shipped = max(1, int((~from_user).sum()))
    weights = np.where(from_user, USER_WEIGHT / users, SHIPPED_WEIGHT / shipped)
    return weights / weights.sum()


def _newton(design: np.ndarray, positive: np.ndarray, weights: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """Given the design matrix (n, d), the 0/1 targets, the row weights (summing to 1) and the initial
    parameters (d,), return the logistic regression parameters minimising the weighted cross-entropy plus
    REGULARISATION * |theta - initial|^2 (damped Newton: a strictly convex problem of a few dozen
    parameters, solved to precision, so the result depends on no step size)."""
    theta = initial.copy()
    for _ in range(NEWTON_STEPS):
        probability = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (weights * (probability - positive)) + 2 * REGULARISATION * (theta - initial)
        hessian = (design * (weights * probability * (1 - probability))[:, None]).T @ design
        hessian += 2 * REGULARISATION * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        # Backtracking: far from the optimum a full step can overshoot (confident trees, flat sigmoid).
        current, size = _objective(theta, design, positive, weights, initial), 1.0
        while size > 1e-6 and _objective(theta - size * step, design, positive, weights, initial) > current:
            size /= 2
        theta = theta - size * step
        if size * np.abs(step).max() < 1e-9:
            break
    return theta


def _objective(theta, design, positive, weights, initial) -> float:
    logits = design @ theta
    # -log sigmoid(x) = logaddexp(0, -x); -log(1 - sigmoid(x)) = logaddexp(0, x)
    losses = np.where(positive > 0.5, np.logaddexp(0.0, -logits), np.logaddexp(0.0, logits))
    return float(np.sum(weights * losses)) + REGULARISATION * float(np.sum((theta - initial) ** 2))
