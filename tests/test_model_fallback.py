"""A model that cannot be used never stops the daemon: it starts, names the file, runs in mode `hash` and says
so in `/api/status` (issue 12, "Bad input"). Nothing is lost: copies are still found. The embedding index
loads off the writer thread, and files linked meanwhile get their embedding neighbours once it is ready.

Every case damages or removes *copies* of the shipped model files, read through `$COMPARIMG_SHIPPED_MODELS`
(`comparimg.shipped_files`), never the package's own files. Real daemon processes, real files, real SQLite,
the real shipped ONNX model under onnxruntime in the workers.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from comparimg.embedding import SHIPPED_MANIFEST as EMBEDDER_MANIFEST
from comparimg.embedding import SHIPPED_MODEL as EMBEDDER_MODEL
from comparimg.index import open_index
from comparimg.model import ModelError
from comparimg.scanner.embedding_load import PAUSE_ENV
from comparimg.shipped_files import SHIPPED_MODELS_ENV
from comparimg.verdicts.store import ModelStore, VerifierHolder
from comparimg.verdicts.verifier import SHIPPED_MANIFEST, SHIPPED_MODEL, SHIPPED_PAIRS
from daemon_harness import Daemon, api_call, api_get, env_with_package, scan_into, wait_for
from test_model_stage import bright_failing_encoder

SHIPPED_FILES = (EMBEDDER_MODEL, EMBEDDER_MANIFEST, SHIPPED_MODEL, SHIPPED_MANIFEST, SHIPPED_PAIRS)


@pytest.fixture
def shipped_copies(tmp_path) -> Path:
    """Return a folder holding copies of every shipped model file (to damage; the package's stay whole)."""
    folder = tmp_path / "shipped-models"
    folder.mkdir()
    for packaged in SHIPPED_FILES:
        shutil.copyfile(packaged, folder / packaged.name)
    return folder


def damage(path: Path, how: str) -> None:
    """Given a copy of a model file, make it unusable: `missing`, `truncated` or `flipped` (one byte)."""
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


def copies_tree(root: Path, write_photo) -> set[str]:
    """Write two copies of one photo and another photo; return the paths of the copies."""
    write_photo(root / "coffee.jpg", "coffee")
    write_photo(root / "coffee-small.png", "coffee", size=(200, 133))
    write_photo(root / "rocket.jpg", "rocket")
    return {str(root / "coffee.jpg"), str(root / "coffee-small.png")}


def assert_runs_in_hash_mode_naming(daemon: Daemon, broken: Path, copies: set[str]) -> dict:
    """Given a started daemon whose model cannot be used and the broken file, check what it says and that
    it still finds the copies; return its status."""
    _, status = api_get(daemon, "/api/status")
    assert status["state"] == "degraded"
    model = status["model"]
    assert (model["wanted_mode"], model["mode"], model["dimensions"]) == ("hash+model", "hash", None)
    assert model["error"].startswith(f"model file {broken}: ")
    assert [p["task"] for p in status["problems"]] == ["model"]
    assert str(broken) in status["problems"][0]["reason"]
    assert "event=model_unavailable mode=hash+model using=hash" in daemon.log()
    wait_for(lambda: daemon.grouped_paths() == [copies], message="the copies grouped in hash mode")
    return status


@pytest.mark.parametrize(
    "name, how, reason",
    [
        (SHIPPED_MODEL.name, "truncated", "damaged or replaced"),
        (SHIPPED_MODEL.name, "missing", "missing"),
        (SHIPPED_MANIFEST.name, "missing", "manifest cannot be read"),
    ],
)
def test_a_damaged_shipped_verifier_starts_the_daemon_in_hash_mode_and_says_so(
    tmp_path, write_photo, shipped_copies, name, how, reason
):
    root = tmp_path / "photos"
    copies = copies_tree(root, write_photo)
    broken = shipped_copies / name
    damage(broken, how)
    env = {SHIPPED_MODELS_ENV: str(shipped_copies)}
    daemon = Daemon(tmp_path, [root], env=env, mode="hash+model").start()
    status = assert_runs_in_hash_mode_naming(daemon, broken, copies)
    assert reason in status["model"]["error"]
    assert f"event=verifier_unavailable file={broken}" in daemon.log()
    assert "user_model_unusable" not in daemon.log()  # no user model is involved
    assert any(str(broken) in line for line in status["last_errors"])
    _, described = api_get(daemon, "/api/model")
    assert described["verifier"]["source"] is None and str(broken) in described["verifier"]["problem"]
    port = re.findall(r"event=http_listening host=\S+ port=(\d+)", daemon.log())[-1]
    shown = subprocess.run(
        [sys.executable, "-m", "comparimg", "model", "status", "--url", f"http://127.0.0.1:{port}",
         "--token-file", str(daemon.workdir / "token")],
        capture_output=True, text=True, env=env_with_package(), timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0 and "verifier in use: none" in shown.stdout, shown.stderr
    assert str(broken) in shown.stdout
    code, body = api_call(daemon, "POST", "/api/model/retrain", {})
    assert code == 409 and str(broken) in body["error"]["message"]
    assert daemon.stop() == 0
    with open_index(daemon.index) as index:  # no encoder ran: mode hash reads no embedding
        assert not index.embeddings_of([row.id for row in index.iter_files_under(str(root))])


@pytest.mark.parametrize(
    "name, how, reason",
    [
        (EMBEDDER_MODEL.name, "flipped", "damaged or replaced"),
        (EMBEDDER_MANIFEST.name, "truncated", "manifest is unusable"),
    ],
)
def test_a_damaged_shipped_embedder_starts_the_daemon_in_hash_mode_and_says_so(
    tmp_path, write_photo, shipped_copies, name, how, reason
):
    root = tmp_path / "photos"
    copies = copies_tree(root, write_photo)
    broken = shipped_copies / name
    damage(broken, how)
    daemon = Daemon(tmp_path, [root], env={SHIPPED_MODELS_ENV: str(shipped_copies)}, mode="hash+model")
    status = assert_runs_in_hash_mode_naming(daemon.start(), broken, copies)
    assert reason in status["model"]["error"] and status["model"]["model"] == "shipped"
    assert daemon.stop() == 0


@pytest.mark.parametrize("how", ["missing", "input shape"])
def test_a_users_model_missing_or_of_another_input_shape_starts_the_daemon_in_hash_mode(
    tmp_path, write_photo, how
):
    root = tmp_path / "photos"
    copies = copies_tree(root, write_photo)
    encoder = tmp_path / "encoder.onnx"
    if how == "input shape":
        bright_failing_encoder(encoder)  # takes 64×64; configured as 224 below
    extra = f"model:\n  path: {encoder}\n  input_size: 224\n"
    daemon = Daemon(tmp_path, [root], extra_yaml=extra, mode="hash+model").start()
    status = assert_runs_in_hash_mode_naming(daemon, encoder, copies)
    expected = "missing" if how == "missing" else "takes tensor(float) ['batch', 3, 64, 64]"
    assert expected in status["model"]["error"] and status["model"]["model"] == str(encoder)
    assert daemon.stop() == 0


def test_an_encoder_failing_on_one_picture_leaves_that_file_hashed_and_the_rest_embedded(
    tmp_path, write_photo, photos
):
    from PIL import Image

    root = tmp_path / "photos"
    bright = write_photo(root / "bright.png", "astronaut", size=(200, 160))
    for name in ("coffee", "rocket"):  # dark copies: every pixel below 128, which the encoder takes
        Image.fromarray(photos[name] // 3).resize((200, 160)).save(root / f"{name}-dark.png")
    Image.fromarray(photos["coffee"] // 3).resize((120, 96)).save(root / "coffee-dark-small.png")
    encoder = bright_failing_encoder(tmp_path / "bright_fails.onnx")
    extra = f"model:\n  path: {encoder}\n  input_size: 64\n  mean: [0, 0, 0]\n  std: [0.25, 0.25, 0.25]\n"
    daemon = Daemon(tmp_path, [root], extra_yaml=extra, mode="hash+model").start()
    _, status = api_get(daemon, "/api/status")
    assert status["model"]["mode"] == "hash+model" and status["model"]["error"] is None
    assert status["state"] != "degraded" and status["problems"] == []
    failed = [line for line in daemon.log().splitlines() if "event=embedding_failed" in line]
    assert len(failed) == 1 and str(bright) in failed[0] and str(encoder) in failed[0]
    dark_copies = {str(root / "coffee-dark.png"), str(root / "coffee-dark-small.png")}
    wait_for(lambda: daemon.grouped_paths() == [dark_copies], message="the dark copies grouped")
    assert daemon.stop() == 0
    with open_index(daemon.index) as index:
        rows = {Path(r.path).name: r for r in index.iter_files_under(str(root))}
        embedded = index.embeddings_of([r.id for r in rows.values()])
    assert all(r.state == "ok" and r.fingerprint.phash for r in rows.values())  # every file hashed
    assert {name for name, r in rows.items() if r.id not in embedded} == {"bright.png"}


def test_comparimg_scan_with_a_damaged_shipped_verifier_scans_in_hash_mode_and_says_so(
    tmp_path, write_photo, shipped_copies
):
    root = tmp_path / "photos"
    copies_tree(root, write_photo)
    broken = shipped_copies / SHIPPED_MODEL.name
    damage(broken, "flipped")
    out = tmp_path / "out.json"
    command = [sys.executable, "-m", "comparimg", "scan", str(root), "--json", str(out), "--workers", "1"]
    env = env_with_package({SHIPPED_MODELS_ENV: str(shipped_copies)})
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"comparimg scan: model file {broken}: " in done.stderr
    assert "damaged or replaced; scanning in hash mode" in done.stderr
    assert "1 groups (1 duplicates)" in done.stdout
    assert len(json.loads(out.read_text())["groups"]) == 1


def test_the_store_raises_for_a_damaged_shipped_verifier_and_the_holder_then_has_none(
    tmp_path, shipped_copies, monkeypatch, caplog
):
    monkeypatch.setenv(SHIPPED_MODELS_ENV, str(shipped_copies))
    store = ModelStore(tmp_path / "models")
    assert store.load().source == "shipped"  # the copies, whole, load
    damage(shipped_copies / SHIPPED_MODEL.name, "truncated")
    with pytest.raises(ModelError) as raised:
        store.load()
    assert raised.value.path == str(shipped_copies / SHIPPED_MODEL.name)
    assert "user_model_unusable" not in caplog.text
    holder = VerifierHolder.unavailable(raised.value)
    for ask in (holder, lambda: holder.current, lambda: holder.in_use):
        with pytest.raises(ModelError, match="damaged or replaced"):
            ask()
    assert holder.describe()["source"] is None and str(raised.value) in holder.describe()["problem"]


def square_crop(source: Path, target: Path) -> Path:
    """Save a 1:1 crop of 80 % of the photo's height, off centre: a copy its hashes do not find (the crop
    trims more than the window hashes cover) and its embedding does."""
    from PIL import Image

    with Image.open(source) as image:
        width, height = image.size
        side = int(min(width, height) * 0.8)
        left = (width - min(width, height)) // 2 + width // 10
        image.crop((left, 0, left + side, side)).save(target, quality=85)
    return target


def needs_link(index: Path, path: Path) -> int | None:
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute("SELECT needs_link FROM files WHERE path = ?", (str(path),)).fetchone()
    conn.close()
    return None if row is None else row[0]


def test_the_embedding_index_loads_in_the_background_and_files_linked_meanwhile_get_their_neighbours(
    tmp_path, write_photo
):
    root = tmp_path / "photos"
    original = write_photo(root / "astronaut.jpg", "astronaut")
    write_photo(root / "coffee.jpg", "coffee")
    scan_into([root], tmp_path / "index.sqlite3", mode="hash+model")  # an index with embeddings
    # The loader waits as long as a million embeddings would take: the daemon must not wait with it.
    daemon = Daemon(tmp_path, [root], mode="hash+model", env={PAUSE_ENV: "600"}).start()
    _, status = api_get(daemon, "/api/status")
    assert status["model"]["embedding_index"] == "loading"
    assert status["model"]["waiting_for_embeddings"] == 0
    copy = square_crop(original, tmp_path / "square.jpg").rename(root / "astronaut-square.jpg")
    daemon.wait_log(f"event=indexed path={str(root / 'astronaut-square.jpg')!r}", timeout=60)
    _, status = api_get(daemon, "/api/status")
    assert (status["model"]["embedding_index"], status["model"]["waiting_for_embeddings"]) == ("loading", 1)
    assert status["state"] == "watching"  # loading is not a problem
    assert needs_link(daemon.index, copy) == 1  # linked by its hashes, not yet by its embedding
    assert daemon.grouped_paths() == []  # the hashes alone do not find the crop
    assert daemon.stop() == 0  # the stop does not wait for the loader; the crop keeps its mark
    assert needs_link(daemon.index, copy) == 1

    daemon.env[PAUSE_ENV] = "3"
    daemon.log_path.rename(tmp_path / "first-run.log")  # a fresh log: the API's port is read from it
    daemon.start()  # its start-up reconcile links the crop by its hashes while the index loads
    daemon.wait_log("event=embedding_index_loaded", timeout=60)
    daemon.wait_log("event=embedding_neighbours_linked files=1", timeout=30)
    expected = [{str(original), str(copy)}]
    wait_for(lambda: daemon.grouped_paths() == expected, message="the crop found by its embedding")
    _, status = api_get(daemon, "/api/status")
    assert (status["model"]["embedding_index"], status["model"]["waiting_for_embeddings"]) == ("ready", 0)
    assert needs_link(daemon.index, copy) == 0
    assert daemon.stop() == 0
