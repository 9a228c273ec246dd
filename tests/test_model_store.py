"""The user's verifier on disk (verdicts/store.py): adopt writes it atomically beside a manifest, named by
its sha256; restore swaps it with the previous one; a damaged user model or manifest falls back to the
shipped model at start-up and says so; the holder swaps models whole."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from comparimg.model import Conflict, ModelError
from comparimg.verdicts import FEATURE_NAMES, Verifier
from comparimg.verdicts.store import MANIFEST, ModelStore, VerifierHolder

COUNT = len(FEATURE_NAMES)


def user_model(nudge: float = 0.0) -> Verifier:
    """Return the shipped trees with a head (a retrained model's shape): `nudge` shifts its duplicate
    decision, so two such models judge some pairs apart."""
    document = copy.deepcopy(Verifier.load().document)
    unchanged = [1.0] + [0.0] * (COUNT + 1)
    document["head"] = {
        "mean": [0.0] * COUNT,
        "scale": [1.0] * COUNT,
        "duplicate": [*unchanged[:-1], nudge],
        "similar": unchanged,
    }
    document["validation"] = document["validation"] | {"retraining": {"user_labels": 12}}
    return Verifier(document, "<retrained>")


def model_files(store: ModelStore) -> list[str]:
    return sorted(p.name for p in store.folder.iterdir())


def test_a_fresh_store_uses_the_shipped_model(tmp_path):
    store = ModelStore(tmp_path / "models")
    in_use = store.load()
    assert in_use.source == "shipped" and in_use.problem is None
    assert in_use.describe()["validation"]["accuracy_by_stage"]["all"] > 0.9
    assert store.last_retrain() is None and store.previous_source() is None
    with pytest.raises(Conflict, match="no previous model"):
        store.restore()


def test_adopt_then_restore_back_and_forth(tmp_path):
    store = ModelStore(tmp_path / "models")
    adopted = store.adopt(user_model(), {"adopted": True, "reason": "better"})
    assert adopted.source == "user" and len(adopted.sha256) == 64
    assert model_files(store) == sorted([MANIFEST, f"verifier-{adopted.sha256}.json"])
    assert oct((store.folder / MANIFEST).stat().st_mode & 0o777) == "0o600"
    reloaded = ModelStore(store.folder).load()  # a restart
    assert reloaded.source == "user" and reloaded.sha256 == adopted.sha256
    assert reloaded.describe()["validation"]["retraining"]["user_labels"] == 12
    assert store.last_retrain() == {"adopted": True, "reason": "better"}

    second = store.adopt(user_model(nudge=-3.0), {"adopted": True, "reason": "again"})
    assert store.previous_source() == "user"
    first_file = f"verifier-{adopted.sha256}.json"
    assert first_file in model_files(store)  # kept: it is the previous one
    assert store.restore().sha256 == adopted.sha256
    assert store.restore().sha256 == second.sha256  # restoring twice comes back

    store.adopt(user_model(nudge=1.0), {"adopted": True, "reason": "third"})
    assert first_file not in model_files(store)  # neither in use nor previous: removed


def test_a_damaged_user_model_falls_back_to_the_shipped_one_and_says_so(tmp_path, caplog):
    store = ModelStore(tmp_path / "models")
    adopted = store.adopt(user_model(), {"adopted": True, "reason": "better"})
    path = store.folder / f"verifier-{adopted.sha256}.json"
    path.write_bytes(path.read_bytes()[:-10] + b"0000000000")
    in_use = store.load()
    assert in_use.source == "shipped"
    assert str(path) in in_use.problem and "damaged or replaced" in in_use.problem
    assert "event=user_model_unusable" in caplog.text
    assert store.restore().source == "shipped"  # the previous one
    with pytest.raises(ModelError, match="damaged or replaced"):
        store.restore()  # the damaged one cannot come back; nothing changes
    assert store.load().source == "shipped"


def test_a_damaged_manifest_falls_back_to_the_shipped_one(tmp_path):
    store = ModelStore(tmp_path / "models")
    store.folder.mkdir()
    (store.folder / MANIFEST).write_text("{not json")
    in_use = store.load()
    assert in_use.source == "shipped" and MANIFEST in in_use.problem
    store.record_outcome({"adopted": False, "reason": "too few labels: 3 (at least 10)"})
    assert json.loads((store.folder / MANIFEST).read_text())["in_use"] == {"source": "shipped"}


def test_the_holder_swaps_the_model_the_daemon_judges_with(tmp_path):
    store = ModelStore(tmp_path / "models")
    holder = VerifierHolder(store.load())
    shipped = holder.current
    row = np.zeros(COUNT)
    row[FEATURE_NAMES.index("cosine_missing")] = row[FEATURE_NAMES.index("pixel_missing")] = 1.0
    row[FEATURE_NAMES.index("small_side")] = 8.0
    assert shipped.judge(row).label == "duplicate"
    holder.swap(store.adopt(user_model(nudge=-50.0), {"adopted": True, "reason": "test"}))
    assert holder.in_use.source == "user" and holder.current.judge(row).label != "duplicate"
    source = holder  # what a judge of pairs holds: a callable giving the verifier in use at each call
    assert source().judge(row).label != "duplicate"
    holder.swap(store.restore())
    assert source().judge(row).label == "duplicate"
