"""Hostile and broken files: each becomes an error with a reason, and the scan goes on.

Crafted files cover the classes of RELIABILITY.md; Pillow's own test images (downloaded once, optional)
add real-world broken files. Crashing and hanging decoders are covered in test_workers.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from comparimg import hashing
from comparimg.export import build_export
from comparimg.index import open_index
from comparimg.model import Fingerprint, ImageError
from comparimg.scanner import Scanner
from comparimg.workers import WorkerLimits, WorkerPool
from daemon_harness import drop_file_permissions_prefix

# Pillow's test images whose outcome we pin: file name -> (name in the scanned tree, expected reason).
PILLOW_CASES = {
    "decompression_bomb.gif": ("bomb.gif", r"pixels|bomb"),
    "broken_data_stream.png": ("broken_data_stream.png", r"."),
    "broken.png": ("broken.png", r"."),
    "hopper.psd": ("hopper-psd.jpg", r"PSD"),
    "negative_layer_count.psd": ("negative-layers-psd.jpg", r"PSD"),
    "timeout-1ee28a249896e05b83840ae8140622de8e648ba9.psd": ("timeout-psd.jpg", r"PSD"),
}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 30_000) -> bytes:
    """A tiny PNG that claims side × side pixels (beyond twice Pillow's MAX_IMAGE_PIXELS)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def bad_tree(tmp_path, write_photo):
    root = tmp_path / "bad"
    good_jpg = write_photo(root / "good.jpg", "astronaut")
    good_png = write_photo(root / "good.png", "coffee")
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(good_jpg.read_bytes()[: good_jpg.stat().st_size // 2])
    (root / "truncated.png").write_bytes(good_png.read_bytes()[: good_png.stat().st_size // 2])
    (root / "random.jpg").write_bytes(os.urandom(4096))
    (root / "text.jpg").write_text("a note, not a picture\n" * 20)
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "drawing.jpg").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (root / "layers.jpg").write_bytes(b"8BPS\x00\x01" + bytes(20))
    shutil.copy(good_png, root / "png-named.jpg")
    (root / "loop").symlink_to(root)
    return root


EXPECTED_REASONS = {
    "empty.jpg": r"empty",
    "truncated.jpg": r"truncat",
    "truncated.png": r"truncat",
    "random.jpg": r"not an image",
    "text.jpg": r"not an image",
    "bomb.png": r"pixels|bomb",
    "drawing.jpg": r"EPS",
    "layers.jpg": r"PSD",
    "loop": r"symbolic link loop",
}


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, WorkerLimits(timeout_seconds=20, memory_limit_mb=1024)) as opened:
        yield opened


def scan_and_export(tmp_path, pool, root):
    with open_index(tmp_path / "index.sqlite3") as index:
        report = Scanner(index, pool).scan([root])
        return report, build_export(index, [str(root)])


def test_every_bad_file_is_an_error_with_a_reason_and_the_rest_is_indexed(tmp_path, pool, bad_tree):
    report, document = scan_and_export(tmp_path, pool, bad_tree)
    errors = {Path(e["path"]).name: e["error"] for e in document["errors"]}
    assert set(errors) == set(EXPECTED_REASONS)
    for name, pattern in EXPECTED_REASONS.items():
        assert errors[name], name
        assert re.search(pattern, errors[name], flags=re.IGNORECASE), (name, errors[name])
    assert report.hashed == 3  # good.jpg, good.png and the PNG named .jpg
    (group,) = document["groups"]
    assert {Path(m["path"]).name for m in group["members"]} == {"good.png", "png-named.jpg"}


def test_a_second_scan_keeps_the_errors_without_reading_again(tmp_path, pool, bad_tree):
    with open_index(tmp_path / "index.sqlite3") as index:
        scanner = Scanner(index, pool)
        scanner.scan([bad_tree])
        again = scanner.scan([bad_tree])
        errors = build_export(index, [str(bad_tree)])["errors"]
    assert again.hashed == 0
    assert len(errors) == len(EXPECTED_REASONS)


def test_unreadable_files_and_folders_are_errors(tmp_path, write_photo, cli_env):
    prefix = drop_file_permissions_prefix()
    root = tmp_path / "perm"
    write_photo(root / "ok.jpg", "rocket")
    write_photo(root / "secret.jpg", "rocket")
    write_photo(root / "locked" / "inside.jpg", "moon")
    os.chmod(root / "secret.jpg", 0)
    os.chmod(root / "locked", 0)
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "comparimg", "scan", str(root), "--json", tmp_path / "d.json"],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.chmod(root / "locked", 0o755)
    assert result.returncode == 0, result.stderr
    document = json.loads((tmp_path / "d.json").read_text())
    errors = {Path(e["path"]).name: e["error"] for e in document["errors"]}
    assert errors == {"secret.jpg": "permission denied", "locked": "permission denied"}
    assert document["stats"]["hashed"] == 1


def test_a_folder_made_unreadable_does_not_mark_its_files_missing(tmp_path, write_photo, cli_env):
    prefix = drop_file_permissions_prefix()
    root = tmp_path / "perm"
    write_photo(root / "locked" / "inside.jpg", "moon")
    db = tmp_path / "index.sqlite3"
    scan = [*prefix, sys.executable, "-m", "comparimg", "scan", str(root), "--index", str(db)]
    assert subprocess.run(scan, env=cli_env, capture_output=True, timeout=120).returncode == 0
    os.chmod(root / "locked", 0)
    try:
        second = subprocess.run(scan, env=cli_env, capture_output=True, text=True, timeout=120)
    finally:
        os.chmod(root / "locked", 0o755)
    assert second.returncode == 0, second.stderr
    assert "0 missing" in second.stdout


@pytest.fixture
def pillow_tree(tmp_path, pillow_test_images):
    root = tmp_path / "pillow"
    root.mkdir()
    for source, (name, _) in PILLOW_CASES.items():
        shutil.copy(pillow_test_images / source, root / name)
    return root


def test_pillows_broken_images_are_errors_with_reasons(tmp_path, pool, pillow_tree):
    _, document = scan_and_export(tmp_path, pool, pillow_tree)
    errors = {Path(e["path"]).name: e["error"] for e in document["errors"]}
    for name, pattern in PILLOW_CASES.values():
        assert name in errors, f"{name} should be an error"
        assert re.search(pattern, errors[name], flags=re.IGNORECASE), (name, errors[name])


def test_every_one_of_pillows_test_images_hashes_or_fails_with_a_reason(pool, pillow_test_images):
    # Hashing only: Pillow's folder holds hundreds of copies of one picture, whose pairwise verification
    # is a matching cost, not a bad-input question.
    images = sorted(
        str(p)
        for p in pillow_test_images.iterdir()
        if p.is_file() and p.suffix.lower() in hashing.SUPPORTED_EXTENSIONS
    )
    outcomes = dict(pool.map_unordered(hashing.fingerprint_file, [(p,) for p in images]))
    assert len(outcomes) == len(images) > 100
    errors = [o for o in outcomes.values() if isinstance(o, ImageError)]
    fingerprints = [o for o in outcomes.values() if isinstance(o, Fingerprint)]
    assert len(errors) + len(fingerprints) == len(images)
    assert all(e.reason and not e.reason.startswith("unexpected") for e in errors), sorted(
        {e.reason for e in errors}
    )
    assert len(fingerprints) > len(errors)
