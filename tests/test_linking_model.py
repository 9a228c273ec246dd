"""The linker with the learned verifier (modes hash, hash+model, model): real photos, real files, a real
index, real worker processes and the shipped verifier; the embeddings, where a test needs them, come from
the shipped embedder run on the same files."""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comparimg.index import Index, open_index
from comparimg.model import ModelError
from comparimg.scanner import MatchOptions, Scanner, ScanOptions, shipped_verifier
from comparimg.verdicts import FEATURE_NAMES, Verifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import verifier_pairs

FEATURES = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def burst() -> tuple[Image.Image, Image.Image]:
    """Two synthetic shots of one scene (scikit-image's cat, shifted ~3 %, another exposure, a moved patch,
    sensor noise): the verifier's training kind `burst`, from a photo the tests' copies do not use."""
    photos = verifier_pairs.load_photos(None)
    pairs = verifier_pairs.similar_pairs("ski_chelsea", photos["ski_chelsea"], np.random.default_rng(0))
    shots = next(p for p in pairs if p.kind == "burst")
    return shots.a, shots.b


@pytest.fixture
def tree(tmp_path, write_photo, burst):
    """Copies of the astronaut (a resized PNG), two shots of a burst, two unrelated photos."""
    root = tmp_path / "photos"
    write_photo(root / "astronaut.jpg", "astronaut")
    write_photo(root / "copies" / "astronaut-small.png", "astronaut", size=(256, 256))
    (root / "burst").mkdir()
    for name, shot in zip(("shot-1.jpg", "shot-2.jpg"), burst, strict=True):
        shot.save(root / "burst" / name, quality=90)
    write_photo(root / "coffee.jpg", "coffee")
    write_photo(root / "rocket.jpg", "rocket")
    return root


def scan(index, pool, root, mode, verifier=shipped_verifier):
    scanner = Scanner(index, pool, ScanOptions(match=MatchOptions(mode=mode)), verifier=verifier)
    return scanner, scanner.scan([root])


def groups_of(index):
    """Return {(kind, names)}: each stored group by its members' file names, with each member's verdict."""
    found = {}
    for stored in index.iter_groups():
        rows = index.files_by_ids(m.file_id for m in stored.group.members)
        names = tuple(sorted(os.path.basename(rows[m.file_id].path) for m in stored.group.members))
        found[(stored.group.kind, names)] = {
            os.path.basename(rows[m.file_id].path): m for m in stored.group.members
        }
    return found


def never_asked():
    raise AssertionError("mode hash must not load the verifier")


def test_mode_hash_matches_as_before_and_loads_no_verifier(index, pool, tree):
    _, report = scan(index, pool, tree, "hash", verifier=never_asked)
    groups = groups_of(index)
    assert ("near", ("astronaut-small.png", "astronaut.jpg")) in groups
    assert not any(kind == "similar" for kind, _ in groups)
    assert report.judged == 0 and report.verified > 0
    assert all(m.verdict == "" and m.confidence is None for g in groups.values() for m in g.values())


def test_mode_hash_model_judges_copies_duplicates_and_a_burst_similar(index, pool, tree, tmp_path):
    _, report = scan(index, pool, tree, "hash+model")
    groups = groups_of(index)
    copies = groups[("near", ("astronaut-small.png", "astronaut.jpg"))]
    copy_member = next(m for m in copies.values() if m.verdict)
    assert copy_member.verdict == "duplicate" and 0.5 < copy_member.confidence <= 1.0
    shots = groups[("similar", ("shot-1.jpg", "shot-2.jpg"))]
    assert {m.suggested for m in shots.values()} == {"keep"}, "a burst suggests nothing for the trash"
    assert sum(bool(m.reason) for m in shots.values()) == 1, "one shot is the pick, with its reason"
    assert [m.verdict for m in shots.values() if m.verdict] == ["similar"]
    assert set(groups) == {
        ("near", ("astronaut-small.png", "astronaut.jpg")),
        ("similar", ("shot-1.jpg", "shot-2.jpg")),
    }
    counts = index.counts()
    assert (counts["groups"], counts["groups_similar"], counts["grouped_files"]) == (1, 1, 2)
    assert report.judged >= 2 and report.verified <= report.judged
    with open_index(tmp_path / "hash.sqlite3") as other:
        _, hash_report = scan(other, pool, tree, "hash", verifier=never_asked)
    assert report.verified <= hash_report.verified, "pixel checks only where the verifier is unsure"


def judging_all_different(verifier: Verifier) -> Verifier:
    """Return the verifier with a head (the format a retrained model has) that says "different" of every
    pair."""
    document = copy.deepcopy(verifier.document)
    zeros = [0.0] * FEATURES
    document["head"] = {
        "duplicate": [1.0, *zeros, -100.0],
        "similar": [1.0, *zeros, -100.0],
        "mean": zeros,
        "scale": [1.0] * FEATURES,
    }
    return Verifier(document, "<refusing duplicates>")


