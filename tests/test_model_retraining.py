"""The learning loop end to end, on a real daemon (`comparimg run`) with real pictures: a simulated reviewer
whose taste the shipped verifier does not share (bursts and next frames are not even similar: "different")
labels 50 pairs through the API with ordinary decisions (not-duplicates marks for the bursts; keep the
original, trash the copy, apply, for the duplicates); `comparimg model retrain` adopts a model that agrees
with them more on their OTHER pairs, without dropping the shipped validation; the next verdict uses it;
`comparimg model restore` brings the shipped model back (and restoring again the retrained one); a
restarted daemon loads the adopted model, or, when its file is damaged, the shipped one and says so.

Run with -s to see the before / after agreement. The pairs are made by tools/verifier_pairs.py from twelve
photos reduced to a 160-pixel long side, so hashing and checking them is quick.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon_harness import Daemon, index_rows, wait_for

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))
import verifier_pairs  # noqa: E402

SIDE = 160
# The four photos the training tool never uses, and eight it trained on (each pair is new: its own edit
# or burst); a few files per photo keep the pixel checks among a photo's copies and shots few.
PHOTOS = (*verifier_pairs.TEST_PHOTOS, "ski_astronaut", "ski_chelsea", "ski_camera", "ski_coins",
          "ski_immunohistochemistry", "skl_china", "skl_flower", "mpl_grace_hopper")  # fmt: skip
BURSTS = ("burst", "burst_zoom", "next_frame")
EDITS = ("resize_half", "jpeg_50", "brightness_up", "contrast", "gamma", "grayscale", "flip_h", "rot90",
         "crop_5", "caption", "border", "watermark")  # fmt: skip
COPIES_PER_PHOTO = 4
LABELLED = 50


def reviewer_label(kind: str) -> str:
    """The reviewer's taste: copies are duplicates, other shots of the scene are not even similar."""
    return "different" if kind in BURSTS else "duplicate"


def make_pairs(folder: Path) -> list[dict]:
    """Write the pictures of every pair under `folder`; return [{"kind", "a", "b"}] (paths): per photo,
    COPIES_PER_PHOTO edited copies of it and one pair of each kind of burst."""
    photos = verifier_pairs.load_photos(None)
    pairs = []
    for number, name in enumerate(PHOTOS):
        photo = photos[name][0]
        photo = photo.resize((SIDE, round(SIDE * photo.height / photo.width)), Image.Resampling.LANCZOS)
        original = folder / name / "original.png"
        original.parent.mkdir(parents=True)
        photo.save(original)
        rng = np.random.default_rng(number)
        for edit in (EDITS * 4)[number * COPIES_PER_PHOTO : (number + 1) * COPIES_PER_PHOTO]:
            pair = verifier_pairs.duplicate_pair(name, photo, edit, rng)
            pairs.append({"kind": edit, "a": original, "b": _save(pair.b, folder / name / edit, pair)})
        for pair in verifier_pairs.similar_pairs(name, [photo], rng):
            if pair.kind in BURSTS:
                a = _save(pair.a, folder / name / f"{pair.kind}-a", pair)
                pairs.append({"kind": pair.kind, "a": a, "b": _save(pair.b, folder / name / pair.kind, pair)})
    return pairs


def _save(picture: Image.Image, stem: Path, pair) -> Path:
    suffix = {"JPEG": ".jpg", "WEBP": ".webp", "PNG": ".png"}[pair.b_format]
    path = stem.with_suffix(suffix)
    path.write_bytes(verifier_pairs.encoded(picture, pair.b_format, pair.b_quality))
    return path


