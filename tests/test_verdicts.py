"""The learned verifier: pair features, the shipped model (checksum, numpy against scikit-learn), its verdicts
on pairs made from photos held out of training, bad model files, and retraining from a reviewer's labels.

Run with -s to see the figures (per-edit recall and false pairs by stage of evidence, retraining before and
after). The held-out pairs are made and measured once per session (~1-2 minutes: real files, the real
hashing room, pixel check and shipped embedder).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from comparimg.model import Fingerprint, ModelError
from comparimg.model import Verdict as PixelVerdict
from comparimg.verdicts import (
    FEATURE_NAMES,
    LABELS,
    Verdict,
    Verifier,
    mask_features,
    pair_features,
    retraining,
)
from comparimg.verdicts import features as features_module
from comparimg.verdicts import verifier as verifier_module

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import train_verifier  # noqa: E402
import verifier_pairs  # noqa: E402

STAGES = {"hash": train_verifier.STAGES["hash"], "hash+embedding": train_verifier.STAGES["hash+embedding"],
          "all": train_verifier.STAGES["all"]}  # fmt: skip
# The model tools/train_verifier.py wrote; a new training must change this line, on purpose.
SHIPPED_MODEL_SHA256 = "7da746b1dff4c404e15e8b063459f5a5336c547027115e092ea2dd6b17d0755e"
BURSTS = ("burst", "burst_zoom", "next_frame")
FRAMED_PAIRS = ("dark_framed_pair", "flat_framed_pair")
DUPLICATE, SIMILAR, DIFFERENT = (LABELS.index(label) for label in ("duplicate", "similar", "different"))


# --- pair features (pure) ---------------------------------------------------------------------------------


def _fingerprint(
    phash: int, width: int = 400, height: int = 300, windows: tuple[int, ...] = ()
) -> Fingerprint:
    from comparimg.hashing.perceptual import orientation_variants

    rng = np.random.default_rng(phash)
    variants = orientation_variants(rng.normal(size=(32, 32)))
    return Fingerprint("c" * 64, width, height, "PNG", variants, windows)


def test_features_of_a_pair_with_nothing_but_hashes_flag_what_was_not_computed():
    a = _fingerprint(1)
    row = pair_features(a, a)
    values = dict(zip(FEATURE_NAMES, row, strict=True))
    assert values["global_distance"] == 0 and values["turned"] == 0
    assert values["cosine_missing"] == 1 and values["pixel_missing"] == 1 and values["pixel_score"] == 0
    assert values["window_distance"] == 64  # no windows: no window evidence
    assert len(row) == len(FEATURE_NAMES)


def test_features_take_the_best_orientation_and_the_checks_scores():
    a = _fingerprint(2, 400, 300)
    turned = Fingerprint("d" * 64, 300, 400, "PNG", (a.phash[1], *a.phash[1:]))  # B is A turned by rot90
    pixels = PixelVerdict(True, 0.9, 1.0, (0.0, 0.0), reason="same frame")
    values = dict(zip(FEATURE_NAMES, pair_features(a, turned, 0.93, pixels), strict=True))
    assert values["global_distance"] == 0 and values["turned"] == 1
    assert values["aspect_change"] == pytest.approx(0.0)  # A turned has B's shape
    assert values["cosine"] == pytest.approx(0.93) and values["cosine_missing"] == 0
    assert values["pixel_score"] == pytest.approx(0.9) and values["pixel_cover_max"] == 1
    assert values["pixel_missing"] == 0


def test_crop_placement_gives_full_cover_of_the_crop_only():
    # B, a crop of 80 % of A, lies wholly in A: it is covered fully, A only to 64 %
    low, high = features_module.pixel_cover(
        (500, 500), (400, 400), PixelVerdict(True, 1.0, 0.8, (25.6, 25.6))
    )
    assert high == pytest.approx(1.0) and low == pytest.approx(0.64)


@pytest.mark.parametrize("cosine", [float("nan"), 1.5, -2.0])
def test_a_cosine_outside_its_range_is_refused(cosine):
    a = _fingerprint(3)
    with pytest.raises(ValueError, match="cosine"):
        pair_features(a, a, cosine)


def test_masking_a_stage_makes_the_row_pair_features_would_have_made():
    a, b = _fingerprint(4), _fingerprint(5)
    full = pair_features(a, b, 0.5, PixelVerdict(False, 0.2, 1.1, (3.0, 4.0)))
    masked = mask_features(full[None, :], features_module.PIXEL_FEATURES + features_module.EMBEDDING_FEATURES)
    np.testing.assert_array_equal(masked[0], pair_features(a, b))


# --- the shipped model ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Verifier:
    return Verifier.load()


@pytest.fixture(scope="module")
def shipped_pairs() -> retraining.ShippedPairs:
    return retraining.ShippedPairs.load()


def test_shipped_files_have_the_manifests_checksums():
    manifest = json.loads(verifier_module.SHIPPED_MANIFEST.read_text())
    for name, key in (("model", "model_sha256"), ("pairs", "pairs_sha256")):
        data = verifier_module.SHIPPED_MANIFEST.with_name(manifest[name]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest[key]
    assert manifest["model_sha256"] == SHIPPED_MODEL_SHA256
    assert verifier_module.SHIPPED_MODEL.stat().st_size < 2 << 20  # kept small


def test_shipped_model_judges_a_pair(shipped):
    a = _fingerprint(6)
    verdict = shipped.judge(pair_features(a, a, 1.0, PixelVerdict(True, 1.0, reason="same frame")))
    assert isinstance(verdict, Verdict) and verdict.label == "duplicate"
    assert 1 / 3 <= verdict.confidence <= 1 and sum(verdict.probabilities) == pytest.approx(1, abs=1e-3)
    assert verdict.confidence == max(verdict.probabilities)
    assert shipped.validation["split"] == "by source photo"


def test_numpy_evaluation_gives_scikit_learns_predictions(shipped, shipped_pairs):
    """The shipped trees refit with the recorded parameters on the shipped training pairs, exported as the
    tool exports them: numpy and scikit-learn agree on every validation row of every stage; and with the
    same scikit-learn version the refit is the shipped model itself."""
    sklearn = pytest.importorskip("sklearn")
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.utils.class_weight import compute_sample_weight

    rows, pair_of = train_verifier.staged_rows(shipped_pairs.train_features)
    labels = shipped_pairs.train_labels[pair_of]
    classifier = GradientBoostingClassifier(**shipped.document["training"]["parameters"])
    classifier.fit(rows, labels, sample_weight=compute_sample_weight("balanced", labels))
    exported = Verifier(train_verifier._header() | train_verifier.export_ensemble(classifier, rows))
    validation, _ = train_verifier.staged_rows(shipped_pairs.validation_features)
    np.testing.assert_array_equal(exported.predict(validation), classifier.predict(validation))
    np.testing.assert_allclose(
        exported.probabilities(validation), classifier.predict_proba(validation), atol=1e-9
    )
    if shipped.document["training"]["classifier"].startswith(f"scikit-learn {sklearn.__version__} "):
        np.testing.assert_array_equal(shipped.predict(validation), classifier.predict(validation))
    print(f"\nnumpy == scikit-learn on {len(validation)} validation rows (4 stages)")


# --- bad model files --------------------------------------------------------------------------------------


def test_a_missing_model_file_is_a_model_error_naming_it(tmp_path):
    path = tmp_path / "gone.json"
    with pytest.raises(ModelError, match=r"gone\.json.*missing"):
        Verifier.load(path)


def test_a_damaged_model_file_fails_its_checksum(tmp_path):
    data = bytearray(verifier_module.SHIPPED_MODEL.read_bytes())
    data[len(data) // 2] ^= 0x01
    path = tmp_path / "verifier_model.json"
    path.write_bytes(bytes(data))
    expected = json.loads(verifier_module.SHIPPED_MANIFEST.read_text())["model_sha256"]
    with pytest.raises(ModelError, match=f"{path.name}.*sha256"):
        Verifier.load(path, sha256=expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: "{ not json", "not JSON"),
        (lambda doc: json.dumps([1, 2]), "not an object"),
        (lambda doc: json.dumps(doc | {"features": doc["features"][:-1]}), "other features"),
        (lambda doc: json.dumps(doc | {"version": 99}), "version 99"),
        (
            lambda doc: json.dumps(
                _with_first_tree(doc, left=[7] * len(doc["ensemble"]["trees"][0]["left"]))
            ),
            "points outside",
        ),
        (lambda doc: json.dumps(_with_first_tree(doc, threshold=None)), "not a verifier model"),
    ],
)
def test_a_corrupt_model_file_is_a_model_error_naming_it(tmp_path, change, message):
    document = json.loads(verifier_module.SHIPPED_MODEL.read_text())
    path = tmp_path / "broken_verifier.json"
    path.write_text(change(document))
    with pytest.raises(ModelError, match=f"broken_verifier.json.*{message}"):
        Verifier.load(path)


def _with_first_tree(document: dict, **fields) -> dict:
    trees = [dict(tree) for tree in document["ensemble"]["trees"]]
    trees[0].update(fields)
    return document | {"ensemble": document["ensemble"] | {"trees": trees}}


def test_a_wrong_feature_vector_is_refused(shipped):
    with pytest.raises(ValueError, match="feature rows"):
        shipped.judge(np.zeros(len(FEATURE_NAMES) - 1))
    with pytest.raises(ValueError, match="finite"):
        shipped.judge(np.full(len(FEATURE_NAMES), np.nan))


# --- verdicts on pairs from photos held out of training ---------------------------------------------------


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Pairs made from verifier_pairs.TEST_PHOTOS only (never used by the training tool), measured with the
    real hashing room, pixel check and embedder: (pairs, feature rows, label indices, kinds). Extra bursts
    (other seeds) give the reviewer of the retraining test enough of them."""
    photos = verifier_pairs.load_photos(None)
    names = list(verifier_pairs.TEST_PHOTOS)
    assert not set(names) & set(Verifier.load().document["training"]["photos"])
    pairs, hard = train_verifier.make_pairs(photos, names, seed=1)
    pairs += hard
    for seed in (2, 3, 4):
        rng = np.random.default_rng(seed)
        pairs += [
            p
            for name in names
            for p in verifier_pairs.similar_pairs(name, photos[name], rng)
            if p.kind in BURSTS
        ]
    rows = verifier_pairs.measure_pairs(pairs, str(tmp_path_factory.mktemp("pairs")), processes=2, seed=1)
    labels = np.array([LABELS.index(p.label) for p in pairs])
    return pairs, rows, labels, np.array([p.kind for p in pairs])


