"""The learned verifier at run time: a model kept as JSON data (never a pickle), evaluated with numpy.

A model file is a JSON object:

- `format` "comparimg-verifier", `version` 1, `labels` (class order), `features` (must equal
  features.FEATURE_NAMES: a model for another layout is refused);
- `ensemble`: a multiclass gradient-boosted tree ensemble as scikit-learn's GradientBoostingClassifier makes
  it: `init` (one raw score per class), `learning_rate`, and `trees`, one list of nodes per (stage, class) in
  stage order (`classes` trees per stage). A tree is {"feature", "threshold", "left", "right", "value"},
  parallel lists over its nodes; a leaf has left == -1. A row goes left when its value, as float32, is
  <= the threshold (scikit-learn's rule, with its float32 inputs);
- optionally `head` (a retrained model, see retraining.py): two logistic decisions, taken in turn, over the
  ensemble's margins and the standardised features s = (x - mean) / scale. `duplicate`: P(duplicate) =
  sigmoid(w0 * (z_dup - max(z_sim, z_diff)) + w . s + b); `similar`: P(similar | not duplicate) =
  sigmoid(w0 * (z_sim - z_diff) + w . s + b). Each decision is [w0, w..., b]. The label is duplicate when
  the first is above 1/2, else similar when the second is; with w0 = 1 and the rest 0 that is exactly the
  ensemble's own choice;
- `validation`, `training`: figures and provenance, shown to people, not used to judge.

The shipped model's file `verifier_model.json` is checked against the sha256 in `verifier.json` (its
manifest) at every load, as the embedder's is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comparimg.model import ModelError
from comparimg.shipped_files import shipped_model_file
from comparimg.verdicts.features import FEATURE_COUNT, FEATURE_NAMES

SHIPPED_MANIFEST = Path(__file__).with_name("verifier.json")
SHIPPED_MODEL = Path(__file__).with_name("verifier_model.json")
SHIPPED_PAIRS = Path(__file__).with_name("verifier_pairs.npz")
LABELS: tuple[str, ...] = ("duplicate", "similar", "different")
FORMAT = "comparimg-verifier"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the learned verifier says of a pair: `label` (one of LABELS) and `confidence`, the model's
    probability of that label (at least 1/3 for the shipped model, whose label is the most probable one),
    and the probability of each label. Not the pixel check's `model.Verdict`."""

    label: str
    confidence: float
    probabilities: tuple[float, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class _Trees:
    """All trees of an ensemble packed into flat node arrays; tree t starts at node `roots[t]`."""

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    depth: int


class Verifier:
    """A loaded verifier model: `judge(features)` for one pair, `probabilities(rows)` for many."""

    def __init__(self, document: dict[str, Any], path: str = "<memory>"):
        """Given a model document (the parsed JSON, see the module docstring) and where it came from,
        return the ready model. Raise ModelError naming `path` when the document is not a usable model."""
        self.path = path
        self.document = document
        try:
            self._check_header(document)
            ensemble = document["ensemble"]
            self.classes = len(self.labels)
            self.init = _vector(ensemble["init"], self.classes, "ensemble.init")
            self.learning_rate = float(ensemble["learning_rate"])
            self.trees = _pack(ensemble["trees"], self.classes)
            self.head = _head(document.get("head"), self.classes)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ModelError(path, f"not a verifier model: {type(error).__name__}: {error}") from error

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.document["labels"])

    @property
    def validation(self) -> dict[str, Any]:
        """Return the validation figures the model was shipped or adopted with."""
        return dict(self.document.get("validation", {}))

    @classmethod
    def load(cls, path: str | Path | None = None, sha256: str | None = None) -> Verifier:
        """Given nothing, return the shipped verifier, its file checked against the manifest's sha256;
        given the path of a model file (a retrained one), return it, checked against `sha256` when given.
        Raise ModelError naming the file when it is missing, unreadable, not the expected checksum, not
        JSON or not a verifier model for this version's features."""
        if path is None:
            manifest = shipped_manifest()
            path, sha256 = shipped_model_file(SHIPPED_MODEL), manifest["model_sha256"]
        data = read_checked(str(path), sha256)
        try:
            document = json.loads(data)
        except ValueError as error:
            raise ModelError(str(path), f"not JSON: {error}") from error
        if not isinstance(document, dict):
            raise ModelError(str(path), "not a verifier model: the JSON is not an object")
        return cls(document, str(path))

    def _check_header(self, document: dict[str, Any]) -> None:
        if document.get("format") != FORMAT or document.get("version") != VERSION:
            raise ValueError(f"format {document.get('format')!r} version {document.get('version')!r}")
        if tuple(document["labels"]) != LABELS:
            raise ValueError(f"labels {document['labels']!r}, expected {list(LABELS)}")
        if tuple(document["features"]) != FEATURE_NAMES:
            raise ValueError("made for other features than this version computes (retrain it)")

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        """Given feature rows (n, FEATURE_COUNT), return the raw class scores (n, classes) before the
        softmax: the ensemble's (as scikit-learn's decision_function), then the head's when there is one."""
        rows = _rows(rows)
        scores = self.init[None, :] + self.learning_rate * _tree_sums(self.trees, rows, self.classes)
        if self.head is None:
            return scores
        duplicate, similar = head_logits(self.head, scores, rows)
        # log-probabilities of duplicate, similar, different (a softmax of them gives them back); the label
        # is chosen by `predict`, decision by decision
        not_duplicate = -np.logaddexp(0.0, duplicate)
        return np.stack(
            [
                -np.logaddexp(0.0, -duplicate),
                not_duplicate - np.logaddexp(0.0, -similar),
                not_duplicate - np.logaddexp(0.0, similar),
            ],
            axis=1,
        )

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Given feature rows (n, FEATURE_COUNT), return each row's probability of each label (n, 3)."""
        return softmax(self.raw_scores(rows))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Given feature rows, return the index in LABELS of each row's label: the most probable one, or
        with a head, duplicate when its first decision says so, else similar or different by the second."""
        if self.head is None:
            return np.argmax(self.raw_scores(rows), axis=1)
        rows = _rows(rows)
        scores = self.init[None, :] + self.learning_rate * _tree_sums(self.trees, rows, self.classes)
        duplicate, similar = head_logits(self.head, scores, rows)
        return np.where(duplicate > 0, 0, np.where(similar > 0, 1, 2))

    def judge(self, features: np.ndarray) -> Verdict:
        """Given one pair's feature vector (features.pair_features), return its Verdict. Raise ValueError
        for a vector of another length or with values that are not finite."""
        row = np.asarray(features, dtype=np.float64)[None, :]
        (probabilities,) = self.probabilities(row)
        best = int(self.predict(row)[0])
        rounded = tuple(round(float(p), 4) for p in probabilities)
        return Verdict(self.labels[best], round(float(probabilities[best]), 4), rounded)

    def to_json(self) -> str:
        """Return the model document as JSON text (what `load` reads back)."""
        return json.dumps(self.document, separators=(",", ":"), sort_keys=True)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Given raw scores (n, classes), return the probabilities (rows sum to 1)."""
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def shipped_manifest() -> dict[str, Any]:
    """Return the shipped verifier's manifest (checksums, validation figures, provenance). Raise
    ModelError naming the manifest when it cannot be read."""
    path = shipped_model_file(SHIPPED_MANIFEST)
    try:
        manifest = json.loads(path.read_text())
        manifest["model_sha256"], manifest["pairs_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(str(path), f"the shipped verifier's manifest cannot be read: {error}") from error
    return manifest


def read_checked(path: str, sha256: str | None) -> bytes:
    """Given a path and an optional sha256, return the file's bytes. Raise ModelError naming the file when
    it is missing, unreadable or its checksum differs."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as error:
        raise ModelError(path, "missing") from error
    except OSError as error:
        raise ModelError(path, f"cannot be read: {error.strerror or error}") from error
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise ModelError(path, f"sha256 {digest} is not the expected {sha256}: damaged or replaced")
    return data


def _rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != FEATURE_COUNT:
        raise ValueError(f"expected feature rows (n, {FEATURE_COUNT}), got shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("feature values must be finite")
    return rows


def _vector(values: Any, length: int, name: str) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float64)
    if vector.shape != (length,) or not np.isfinite(vector).all():
        raise ValueError(f"{name} must be {length} finite numbers")
    return vector


def _pack(trees: list[dict[str, list]], classes: int) -> _Trees:
    if not trees or len(trees) % classes:
        raise ValueError(f"{len(trees)} trees is not a whole number of stages of {classes}")
    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("feature", "threshold", "left", "right", "value")
    }
    roots, start, depth = [], 0, 0
    for tree in trees:
        nodes = len(tree["feature"])
        left = np.asarray(tree["left"], dtype=np.int64)
        right = np.asarray(tree["right"], dtype=np.int64)
        feature = np.asarray(tree["feature"], dtype=np.int64)
        if nodes == 0 or any(len(tree[key]) != nodes for key in columns):
            raise ValueError("a tree's node lists differ in length")
        inner = left >= 0
        if (
            np.any(inner & ((left >= nodes) | (right < 0) | (right >= nodes)))
            or np.any(inner & ((feature < 0) | (feature >= FEATURE_COUNT)))
            or np.any(left[inner] <= np.flatnonzero(inner))  # children come after their parent: no loops
            or np.any(right[inner] <= np.flatnonzero(inner))
        ):
            raise ValueError("a tree has a node that points outside it, backwards or at no feature")
        roots.append(start)
        columns["feature"].append(np.where(inner, feature, 0))
        columns["threshold"].append(np.asarray(tree["threshold"], dtype=np.float64))
        columns["left"].append(np.where(inner, left + start, -1))
        columns["right"].append(np.where(inner, right + start, -1))
        columns["value"].append(np.asarray(tree["value"], dtype=np.float64))
        depth = max(depth, _tree_depth(left, right))
        start += nodes
    packed = {key: np.concatenate(parts) for key, parts in columns.items()}
    if not np.isfinite(packed["threshold"]).all() or not np.isfinite(packed["value"]).all():
        raise ValueError("a tree holds a value that is not finite")
    return _Trees(np.asarray(roots, dtype=np.int64), depth=depth, **packed)


def _tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    depth = np.zeros(len(left), dtype=np.int64)
    for node in range(len(left)):  # children come after parents (checked), so one pass gives depths
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return int(depth.max())


def _tree_sums(trees: _Trees, rows: np.ndarray, classes: int) -> np.ndarray:
    """Given packed trees and feature rows, return per row and class the sum of its trees' leaf values."""
    values32 = rows.astype(np.float32).astype(np.float64)  # scikit-learn compares float32 inputs
    nodes = np.broadcast_to(trees.roots, (len(rows), len(trees.roots))).copy()
    row_index = np.arange(len(rows))[:, None]
    for _ in range(trees.depth):
        inner = trees.left[nodes] >= 0
        goes_left = values32[row_index, trees.feature[nodes]] <= trees.threshold[nodes]
        nodes = np.where(inner, np.where(goes_left, trees.left[nodes], trees.right[nodes]), nodes)
    leaves = trees.value[nodes]  # (rows, trees): tree t belongs to class t % classes
    return leaves.reshape(len(rows), -1, classes).sum(axis=1)


def head_inputs(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given the ensemble's raw scores (n, 3), return its margins (duplicate over the better of the rest,
    similar over different): what the head's two decisions start from, each positive exactly where the
    ensemble would choose that way."""
    duplicate = scores[:, 0] - np.maximum(scores[:, 1], scores[:, 2])
    return duplicate, scores[:, 1] - scores[:, 2]


def head_logits(head: dict[str, np.ndarray], scores: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Given a parsed head, the ensemble's raw scores and the feature rows, return the log-odds of the two
    decisions (duplicate vs not; similar vs different)."""
    standard = (rows - head["mean"]) / head["scale"]
    logits = []
    for odds, weights in zip(head_inputs(scores), (head["duplicate"], head["similar"]), strict=True):
        logits.append(weights[0] * odds + standard @ weights[1:-1] + weights[-1])
    return tuple(logits)


def _head(head: dict[str, Any] | None, classes: int) -> dict[str, np.ndarray] | None:
    if head is None:
        return None
    if classes != 3:
        raise ValueError("a head needs the three labels")
    parsed = {
        "duplicate": _vector(head["duplicate"], FEATURE_COUNT + 2, "head.duplicate"),
        "similar": _vector(head["similar"], FEATURE_COUNT + 2, "head.similar"),
        "mean": _vector(head["mean"], FEATURE_COUNT, "head.mean"),
        "scale": _vector(head["scale"], FEATURE_COUNT, "head.scale"),
    }
    if np.any(parsed["scale"] <= 0):
        raise ValueError("head.scale must be positive")
    return parsed