def test_a_replaced_verifier_judges_from_the_next_link(index, pool, tree, write_photo):
    current = {"verifier": shipped_verifier()}
    scanner, _ = scan(index, pool, tree, "hash+model", verifier=lambda: current["verifier"])
    assert ("near", ("astronaut-small.png", "astronaut.jpg")) in groups_of(index)
    current["verifier"] = judging_all_different(current["verifier"])
    # changed, so linked again (with the verifier in force now)
    write_photo(tree / "copies" / "astronaut-small.png", "astronaut", size=(250, 250))
    scanner.scan([tree])
    assert not any("astronaut.jpg" in names for _, names in groups_of(index))


def test_a_verifier_that_cannot_load_leaves_the_pixel_check_deciding(index, pool, tree, tmp_path, caplog):
    def broken() -> Verifier:
        raise ModelError("/models/verifier.json", "missing")

    with caplog.at_level(logging.ERROR, logger="comparimg.scanner.linking"):
        _, report = scan(index, pool, tree, "hash+model", verifier=broken)
    assert "/models/verifier.json" in caplog.text
    with open_index(tmp_path / "hash.sqlite3") as other:
        scan(other, pool, tree, "hash", verifier=never_asked)
        expected = set(groups_of(other))
    assert set(groups_of(index)) == expected and report.judged == 0


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="hash, hash\\+model, model"):
        MatchOptions(mode="pixels")


# --- with embeddings: the model stage's index (Index.embedding_batches) ---------------------------------

needs_embeddings = pytest.mark.skipif(
    not hasattr(Index, "embedding_batches"), reason="the index does not store embeddings yet (model stage)"
)


def embedded_fingerprint(path: Path):
    """Return the file's fingerprint with its embedding from the shipped embedder (as the workers make it)."""
    import dataclasses

    from comparimg import hashing
    from comparimg.embedding import Embedder, pack_embedding
    from comparimg.hashing.embedder_input import embed_picture

    embedder = _EMBEDDER.setdefault("shipped", Embedder.load())
    with Image.open(path) as image:
        vector = embed_picture(embedder, image.convert("RGB"))
    return dataclasses.replace(hashing.fingerprint_file(str(path)), embedding=pack_embedding(vector))


_EMBEDDER: dict = {}


def index_with_embeddings(index, tree) -> dict[str, int]:
    """Store every file of the tree with its embedded fingerprint, as a scan with the model stage would."""
    from comparimg.scanner.walk import identity_of

    ids = {}
    with index.transaction():
        for path in sorted(Path(tree).rglob("*.*")):
            fingerprint = embedded_fingerprint(path)
            identity = identity_of(os.stat(path))
            ids[path.name] = index.upsert_fingerprint(str(path), str(tree), identity, fingerprint, 0.0)
    return ids


@needs_embeddings
@pytest.mark.parametrize("mode", ["hash+model", "model"])
def test_embedding_neighbours_are_judged(index, pool, tree, mode):
    from comparimg.scanner.linking import Linker

    ids = index_with_embeddings(index, tree)
    linker = Linker(index, pool, MatchOptions(mode=mode))
    linker.regroup(linker.link(list(ids.values())))
    groups = groups_of(index)
    assert ("near", ("astronaut-small.png", "astronaut.jpg")) in groups
    assert ("similar", ("shot-1.jpg", "shot-2.jpg")) in groups
    assert len(groups) == 2
    if mode == "model":
        assert linker.verifications == 0, "mode model runs no pixel check"
    assert linker.judged >= 2


def test_a_cheap_verdict_skips_the_pixel_check_only_when_sure():
    from comparimg.scanner.linking import SURE, SURE_DUPLICATE, is_sure
    from comparimg.verdicts import Verdict

    assert is_sure(Verdict("different", SURE)) and is_sure(Verdict("similar", 0.97))
    assert not is_sure(Verdict("different", SURE - 0.01))
    assert not is_sure(Verdict("duplicate", 0.98)) and is_sure(Verdict("duplicate", SURE_DUPLICATE))