def _judged(model: Verifier, rows: np.ndarray, stage: str) -> np.ndarray:
    return model.predict(mask_features(rows, STAGES[stage]))


@pytest.mark.timeout(900)
def test_per_edit_recall_and_false_pairs_by_stage(shipped, held_out):
    """Figures, printed: duplicate recall per edit and pairs wrongly judged duplicate per kind, for the
    three ways of judging (hash features only, hash + embedding, all). Asserted: nothing, here; the tests
    below assert the two behaviours the issue names."""
    _, rows, labels, kinds = held_out
    judged = {stage: _judged(shipped, rows, stage) for stage in STAGES}
    lines = [f"\n{'kind':20s} {'label':10s} " + " ".join(f"{stage:>15s}" for stage in STAGES)]
    for kind in dict.fromkeys(kinds.tolist()):
        chosen = kinds == kind
        label = LABELS[int(labels[chosen][0])]
        cells = []
        for stage in STAGES:
            predicted = judged[stage][chosen]
            if label == "duplicate":
                cells.append(f"{int(np.sum(predicted == DUPLICATE))}/{int(chosen.sum())} found")
            else:
                cells.append(f"{int(np.sum(predicted == DUPLICATE))}/{int(chosen.sum())} false")
        lines.append(f"{kind:20s} {label:10s} " + " ".join(f"{cell:>15s}" for cell in cells))
    for stage in STAGES:
        duplicate = labels == DUPLICATE
        recall = np.mean(judged[stage][duplicate] == DUPLICATE)
        false_pairs = int(np.sum(judged[stage][~duplicate] == DUPLICATE))
        accuracy = np.mean(judged[stage] == labels)
        lines.append(
            f"{stage}: duplicate recall {recall:.3f}, false pairs {false_pairs}/{int((~duplicate).sum())},"
            f" 3-class agreement {accuracy:.3f}"
        )
    print("\n".join(lines))


