"""The model stage in the pipeline: embeddings and quality made by the hashing workers from the same decode,
stored in the index, read back, and the safe fallback to mode `hash` when the model cannot run.

Real photos, real worker processes running the real shipped ONNX model (or small ONNX encoders built here),
a real SQLite index, the real daemon for the status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from comparimg import hashing
from comparimg.config import parse_settings
from comparimg.embedding import (
    SHIPPED_MODEL,
    Embedder,
    EmbedderSpec,
    cosine,
    pack_embedding,
    unpack_embedding,
)
from comparimg.hashing.embedder_input import embed_picture
from comparimg.hashing.quality import picture_quality
from comparimg.index import MIGRATIONS, open_index
from comparimg.model import ConfigError, FileIdentity, Fingerprint, Quality
from comparimg.pipeline import embedder_spec, pipeline_changes
from comparimg.scanner import MatchOptions, Scanner, ScanOptions
from comparimg.scanner.model_stage import start_model_stage
from comparimg.workers import WorkerLimits, WorkerPool
from daemon_harness import Daemon, api_get, descendants, wait_for

FP16_TOLERANCE = 2e-3  # float16 keeps ~3 decimal digits of values below 1


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


@pytest.fixture
def tree(tmp_path, write_photo) -> Path:
    """Photos: a small PNG (decoded whole), a JPEG, a camera-sized JPEG and its resized copy."""
    root = tmp_path / "photos"
    write_photo(root / "astronaut.png", "astronaut", size=(300, 240))
    write_photo(root / "coffee.jpg", "coffee", size=(400, 300))
    write_photo(root / "chelsea-big.jpg", "chelsea", size=(2400, 1800))
    write_photo(root / "chelsea-small.jpg", "chelsea", size=(800, 600))
    return root


def scan(index, pool, root, embedder: EmbedderSpec | None):
    return Scanner(index, pool, ScanOptions(match=MatchOptions(), embedder=embedder)).scan([root])


def stored(index, root: Path) -> dict[str, object]:
    """Return {file name: its row} of the files below root."""
    return {os.path.basename(r.path): r for r in index.iter_files_under(str(root))}


def whole_picture_embedding(embedder: Embedder, path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return embed_picture(embedder, image.convert("RGB"))


def test_embeddings_stored_are_the_embedders_on_the_same_picture(tmp_path, pool, tree, embedder):
    with open_index(tmp_path / "index.sqlite3") as index:
        stage = start_model_stage(pool, index, "hash+model", EmbedderSpec())
        assert (stage.mode_in_use, stage.dimensions, stage.error) == ("hash+model", 1280, "")
        report = scan(index, pool, tree, stage.embedder)
        rows = stored(index, tree)
        assert report.hashed == 4 and all(r.state == "ok" for r in rows.values())
        vectors = {name: unpack_embedding(r.fingerprint.embedding) for name, r in rows.items()}
        # A picture the worker decodes whole (short side below twice the input size): the very same vector.
        png = whole_picture_embedding(embedder, tree / "astronaut.png")
        assert np.abs(vectors["astronaut.png"] - png).max() < FP16_TOLERANCE
        # A JPEG decoded whole as YCbCr, resized, then made RGB: the same picture but for 8-bit rounding,
        # which the int8 model feels more than the float one did (0.996 measured; > 0.998 with the float one).
        assert cosine(vectors["coffee.jpg"], whole_picture_embedding(embedder, tree / "coffee.jpg")) > 0.99
        # A camera-sized JPEG decoded at 1/4 scale: close to the full picture's, and to its resized copy's.
        big = whole_picture_embedding(embedder, tree / "chelsea-big.jpg")
        assert cosine(vectors["chelsea-big.jpg"], big) > 0.99
        assert cosine(vectors["chelsea-big.jpg"], vectors["chelsea-small.jpg"]) > 0.97
        assert cosine(vectors["chelsea-big.jpg"], vectors["coffee.jpg"]) < 0.6
        for row in rows.values():
            assert row.fingerprint.quality is not None and row.fingerprint.quality.sharpness > 0
            assert 0 < row.fingerprint.quality.exposure <= 1

        ids, batch = next(index.embedding_batches(batch=10))
        assert batch.dtype == np.float16 and batch.shape == (4, 1280)
        assert list(ids) == sorted(r.id for r in rows.values())
        by_id = index.embeddings_of([*ids, 999])
        assert set(by_id) == set(ids.tolist())
        first = rows["astronaut.png"]
        assert by_id[first.id] == first.fingerprint.embedding


def test_the_gray_decode_is_the_same_with_the_colour_kept(tree):
    """Mode `hash` decodes JPEGs as grayscale; the model stage decodes them as YCbCr, whose Y plane is that
    grayscale: the same hashes at the same JPEG scale. A JPEG whose 1/8 scale is too small for the model's
    224 pixels is decoded at a larger scale: its hashes may move by a few bits."""
    for name in ("chelsea-big.jpg", "astronaut.png"):  # 1/8 scale is ≥ 224 pixels; not a JPEG
        plain = hashing.fingerprint_file(str(tree / name))
        with_model = hashing.fingerprint_for_index(str(tree / name), False, EmbedderSpec()).fingerprint
        assert with_model.embedding and with_model.quality is not None
        assert (with_model.phash, with_model.windows) == (plain.phash, plain.windows)
        assert plain.embedding == b"" and plain.quality is None
    plain = hashing.fingerprint_file(str(tree / "coffee.jpg"))  # 1/2 scale for hashing, whole for the model
    with_model = hashing.fingerprint_for_index(str(tree / "coffee.jpg"), False, EmbedderSpec()).fingerprint
    assert (plain.phash[0] ^ with_model.phash[0]).bit_count() <= 4


def onnxruntime_loaded(pool: WorkerPool) -> list[bool]:
    """Return, for each worker of the pool, whether it imported onnxruntime."""
    check = "'onnxruntime' in __import__('sys').modules"
    return [pool.run(eval, check) for _ in range(pool.size)]


def test_mode_hash_loads_nothing_of_the_model_in_the_workers(tmp_path, tree):
    with WorkerPool(1, WorkerLimits(timeout_seconds=20)) as pool, open_index(tmp_path / "i.sqlite3") as index:
        stage = start_model_stage(pool, index, "hash", EmbedderSpec())
        assert (stage.mode_in_use, stage.embedder) == ("hash", None)
        scan(index, pool, tree, stage.embedder)
        assert all(not r.fingerprint.embedding for r in stored(index, tree).values())
        assert onnxruntime_loaded(pool) == [False]
        stage = start_model_stage(pool, index, "hash+model", EmbedderSpec())  # the positive control
        assert onnxruntime_loaded(pool) == [True]
        scan(index, pool, tree, stage.embedder)  # read again for their embeddings, the model loaded once
        loaded = "__import__('importlib').import_module('comparimg.hashing.embedder_input')._LOADED"
        # The spec as configured and as pinned name one Embedder: the worker loaded the model once.
        assert pool.run(eval, f"(len({loaded}), len({{id(e) for e in {loaded}.values()}}))") == (2, 1)


def bright_failing_encoder(path: Path) -> Path:
    """Write an ONNX encoder (input 64×64, fed pixel / 255 / 0.25) that fails on any picture with a pixel
    of 128 or more: it looks up the brightest value, floored, in a table of two entries. The mean picture
    it is probed with at load (all zeros) passes."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("ReduceMax", ["image"], ["brightest"], keepdims=0),
        helper.make_node("Floor", ["brightest"], ["floored"]),
        helper.make_node("Cast", ["floored"], ["slot"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "slot"], ["offset"]),
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Add", ["flat", "offset"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bright_failing_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, None)],
        [helper.make_tensor("table", TensorProto.FLOAT, [2], [1.0, 2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_encoder_failing_on_one_picture_keeps_its_fingerprint(tmp_path, pool, write_photo, caplog):
    root = tmp_path / "photos"
    bright = write_photo(root / "bright.png", "astronaut", size=(200, 160))
    for name in ("coffee", "rocket"):
        with Image.open(write_photo(root / f"{name}.png", name, size=(200, 160))) as image:
            Image.eval(image, lambda value: value // 3).save(root / f"{name}-dark.png")  # all below 128
    model = bright_failing_encoder(tmp_path / "bright_fails.onnx")
    spec = EmbedderSpec(str(model), 64, (0.0, 0.0, 0.0), (0.25, 0.25, 0.25))
    with open_index(tmp_path / "index.sqlite3") as index:
        stage = start_model_stage(pool, index, "hash+model", spec)
        assert (stage.mode_in_use, stage.dimensions) == ("hash+model", 3)
        report = scan(index, pool, root, stage.embedder)
        rows = stored(index, root)
        assert report.errors == 0 and all(r.state == "ok" for r in rows.values())
        failed = [name for name, row in rows.items() if not row.fingerprint.embedding]
        assert failed == ["bright.png", "coffee.png", "rocket.png"]
        assert len(unpack_embedding(rows["coffee-dark.png"].fingerprint.embedding)) == 3
        assert rows["bright.png"].fingerprint.phash == hashing.fingerprint_file(str(bright)).phash
        assert rows["bright.png"].fingerprint.quality is not None
        warnings = [r.getMessage() for r in caplog.records if "event=embedding_failed" in r.getMessage()]
        assert len(warnings) == 3 and any("bright.png" in w and "bright_fails.onnx" in w for w in warnings)
        again = scan(index, pool, root, stage.embedder)  # tried again, still failing, nothing else read
        assert (again.rehashed, again.unchanged) == (3, 2)


def make_hash_only(index) -> None:
    """Turn the index into what mode `hash` (or the code before the model stage) left: no embeddings."""
    with index.transaction():
        index.db.execute("DELETE FROM embeddings")
        index.db.execute("UPDATE files SET sharpness = NULL, exposure = NULL")
        index.db.execute("DELETE FROM meta WHERE key = 'embedder'")


def marks_and_groups(index, root: Path) -> tuple[list[list[str]], set[tuple[int, int]]]:
    names = {r.id: os.path.basename(r.path) for r in index.iter_files_under(str(root))}
    groups = sorted(sorted(names[m.file_id] for m in g.group.members) for g in index.iter_groups())
    marks = set(index.db.execute("SELECT file_a, file_b FROM not_duplicates").fetchall())
    return groups, marks


def test_an_old_index_is_migrated_and_its_files_embedded_once_keeping_ids_groups_and_marks(
    tmp_path, pool, tree
):
    path = tmp_path / "index.sqlite3"
    with open_index(path) as index:
        scan(index, pool, tree, None)
        rows = stored(index, tree)
        with index.transaction():
            pair = sorted((rows["astronaut.png"].id, rows["coffee.jpg"].id))
            index.db.execute("INSERT INTO not_duplicates VALUES (?, ?, 0)", pair)
        before = marks_and_groups(index, tree)
        assert before[0] == [["chelsea-big.jpg", "chelsea-small.jpg"]]
        # What the code before the model stage left: schema 5, no embedding, quality or embedder columns.
        index.db.execute("DROP TABLE embeddings")
        index.db.execute("DROP TABLE pair_labels")  # migration 6, the labels, came in beside the model stage
        for column in ("sharpness", "exposure"):
            index.db.execute(f"ALTER TABLE files DROP COLUMN {column}")
        index.db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    with open_index(path, MIGRATIONS[:5]) as old:
        assert "sharpness" not in old.db["files"].columns_dict and not old.db["embeddings"].exists()

    with open_index(path) as index:
        assert index.schema_version() == MIGRATIONS[-1].version
        assert all(r.lacks_embedding for r in stored(index, tree).values())
        stage = start_model_stage(pool, index, "hash+model", EmbedderSpec())
        pool.take()
        report = scan(index, pool, tree, stage.embedder)
        assert pool.take() == sorted(rows)
        assert (report.hashed, report.rehashed, report.unchanged) == (4, 4, 0)
        after = stored(index, tree)
        assert {n: r.id for n, r in after.items()} == {n: r.id for n, r in rows.items()}
        assert all(len(r.fingerprint.embedding) == 2 * 1280 for r in after.values())
        assert marks_and_groups(index, tree) == before
        again = scan(index, pool, tree, stage.embedder)
        assert (again.hashed, again.unchanged) == (0, 4)
        assert pool.take() == []
        # Back in mode `hash`, the embeddings stay and nothing is read for them.
        assert scan(index, pool, tree, None).hashed == 0


def test_another_model_makes_the_stored_embeddings_go_and_the_files_read_again(tmp_path, pool, tree):
    with open_index(tmp_path / "index.sqlite3") as index:
        shipped = start_model_stage(pool, index, "hash+model", EmbedderSpec())
        scan(index, pool, tree, shipped.embedder)
        model = bright_failing_encoder(tmp_path / "other.onnx")  # fails on these photos: no embedding
        other = start_model_stage(
            pool, index, "hash+model", EmbedderSpec(str(model), 64, (0.0,) * 3, (0.25,) * 3)
        )
        assert other.identity != shipped.identity
        assert all(r.lacks_embedding for r in stored(index, tree).values())
        assert scan(index, pool, tree, other.embedder).rehashed == 4
        same = start_model_stage(
            pool, index, "hash+model", EmbedderSpec(str(model), 64, (0.0,) * 3, (0.25,) * 3)
        )
        assert same.identity == other.identity


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("missing", "missing"),
        ("not a model", "not a model onnxruntime can load"),
        ("sha256", "sha256 [0-9a-f]+ is not the expected"),
        ("input shape", r"takes tensor\(float\)"),
    ],
)
def test_a_model_that_cannot_load_leaves_the_stage_in_hash_mode_naming_the_file(
    tmp_path, pool, damage, reason
):
    path = tmp_path / "encoder.onnx"
    spec = EmbedderSpec(str(path), 224)
    if damage == "not a model":
        path.write_bytes(b"\x08\x07 not an onnx file " * 50)
    elif damage == "sha256":
        path.write_bytes(SHIPPED_MODEL.read_bytes())
        spec = EmbedderSpec(str(path), 224, sha256="0" * 64)
    elif damage == "input shape":
        bright_failing_encoder(path)  # takes 64×64, configured as 224
    with open_index(tmp_path / "index.sqlite3") as index:
        stage = start_model_stage(pool, index, "hash+model", spec)
    assert (stage.wanted, stage.mode_in_use, stage.embedder) == ("hash+model", "hash", None)
    assert stage.error.startswith(f"model file {path}: ")
    assert pytest.importorskip("re").search(reason, stage.error)
    assert stage.as_dict()["mode"] == "hash" and stage.as_dict()["error"] == stage.error


def test_quality_prefers_the_sharp_and_well_exposed_shot(photos):
    gray = np.asarray(Image.fromarray(photos["astronaut"]).convert("L").resize((256, 256)))
    blurred = np.asarray(Image.fromarray(gray).filter(ImageFilter.GaussianBlur(2)))
    dark = (gray // 6).astype(np.uint8)
    sharp, soft, under = picture_quality(gray), picture_quality(blurred), picture_quality(dark)
    assert sharp.sharpness > 3 * soft.sharpness
    assert sharp.exposure > 0.5 > under.exposure
    assert picture_quality(np.zeros((40, 40), np.uint8)).exposure == 0
    assert picture_quality(np.full((40, 40), 128, np.uint8)) == picture_quality(
        np.full((40, 40), 128, np.uint8)
    )
    assert picture_quality(np.full((2, 2), 9, np.uint8)).sharpness == 0


def copies_tree(root: Path, write_photo) -> None:
    write_photo(root / "coffee.jpg", "coffee")
    write_photo(root / "coffee-small.png", "coffee", size=(200, 133))
    write_photo(root / "rocket.jpg", "rocket")


def test_the_daemon_with_a_broken_model_runs_in_hash_mode_degraded_and_still_flags_copies(
    tmp_path, write_photo
):
    root = tmp_path / "photos"
    copies_tree(root, write_photo)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model at all")
    model = f"model:\n  path: {broken}\n"
    daemon = Daemon(tmp_path, [root], extra_yaml=model, mode="hash+model").start()
    _, status = api_get(daemon, "/api/status")
    assert status["state"] == "degraded"
    assert status["model"] == {
        "wanted_mode": "hash+model",
        "mode": "hash",
        "model": str(broken),
        "dimensions": None,
        "error": status["model"]["error"],
        "embedding_index": None,  # mode hash: no embedding neighbours
        "waiting_for_embeddings": 0,
    }
    assert status["model"]["error"].startswith(f"model file {broken}: not a model onnxruntime can load")
    assert [p["task"] for p in status["problems"]] == ["model"]
    assert "event=model_unavailable mode=hash+model using=hash" in daemon.log()
    copies = [{str(root / "coffee.jpg"), str(root / "coffee-small.png")}]
    wait_for(lambda: daemon.grouped_paths() == copies, message="the copies grouped in hash mode")
    assert daemon.stop() == 0


def test_the_daemon_loads_the_model_in_its_workers_only(tmp_path, write_photo):
    root = tmp_path / "photos"
    copies_tree(root, write_photo)
    daemon = Daemon(tmp_path, [root], mode="hash+model").start()
    _, status = api_get(daemon, "/api/status")
    assert status["model"] == {
        "wanted_mode": "hash+model",
        "mode": "hash+model",
        "model": "shipped",
        "dimensions": 1280,
        "error": None,
        "embedding_index": status["model"]["embedding_index"],
        "waiting_for_embeddings": 0,
    }
    assert status["model"]["embedding_index"] in ("loading", "ready")
    assert status["state"] != "degraded" and status["problems"] == []
    assert daemon.process is not None
    parent, *children = descendants(daemon.process.pid)
    assert not loads_onnxruntime(parent)
    assert any(loads_onnxruntime(child) for child in children)
    assert daemon.stop() == 0
    with open_index(daemon.index) as index:
        rows = stored(index, root)
    assert all(len(r.fingerprint.embedding) == 2 * 1280 for r in rows.values())


def loads_onnxruntime(pid: int) -> bool:
    try:
        return "onnxruntime" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:  # gone meanwhile
        return False


def test_the_model_settings_parse_and_bad_ones_name_the_key():
    settings = parse_settings(
        {"matching": {"mode": "model"}, "model": {"path": "enc.onnx", "mean": [0, 0.5, 1]}}
    )
    assert settings.matching.mode == "model" and settings.model.mean == (0.0, 0.5, 1.0)
    spec = embedder_spec(settings.model)
    assert (spec.path, spec.input_size, spec.std, spec.sha256) == (
        str(Path.cwd() / "enc.onnx"),
        224,
        (0.229, 0.224, 0.225),
        None,
    )
    assert embedder_spec(parse_settings({}).model) == EmbedderSpec()  # the shipped model
    assert parse_settings({}).matching.mode == "hash+model"
    for document, key in [
        ({"matching": {"mode": "neural"}}, "matching.mode"),
        ({"model": {"mean": [0.5, 0.5]}}, "model.mean"),
        ({"model": {"std": [0.2, 0, 0.2]}}, r"model.std\[1\]"),
        ({"model": {"sha256": "abc"}}, "model.sha256"),
        ({"model": {"input_size": 8}}, "model.input_size"),
        ({"model": {"path": ""}}, "model.path"),
    ]:
        with pytest.raises(ConfigError, match=f"at '{key}'"):
            parse_settings(document)
    old = parse_settings({})
    assert pipeline_changes(old, parse_settings({"matching": {"mode": "hash"}}))
    assert pipeline_changes(old, parse_settings({"model": {"path": "/m.onnx"}}))
    assert not pipeline_changes(old, parse_settings({"watch": {"settle_seconds": 5}}))


def test_comparimg_scan_embeds_by_default_and_not_in_mode_hash(tmp_path, write_photo, cli_env):
    root = tmp_path / "photos"
    copies_tree(root, write_photo)
    for mode, length in (("hash+model", 2 * 1280), ("hash", 0)):
        index_path = tmp_path / f"{mode}.sqlite3"
        command = [sys.executable, "-m", "comparimg", "scan", str(root), "--index", str(index_path)]
        command += ["--workers", "1"] + ([] if mode == "hash+model" else ["--mode", mode])
        done = subprocess.run(command, capture_output=True, text=True, env=cli_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "1 groups (1 duplicates)" in done.stdout
        with open_index(index_path) as index:
            assert [len(r.fingerprint.embedding) for r in stored(index, root).values()] == [length] * 3


def test_embedding_batches_keep_one_length_and_adopting_a_model_forgets_the_others(tmp_path):
    def fingerprint(seed: int, dimensions: int) -> Fingerprint:
        vector = np.random.default_rng(seed).normal(size=dimensions).astype(np.float32)
        quality = Quality(float(seed), 0.5)
        return Fingerprint(f"{seed:064x}", 10, 10, "PNG", (seed,) * 8, (), pack_embedding(vector), quality)

    with open_index(tmp_path / "index.sqlite3") as index, index.transaction():
        ids = [
            index.upsert_fingerprint(f"/p/{i}.png", "/p", FileIdentity(1, i, 1, 1), fingerprint(i, d), 0.0)
            for i, d in enumerate((8, 8, 5, 8))
        ]
        index.mark_missing([ids[3]])
        batches = list(index.embedding_batches(batch=2))
        assert [list(found) for found, _ in batches] == [
            ids[:2]
        ]  # the odd length and the missing file left out
        assert batches[0][1].shape == (2, 8)
        row = index.file_by_id(ids[1])
        assert row.fingerprint.quality == Quality(1.0, 0.5)
        assert np.allclose(batches[0][1][1], unpack_embedding(row.fingerprint.embedding))
        assert set(index.embeddings_of(ids)) == set(ids)  # any state
        assert index.adopt_embedder("model A") == 4 and index.adopt_embedder("model A") == 0
        assert index.embeddings_of(ids) == {} and index.file_by_id(ids[0]).lacks_embedding
        index.record_file_error("/p/0.png", "/p", FileIdentity(1, 0, 1, 2), "truncated", 1.0)
        assert index.file_by_id(ids[0]).fingerprint is None
