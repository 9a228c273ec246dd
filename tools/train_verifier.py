#!/usr/bin/env python3
"""Train the learned verifier shipped in daemon/comparimg/verdicts/ (offline; needs scikit-learn).

Usage:  python tools/train_verifier.py [--cache DIR] [--processes N] [--seed S]

1. Photos: those scikit-image, scikit-learn and matplotlib ship, and the photographs among Pillow's
   `Tests/images` (its source archive is fetched once with `pip download --no-binary :all: --no-deps
   pillow` into --cache; nothing is fetched at run time). The photos tools/verifier_pairs.TEST_PHOTOS
   name are never used here: tests judge pairs made from them.
2. Pairs (tools/verifier_pairs.py): each photo's claimed and realistic edits (duplicate), other shots of
   its scene (similar) and different pictures of its split (different); their features computed by the
   real hashing room, pixel check and shipped embedder.
3. Split by source photo: VALIDATION_SHARE of the photos are validation only.
4. A scikit-learn GradientBoostingClassifier on the training rows, each pair four times: with every
   feature, without the pixel check, without the embedding, with neither (how the daemon judges a pair
   before it runs the costlier checks), classes weighted equally.
5. Written to daemon/comparimg/verdicts/: verifier_model.json (the trees as JSON data), verifier_pairs.npz
   (every pair's features, label, kind, split: retraining needs no images) and verifier.json (sha256 of
   both, validation figures, provenance).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import verifier_pairs  # noqa: E402

from comparimg.verdicts import retraining  # noqa: E402
from comparimg.verdicts import verifier as runtime  # noqa: E402
from comparimg.verdicts.features import EMBEDDING_FEATURES, FEATURE_NAMES, PIXEL_FEATURES, mask_features  # noqa: E402

ROOM = TOOLS.parent / "daemon" / "comparimg" / "verdicts"
VALIDATION_SHARE = 0.2
STAGES = {  # what the daemon may know of a pair when it judges it (retraining.STAGES, named)
    "all": (),
    "hash+embedding": PIXEL_FEATURES,
    "hash+pixels": EMBEDDING_FEATURES,
    "hash": (*EMBEDDING_FEATURES, *PIXEL_FEATURES),
}
assert tuple(STAGES.values()) == retraining.STAGES
BOOSTING = {"n_estimators": 120, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8, "random_state": 0}


def pillow_test_images(cache: Path) -> Path:
    """Given a cache folder, return the folder of Pillow's Tests/images, fetching Pillow's source archive
    with pip the first time."""
    archives = sorted(cache.glob("pillow-*.tar.gz"))
    if not archives:
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "pillow",
                   "-d", str(cache)]  # fmt: skip
        subprocess.run(command, check=True)
        archives = sorted(cache.glob("pillow-*.tar.gz"))
    archive = archives[-1]
    root = cache / archive.name.removesuffix(".tar.gz")
    images = root / "Tests" / "images"
    if not images.is_dir():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/Tests/images/" in m.name and m.isfile()]
            tar.extractall(cache, members, filter="data")
    return images


def nearest_by_hash(photos: dict[str, list], names: list[str]) -> dict[str, list[str]]:
    """Given the photos and the names of one split, return for each the others of the split, nearest
    perceptual hash first (the hard negatives among different photos)."""
    import imagehash

    hashes = {name: imagehash.phash(photos[name][0]) for name in names}
    return {
        name: sorted((o for o in names if o != name), key=lambda o: hashes[name] - hashes[o])
        for name in names
    }


def make_pairs(photos: dict[str, list], names: list[str], seed: int) -> tuple[list, list]:
    """Given the photos and the names of one split, return the labelled pairs made within the split: (each
    photo's pairs, more of the hard ones)."""
    nearest = nearest_by_hash(photos, names)
    pairs, hard = [], []
    for name in names:
        others = {other: photos[other][0] for other in names if other != name}
        pairs += verifier_pairs.photo_pairs(name, photos[name], others, nearest[name], seed)
        hard += verifier_pairs.hard_pairs(name, photos[name], others, seed)
    return pairs, hard


def measure(pairs: list, cache: Path, name: str, processes: int, seed: int) -> np.ndarray:
    """Given pairs, the cache folder, a name for them, processes and the seed, return their feature rows,
    measured once and kept in the cache (the slow part) for later runs of the same photos and seed."""
    measured = cache / f"measured_{name}_{seed}_{len(pairs)}.npy"
    if measured.exists():
        return np.load(measured)
    with tempfile.TemporaryDirectory() as folder:
        rows = verifier_pairs.measure_pairs(pairs, folder, processes, seed)
    np.save(measured, rows)
    return rows


def staged_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Given full feature rows, return (rows for every stage stacked, the index of the pair of each), in
    the order retraining.STAGES gives (the shipped out-of-fold scores are stored in that order)."""
    return retraining.staged(rows)


def out_of_fold_scores(
    rows: np.ndarray, labels: np.ndarray, sources: np.ndarray, folds: int = 5
) -> np.ndarray:
    """Given the staged training rows, their labels and source photos, return each row's raw scores from
    an ensemble fitted without its photo (GroupKFold): what the trees say of pairs they have not seen, the
    anchor retraining fits its head on (the shipped trees are too sure of their own training pairs)."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import GroupKFold
    from sklearn.utils.class_weight import compute_sample_weight

    scores = np.zeros((len(rows), len(runtime.LABELS)))
    for fit, held in GroupKFold(folds).split(rows, labels, sources):
        classifier = GradientBoostingClassifier(**BOOSTING)
        classifier.fit(rows[fit], labels[fit], sample_weight=compute_sample_weight("balanced", labels[fit]))
        scores[held] = classifier.decision_function(rows[held])
    return scores


def figures(model: runtime.Verifier, rows: np.ndarray, labels: np.ndarray, kinds: np.ndarray) -> dict:
    """Given a model and labelled pairs, return per stage: accuracy, per-class recall, duplicate recall per
    kind of edit and the pairs wrongly judged duplicate (false pairs) per kind."""
    out = {}
    for stage, names in STAGES.items():
        predicted = model.predict(mask_features(rows, names))
        per_class = {
            label: round(float(np.mean(predicted[labels == k] == k)), 4)
            for k, label in enumerate(runtime.LABELS)
            if np.any(labels == k)
        }
        duplicate = runtime.LABELS.index("duplicate")
        false_pairs = {}
        for kind in sorted(set(kinds[labels != duplicate].tolist())):
            chosen = (kinds == kind) & (labels != duplicate)
            false_pairs[kind] = f"{int(np.sum(predicted[chosen] == duplicate))}/{int(chosen.sum())}"
        recall = {}
        for kind in sorted(set(kinds[labels == duplicate].tolist())):
            chosen = (kinds == kind) & (labels == duplicate)
            recall[kind] = f"{int(np.sum(predicted[chosen] == duplicate))}/{int(chosen.sum())}"
        out[stage] = {
            "accuracy": round(float(np.mean(predicted == labels)), 4),
            "recall": per_class,
            "duplicate_recall_by_edit": recall,
            "false_duplicates_by_kind": false_pairs,
        }
    return out


def export_ensemble(classifier, rows: np.ndarray) -> dict:
    """Given a fitted GradientBoostingClassifier and some rows, return its trees as JSON-ready data: init
    is read back from decision_function (the public way) and checked to be one constant per class."""
    trees = []
    for stage in classifier.estimators_:
        for regressor in stage:
            tree = regressor.tree_
            trees.append({
                "feature": tree.feature.tolist(),
                "threshold": tree.threshold.tolist(),
                "left": tree.children_left.tolist(),
                "right": tree.children_right.tolist(),
                "value": tree.value[:, 0, 0].tolist(),
            })  # fmt: skip
    document = {"ensemble": {"init": [0.0] * 3, "learning_rate": classifier.learning_rate, "trees": trees}}
    zero_init = runtime.Verifier(_header() | document)
    difference = classifier.decision_function(rows) - zero_init.raw_scores(rows)
    if np.ptp(difference, axis=0).max() > 1e-9:
        raise SystemExit("the ensemble's initial scores are not constant: export is wrong")
    document["ensemble"]["init"] = difference[0].tolist()
    return document


def _header() -> dict:
    return {"format": runtime.FORMAT, "version": runtime.VERSION, "labels": list(runtime.LABELS),
            "features": list(FEATURE_NAMES)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "comparimg-verifier-data")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    from sklearn import __version__ as sklearn_version
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.utils.class_weight import compute_sample_weight

    started = time.time()
    photos = verifier_pairs.load_photos(pillow_test_images(arguments.cache))
    names = sorted(name for name in photos if name not in verifier_pairs.TEST_PHOTOS)
    rng = np.random.default_rng(arguments.seed)
    validation_names = sorted(
        rng.choice(names, size=round(VALIDATION_SHARE * len(names)), replace=False).tolist()
    )
    training_names = [name for name in names if name not in validation_names]
    print(f"{len(training_names)} training photos, validation: {', '.join(validation_names)}", flush=True)
    splits = {}
    for split, chosen in (("train", training_names), ("validation", validation_names)):
        pairs, hard = make_pairs(photos, chosen, arguments.seed)
        rows = np.vstack([
            measure(pairs, arguments.cache, split, arguments.processes, arguments.seed),
            measure(hard, arguments.cache, f"{split}-hard", arguments.processes, arguments.seed),
        ])  # fmt: skip
        pairs += hard
        labels = np.array([runtime.LABELS.index(p.label) for p in pairs])
        splits[split] = (rows, labels, np.array([p.kind for p in pairs]), np.array([p.source for p in pairs]))
        print(f"{split}: {len(pairs)} pairs measured ({time.time() - started:.0f} s)", flush=True)

    rows, labels, _, sources = splits["train"]
    train_rows, pair_of = staged_rows(rows)
    train_labels = labels[pair_of]
    out_of_fold = out_of_fold_scores(train_rows, train_labels, sources[pair_of])
    classifier = GradientBoostingClassifier(**BOOSTING)
    classifier.fit(train_rows, train_labels, sample_weight=compute_sample_weight("balanced", train_labels))
    document = _header() | export_ensemble(classifier, train_rows)
    model = runtime.Verifier(document)
    validation_rows, validation_labels, validation_kinds, _ = splits["validation"]
    staged_validation, _ = staged_rows(validation_rows)
    agree = float(np.mean(model.predict(staged_validation) == classifier.predict(staged_validation)))
    if agree != 1.0:
        raise SystemExit(f"numpy evaluation agrees with scikit-learn on {agree:.4%} of rows only")
    document["validation"] = {
        "split": "by source photo",
        "photos": validation_names,
        "pairs": len(validation_labels),
        "stages": figures(model, validation_rows, validation_labels, validation_kinds),
    }
    document["training"] = {
        "tool": "tools/train_verifier.py",
        "photos": training_names,
        "pairs": len(labels),
        "rows": len(train_rows),
        "classifier": f"scikit-learn {sklearn_version} GradientBoostingClassifier",
        "parameters": BOOSTING,
        "seed": arguments.seed,
        "date": time.strftime("%Y-%m-%d"),
    }
    write_shipped(document, splits, out_of_fold)
    print(json.dumps(document["validation"], indent=1))
    print(f"done in {time.time() - started:.0f} s")


def write_shipped(document: dict, splits: dict, out_of_fold: np.ndarray) -> None:
    """Given the model document, the measured splits and the out-of-fold raw scores of the staged
    training rows, write the model, the pairs and the manifest."""
    model_bytes = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    runtime.SHIPPED_MODEL.write_bytes(model_bytes)
    arrays = {}
    for split, (rows, labels, kinds, sources) in splits.items():
        arrays |= {
            f"{split}_features": rows,
            f"{split}_labels": labels.astype(np.int8),
            f"{split}_kinds": kinds.astype("U24"),
            f"{split}_sources": sources.astype("U40"),
        }
    arrays["train_out_of_fold_scores"] = out_of_fold
    np.savez_compressed(runtime.SHIPPED_PAIRS, feature_names=np.array(FEATURE_NAMES), **arrays)
    manifest = {
        "model": runtime.SHIPPED_MODEL.name,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "pairs": runtime.SHIPPED_PAIRS.name,
        "pairs_sha256": hashlib.sha256(runtime.SHIPPED_PAIRS.read_bytes()).hexdigest(),
        "validation": document["validation"],
        "training": document["training"],
        "data": "photos shipped by scikit-image, scikit-learn, matplotlib and Pillow's Tests/images",
    }
    runtime.SHIPPED_MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