@pytest.mark.timeout(900)
def test_dark_or_flat_pictures_that_share_a_frame_are_judged_different(shipped, held_out):
    _, rows, _, kinds = held_out
    chosen = np.isin(kinds, FRAMED_PAIRS)
    for stage in ("hash+embedding", "all"):
        judged = _judged(shipped, rows[chosen], stage)
        print(f"\nframed pairs, {stage}: " + ", ".join(LABELS[k] for k in judged))
        assert np.all(judged == DIFFERENT), stage


@pytest.mark.timeout(900)
def test_bursts_are_mostly_judged_similar(shipped, held_out):
    """Measured when written: 53 of 60 similar, 5 duplicate, 2 different (all evidence)."""
    _, rows, _, kinds = held_out
    judged = _judged(shipped, rows[np.isin(kinds, BURSTS)], "all")
    print(f"\nbursts and next frames, all evidence: {np.sum(judged == SIMILAR)}/{len(judged)} similar")
    assert np.mean(judged == SIMILAR) >= 0.8
    assert np.mean(judged == DUPLICATE) <= 0.1


@pytest.mark.xfail(
    strict=True,
    reason="known limit: a burst shot shifted by ~3 % with the same exposure looks like a 5 % crop to every "
    "feature (5 of 60 judged duplicate when written)",
)
@pytest.mark.timeout(900)
def test_bursts_are_judged_similar(shipped, held_out):
    _, rows, _, kinds = held_out
    chosen = np.isin(kinds, BURSTS)
    judged = _judged(shipped, rows[chosen], "all")
    print(f"\nbursts and next frames, all evidence: {np.sum(judged == SIMILAR)}/{int(chosen.sum())} similar, "
          f"{np.sum(judged == DUPLICATE)} duplicate, {np.sum(judged == DIFFERENT)} different")  # fmt: skip
    assert np.all(judged == SIMILAR)