def test_a_turned_pair_alike_upright_is_not_judged_different_without_the_pixel_check():
    from comparimg.model import Fingerprint
    from comparimg.scanner.linking import ALIKE_COSINE, PairEvidence, taken_unchecked
    from comparimg.verdicts import Verdict

    a = b = Fingerprint("c" * 64, 400, 300, "PNG", (1,) * 8)
    sure_different = Verdict("different", 0.99)
    turned_alike = PairEvidence(a, b, orientation=4, cosine=None, upright_cosine=ALIKE_COSINE + 0.1)
    assert not taken_unchecked(sure_different, turned_alike)  # the verdict never saw that cosine
    assert taken_unchecked(Verdict("similar", 0.99), turned_alike)
    turned_unlike = PairEvidence(a, b, orientation=4, cosine=None, upright_cosine=ALIKE_COSINE - 0.1)
    upright_alike = PairEvidence(a, b, orientation=0, cosine=0.9, upright_cosine=0.9)
    without_embeddings = PairEvidence(a, b, orientation=4, cosine=None, upright_cosine=None)
    for evidence in (turned_unlike, upright_alike, without_embeddings):
        assert taken_unchecked(sure_different, evidence)
        assert not taken_unchecked(Verdict("different", 0.9), evidence)  # not sure: checked anyway


def test_a_duplicate_verdict_overrules_a_failed_pixel_check_only_when_very_sure():
    from comparimg.scanner.linking import OVERRULE, checked_verdict
    from comparimg.verdicts import Verdict

    weak = Verdict("duplicate", 0.6, (0.6, 0.3, 0.1))
    assert checked_verdict(weak, pixels_matched=True) == weak
    assert checked_verdict(weak, pixels_matched=False) == Verdict("similar", 0.3)
    assert checked_verdict(Verdict("duplicate", 0.5, (0.5, 0.1, 0.4)), False) == Verdict("different", 0.4)
    strong = Verdict("duplicate", OVERRULE, (OVERRULE, 0.02, 0.01))
    assert checked_verdict(strong, pixels_matched=False) == strong
    assert checked_verdict(Verdict("similar", 0.5, (0.2, 0.5, 0.3)), False).label == "similar"


def test_a_shifted_shot_of_the_same_size_is_never_a_duplicate(tmp_path, burst, write_photo):
    """Two shots of a burst align at the same scale but shifted: whatever the verifier says, they are not one
    picture. A copy of the same size (re-encoded, or under a caption) aligns unshifted and stays a copy."""
    from comparimg.hashing import fingerprint_file, verify_pair
    from comparimg.model import Candidate
    from comparimg.scanner.linking import PairEvidence, checked_verdict, is_shifted_shot
    from comparimg.verdicts import Verdict

    for name, shot in zip(("shot-1.jpg", "shot-2.jpg"), burst, strict=True):
        shot.save(tmp_path / name, quality=90)
    original = write_photo(tmp_path / "astronaut.png", "astronaut", size=(480, 360))
    with Image.open(original) as image:
        image.convert("RGB").save(tmp_path / "astronaut.jpg", quality=60)
        captioned = image.convert("RGB")
        captioned.paste((20, 20, 60), (0, 320, 480, 360))
        captioned.save(tmp_path / "captioned.jpg", quality=85)

    def shifted(a: str, b: str) -> bool:
        first, second = (fingerprint_file(str(tmp_path / name)) for name in (a, b))
        pixels = verify_pair(str(tmp_path / a), str(tmp_path / b), Candidate(0, 0, 0))
        assert pixels.matched, (a, b, pixels)
        return is_shifted_shot(PairEvidence(first, second, 0, None), pixels)

    assert shifted("shot-1.jpg", "shot-2.jpg") and shifted("shot-2.jpg", "shot-1.jpg")
    assert not shifted("astronaut.png", "astronaut.jpg") and not shifted("astronaut.png", "captioned.jpg")
    sure = Verdict("duplicate", 0.99, (0.99, 0.008, 0.002))
    assert checked_verdict(sure, pixels_matched=True, shifted_shot=True) == Verdict("similar", 0.008)
    assert checked_verdict(sure, pixels_matched=True) == sure


def test_edges_follow_the_verdict_and_a_weak_similar_is_none():
    from comparimg.model import Candidate
    from comparimg.scanner.linking import MIN_SIMILAR, PairToVerify, judged_edges
    from comparimg.verdicts import Verdict

    pair = PairToVerify(7, "/p/b.jpg", 3, "/p/a.jpg", Candidate(3, 6, 1))
    (edge,) = judged_edges([pair], Verdict("duplicate", 0.991))
    assert (edge.file_a, edge.file_b, edge.kind, edge.verdict, edge.confidence) == (
        3,
        7,
        "near",
        "duplicate",
        0.991,
    )
    assert edge.orientation == 3, "turned from file_a's side: the inverse of rot90"
    assert judged_edges([pair], Verdict("similar", MIN_SIMILAR))[0].kind == "similar"
    assert judged_edges([pair], Verdict("similar", 0.69)) == [], "a weak similar is no relation"
    assert judged_edges([pair], Verdict("different", 0.99)) == []