class Api:
    """The daemon's API with its token, and the `comparimg` CLI pointed at it."""

    def __init__(self, daemon: Daemon):
        ports = re.findall(r"event=http_listening host=\S+ port=(\d+)", daemon.log())
        assert ports, daemon.log()[-2000:]
        self.base = f"http://127.0.0.1:{ports[-1]}"  # the daemon's latest start
        self.daemon = daemon
        self.token = (daemon.workdir / "token").read_text().strip()

    def __call__(self, method: str, path: str, body: object = None, status: int = 200) -> dict:
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                answer, code = json.loads(response.read()), response.status
        except urllib.error.HTTPError as error:
            answer, code = json.loads(error.read()), error.code
        assert code == status, (method, path, code, answer)
        return answer

    def cli(self, *args: str) -> str:
        command = [sys.executable, "-m", "comparimg", *args, "--url", self.base]
        command += ["--token-file", str(self.daemon.workdir / "token")]
        result = subprocess.run(command, env=self.daemon.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout


def agreement(api: Api, pairs: list[dict]) -> tuple[float, str]:
    """Return (the share of pairs whose verdict is the reviewer's label, the model that judged)."""
    verdicts = [api("GET", f"/api/model/verdict?a={p['id_a']}&b={p['id_b']}") for p in pairs]
    sources = {v["source"] for v in verdicts}
    assert len(sources) == 1, sources
    agreed = [v["label"] == reviewer_label(p["kind"]) for v, p in zip(verdicts, pairs, strict=True)]
    return float(np.mean(agreed)), sources.pop()


def label_as_reviewer(api: Api, pairs: list[dict]) -> None:
    """Label each pair through ordinary decisions: bursts "not duplicates"; a copy trashed, its original
    kept (it must share a group with it: the reviewer decides on groups they see)."""
    groups = api("GET", "/api/groups?limit=500")["groups"]
    group_of = {m["file_id"]: g["id"] for g in groups for m in g["members"]}
    for pair in pairs:
        if pair["kind"] in BURSTS:
            body = {"action": "not_duplicates", "file_ids": [pair["id_a"], pair["id_b"]]}
            api("POST", "/api/decisions", body, status=201)
            continue
        group = group_of[pair["id_b"]]
        api("POST", "/api/decisions", {"action": "keep", "file_id": pair["id_a"]}, status=201)
        body = {"action": "trash", "file_id": pair["id_b"], "group_id": group}
        api("POST", "/api/decisions", body, status=201)
    assert api("POST", "/api/decisions/apply")["refused"] == 0


@pytest.mark.timeout(400)
def test_a_reviewers_taste_is_learned_adopted_used_and_restorable(tmp_path):
    photos = tmp_path / "photos"
    pairs = make_pairs(photos)
    files = {p for pair in pairs for p in (pair["a"], pair["b"])}
    (tmp_path / "state").mkdir()
    trash = json.dumps(str(tmp_path / "trash"))
    daemon = Daemon(tmp_path / "state", [photos], extra_yaml=f"sorter:\n  trash: {trash}\n")
    daemon.start(wait_ready=False).wait_log("event=ready")
    api = Api(daemon)

    def settled() -> bool:
        status = api("GET", "/api/status")
        return status["state"] == "watching" and status["counts"]["files_ok"] == len(files)

    wait_for(settled, 300, 0.2, message="the pictures were not all indexed and grouped")
    rows = index_rows(daemon.index)
    for pair in pairs:
        pair["id_a"], pair["id_b"] = rows[str(pair["a"])][0], rows[str(pair["b"])][0]

    groups = api("GET", "/api/groups?limit=500")["groups"]
    grouped = {frozenset(m["file_id"] for m in g["members"]) for g in groups}
    shares_group = [any({p["id_a"], p["id_b"]} <= g for g in grouped) for p in pairs]
    order = np.random.default_rng(3).permutation(len(pairs))
    # The reviewer trashes only copies they see beside their original, and each copy once.
    eligible = [i for i in order if pairs[i]["kind"] in BURSTS or shares_group[i]]
    labelled = [pairs[i] for i in eligible[:LABELLED]]
    others = [pairs[i] for i in order if pairs[i] not in labelled]
    assert len(labelled) == LABELLED and len(others) >= 30

    before, source = agreement(api, others)
    assert source == "shipped"
    label_as_reviewer(api, labelled)
    model = api("GET", "/api/model")
    assert model["labels"]["total"] == LABELLED, model["labels"]

    printed = api.cli("model", "retrain")
    outcome = api("GET", "/api/model")["retraining"]["last"]
    after, source = agreement(api, others)
    figures, shipped_key = outcome["figures"], "shipped_validation_duplicate_score"
    bursts = sum(p["kind"] in BURSTS for p in labelled)
    print(
        f"\nreviewer (bursts are different): {LABELLED} labels through the API ({bursts} bursts);"
        f" agreement on their {len(others)} other pairs {before:.3f} -> {after:.3f} (hash features:"
        f" the daemon stores no embedding yet); shipped validation duplicate score"
        f" {figures['current'][shipped_key]} -> {figures['candidate'][shipped_key]};"
        f" {printed.strip()}"
    )
    assert outcome["adopted"], outcome["reason"]
    assert source == "user"
    assert after > before
    assert figures["candidate"][shipped_key] >= figures["current"][shipped_key]
    status = api.cli("model", "status")
    assert "verifier in use: user" in status and "previous: shipped" in status

    api.cli("model", "restore")
    restored, source = agreement(api, others)
    assert source == "shipped" and restored == before
    api.cli("model", "restore")  # restoring again brings the retrained model back
    again, source = agreement(api, others)
    assert source == "user" and again == after

    daemon.stop()
    daemon.start(wait_ready=False).wait_log("event=ready", count=2)  # it loads the adopted model
    api = Api(daemon)
    model = api("GET", "/api/model")
    assert model["verifier"]["source"] == "user" and model["verifier"]["problem"] is None

    # A damaged user model: the daemon starts on the shipped one and says so.
    daemon.stop()
    stored = daemon.workdir / "models" / f"verifier-{model['verifier']['sha256']}.json"
    stored.write_text(stored.read_text().replace('"learning_rate":', '"learning_rate": 1e-9, "x":', 1))
    daemon.start(wait_ready=False).wait_log("event=ready", count=3)
    api = Api(daemon)
    model = api("GET", "/api/model")
    assert model["verifier"]["source"] == "shipped" and str(stored) in model["verifier"]["problem"]
    assert any(str(stored) in error for error in api("GET", "/api/status")["last_errors"])
    assert "event=user_model_unusable" in daemon.log()