# --- retraining from a reviewer's labels ------------------------------------------------------------------


def _reviewer_label(kind: str, label: int) -> str:
    # A reviewer with a consistent taste the shipped model does not share: bursts are not even similar.
    return "different" if kind in BURSTS else LABELS[label]


@pytest.mark.timeout(900)
def test_retraining_from_a_reviewer_who_calls_bursts_different(shipped, shipped_pairs, held_out):
    _, rows, labels, kinds = held_out
    taste = np.array([_reviewer_label(kind, label) for kind, label in zip(kinds, labels, strict=True)])
    order = np.random.default_rng(7).permutation(len(rows))
    labelled, others = order[:50], order[50:]
    outcome = retraining.retrain(shipped_pairs, rows[labelled], taste[labelled].tolist(), shipped)
    truth = retraining.label_indices(taste[others].tolist())
    before = retraining.agreement(shipped, rows[others], truth)
    after = retraining.agreement(outcome.candidate, rows[others], truth)
    figures = outcome.figures
    bursts = int(np.isin(kinds[labelled], BURSTS).sum())
    shipped_key = "shipped_validation_duplicate_score"
    print(
        f"\nreviewer (bursts are different): 50 labels, {bursts} of them bursts;"
        f" agreement on their {len(others)} other pairs {before:.3f} -> {after:.3f};"
        f" shipped validation duplicate score {figures['current'][shipped_key]} ->"
        f" {figures['candidate'][shipped_key]}; adopted: {outcome.adopted} ({outcome.reason})"
    )
    assert after > before
    assert (
        figures["candidate"]["shipped_validation_duplicate_score"]
        >= figures["current"]["shipped_validation_duplicate_score"]
    )
    assert outcome.adopted
    reloaded = Verifier(json.loads(outcome.candidate.to_json()))  # a retrained model is JSON data too
    np.testing.assert_array_equal(reloaded.predict(rows), outcome.candidate.predict(rows))


def test_a_head_that_changes_nothing_gives_the_ensembles_labels(shipped, shipped_pairs):
    unchanged = [1.0] + [0.0] * (len(FEATURE_NAMES) + 1)
    head = {"duplicate": unchanged, "similar": unchanged, "mean": [0.0] * len(FEATURE_NAMES),
            "scale": [1.0] * len(FEATURE_NAMES)}  # fmt: skip
    with_head = Verifier(shipped.document | {"head": head})
    rows, _ = train_verifier.staged_rows(shipped_pairs.validation_features)
    np.testing.assert_array_equal(with_head.predict(rows), shipped.predict(rows))


def test_retraining_with_too_few_labels_is_not_adopted(shipped, shipped_pairs):
    rows = shipped_pairs.validation_features[:6]
    outcome = retraining.retrain(
        shipped_pairs, rows, [LABELS[k] for k in shipped_pairs.validation_labels[:6]], shipped
    )
    assert not outcome.adopted and "too few labels" in outcome.reason


def test_retraining_refuses_unknown_labels(shipped, shipped_pairs):
    with pytest.raises(ValueError, match="unknown labels"):
        retraining.retrain(
            shipped_pairs, shipped_pairs.validation_features[:2], ["duplicate", "maybe"], shipped
        )


def test_a_damaged_pairs_file_is_a_model_error_naming_it(tmp_path):
    path = tmp_path / "pairs.npz"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ModelError, match=r"pairs\.npz"):
        retraining.ShippedPairs.load(path)
