"""`comparimg scan` and `comparimg check-config` as a user runs them: a real process, real files."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from comparimg.model import ORIENTATIONS
from daemon_harness import drop_file_permissions_prefix

REPO = Path(__file__).resolve().parents[1]
MEMBER_KEYS = {"path", "size", "width", "height", "format", "distance", "orientation", "suggested", "verdict"}
MEMBER_KEYS |= {"confidence", "reason"}


def comparimg(env, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "comparimg", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def photos_dir(tmp_path, write_photo):
    root = tmp_path / "photos"
    write_photo(root / "a.jpg", "astronaut")
    write_photo(root / "deep" / "er" / "a-small.png", "astronaut", size=(128, 128))
    write_photo(root / "b.jpg", "coffee")
    (root / "broken.jpg").write_text("this is text, not a JPEG")
    return root


def test_scan_writes_the_duplicates_json_of_the_contract(cli_env, photos_dir, tmp_path):
    out = tmp_path / "out" / "duplicates.json"
    result = comparimg(cli_env, "scan", photos_dir, "--json", out, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    assert "4 files, 3 hashed, 0 skipped unchanged" in result.stdout and "1 groups" in result.stdout
    document = json.loads(out.read_text())
    assert set(document) == {"version", "groups", "similar", "errors", "stats"} and document["version"] == 1
    assert document["similar"] == []
    (group,) = document["groups"]
    assert set(group) == {"id", "kind", "members"} and group["kind"] == "near"
    assert all(set(m) == MEMBER_KEYS for m in group["members"])
    assert [m["path"] for m in group["members"]] == [
        str(photos_dir / "a.jpg"),
        str(photos_dir / "deep" / "er" / "a-small.png"),
    ]
    assert [m["suggested"] for m in group["members"]] == ["keep", "trash"]
    assert {m["orientation"] for m in group["members"]} <= set(ORIENTATIONS)
    assert group["members"][1]["width"] == 128 and group["members"][1]["format"] == "PNG"
    (error,) = document["errors"]
    assert error["path"] == str(photos_dir / "broken.jpg") and error["error"]
    assert document["stats"]["files"] == 4 and document["stats"]["errors"] == 1


def test_relative_paths_come_out_absolute(cli_env, photos_dir):
    result = comparimg(cli_env, "scan", "photos", "--json", "-", cwd=photos_dir.parent)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert all(Path(m["path"]).is_absolute() for g in document["groups"] for m in g["members"])
    assert "4 files" in result.stderr  # the summary moves to stderr when the JSON goes to stdout


def test_no_duplicates_is_still_success(cli_env, tmp_path, write_photo):
    write_photo(tmp_path / "p" / "one.jpg", "rocket")
    write_photo(tmp_path / "p" / "two.jpg", "moon")
    result = comparimg(cli_env, "scan", tmp_path / "p", "--json", tmp_path / "d.json")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "d.json").read_text())["groups"] == []


def test_a_kept_index_skips_unchanged_files(cli_env, photos_dir, tmp_path):
    db = tmp_path / "state" / "index.sqlite3"
    first = comparimg(cli_env, "scan", photos_dir, "--index", db)
    second = comparimg(cli_env, "scan", photos_dir, "--index", db, "--json", tmp_path / "d.json")
    assert first.returncode == second.returncode == 0
    assert "4 files, 0 hashed, 4 skipped unchanged" in second.stdout
    assert len(json.loads((tmp_path / "d.json").read_text())["groups"]) == 1


def test_a_path_that_does_not_exist_is_exit_2(cli_env, tmp_path):
    result = comparimg(cli_env, "scan", tmp_path / "nowhere", "--json", tmp_path / "d.json")
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr and str(tmp_path / "nowhere") in result.stderr
    assert not (tmp_path / "d.json").exists()


@pytest.mark.parametrize("option", [("--threshold", "33"), ("--threshold", "x"), ("--workers", "-1")])
def test_bad_options_are_exit_2(cli_env, tmp_path, option):
    result = comparimg(cli_env, "scan", tmp_path, *option)
    assert result.returncode == 2 and option[0] in result.stderr


def test_an_index_that_cannot_be_created_is_a_failure(cli_env, photos_dir, tmp_path):
    (tmp_path / "file").write_text("")
    result = comparimg(cli_env, "scan", photos_dir, "--index", tmp_path / "file" / "index.sqlite3")
    assert result.returncode == 1 and "comparimg scan:" in result.stderr


def test_a_file_that_is_not_an_index_is_a_failure_without_traceback(cli_env, photos_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("not a database " * 100)
    result = comparimg(cli_env, "scan", photos_dir, "--index", tmp_path / "notes.txt")
    assert result.returncode == 1
    assert "comparimg scan: cannot" in result.stderr and "Traceback" not in result.stderr


def test_errors_of_files_given_by_name_are_listed(cli_env, photos_dir):
    files = [photos_dir / "a.jpg", photos_dir / "broken.jpg", photos_dir / "b.jpg"]
    result = comparimg(cli_env, "scan", *files, "--json", "-")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["stats"]["errors"] == 1
    assert [error["path"] for error in document["errors"]] == [str(photos_dir / "broken.jpg")]


def test_a_root_that_cannot_be_read_is_a_failure_before_scanning(cli_env, photos_dir, tmp_path):
    prefix = drop_file_permissions_prefix()
    locked = tmp_path / "locked"
    locked.mkdir()
    db = tmp_path / "index.sqlite3"
    os.chmod(locked, 0)
    try:
        command = ["scan", photos_dir, locked, "--index", db, "--json", tmp_path / "d.json"]
        result = subprocess.run(
            [*prefix, sys.executable, "-m", "comparimg", *map(str, command)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.chmod(locked, 0o755)
    assert result.returncode == 1
    assert f"comparimg scan: cannot read {locked}: permission denied" in result.stderr
    assert not db.exists() and not (tmp_path / "d.json").exists()


def test_a_root_that_is_neither_folder_nor_file_is_a_failure(cli_env, tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    result = comparimg(cli_env, "scan", fifo, "--json", "-")
    assert result.returncode == 1 and f"cannot scan {fifo}: not a folder or a file" in result.stderr


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_unwritable_json_target_is_reported_before_scanning(cli_env, photos_dir, tmp_path, where):
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    target = tmp_path / "file" / "d.json" if where == "under a file" else tmp_path / "folder"
    db = tmp_path / "index.sqlite3"
    result = comparimg(cli_env, "scan", photos_dir, "--index", db, "--json", target)
    assert result.returncode == 1
    assert f"comparimg scan: cannot write --json {target}: " in result.stderr
    assert not db.exists()  # the scan did not start
    assert result.stdout == ""


def test_check_config_accepts_the_example(cli_env):
    result = comparimg(cli_env, "check-config", REPO / "config" / "comparimg.example.yaml")
    assert result.returncode == 0, result.stderr


def test_check_config_shows_every_setting_in_effect(cli_env, tmp_path):
    from comparimg.config import documented_keys, load_settings, settings_to_dict

    partial = tmp_path / "partial.yaml"
    partial.write_text("matching:\n  threshold: 4\nhttp:\n  listen: 127.0.0.1:9999\n")
    result = comparimg(cli_env, "check-config", partial)
    assert result.returncode == 0, result.stderr
    first, rest = result.stdout.split("\n", 1)
    assert first == f"ok: {partial}"
    shown = yaml.safe_load(rest)
    assert shown["matching"]["threshold"] == 4 and shown["http"]["listen"] == "127.0.0.1:9999"
    assert shown["watch"]["settle_seconds"] == 2.0  # left out of the file: its default is shown
    for key_path in documented_keys():
        section, _, key = key_path.replace("roots[]", "roots").partition(".")
        holder = shown[section][0] if section == "roots" else shown[section]
        assert not key or key in holder, key_path
    assert shown == settings_to_dict(load_settings(partial))  # what the daemon would run with


def test_check_config_without_a_file_shows_what_run_reads(cli_env, tmp_path):
    env = {key: value for key, value in cli_env.items() if not key.startswith("XDG_")}
    env.pop("STATE_DIRECTORY", None)
    env["HOME"] = str(tmp_path)
    assert comparimg(env, "check-config").stdout.startswith("ok: <defaults>\n")
    saved = tmp_path / ".local" / "state" / "comparimg" / "config.yaml"  # what PATCH /api/config saves
    saved.parent.mkdir(parents=True)
    saved.write_text("matching:\n  threshold: 6\n")
    result = comparimg(env, "check-config")
    first, rest = result.stdout.split("\n", 1)
    assert first == f"ok: {saved}" and yaml.safe_load(rest)["matching"]["threshold"] == 6


def test_check_config_rejects_a_bad_file_with_78(cli_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("matching:\n  threshold: 99\n")
    result = comparimg(cli_env, "check-config", bad)
    assert result.returncode == 78
    assert str(bad) in result.stderr and "matching.threshold" in result.stderr and "99" in result.stderr


def test_check_config_reports_every_error_of_a_file_at_once(cli_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("matching:\n  threshold: 99\nwatch:\n  observer: fancy\nhttp:\n  listen: nowhere\n")
    result = comparimg(cli_env, "check-config", bad)
    assert result.returncode == 78 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"comparimg: {bad}: at 'matching.threshold': must be at most 32 (got 99)",
        f"comparimg: {bad}: at 'watch.observer': expected one of 'auto', 'inotify' or 'polling' "
        "(got 'fancy')",
        f"comparimg: {bad}: at 'http.listen': expected HOST:PORT with a port from 0 to 65535, e.g. "
        "127.0.0.1:8765 (got 'nowhere')",
    ]


def test_no_command_prints_help_and_exit_2(cli_env):
    result = comparimg(cli_env)
    assert result.returncode == 2 and "scan" in result.stderr


def test_a_terminal_gets_a_progress_line_on_stderr(cli_env, photos_dir, tmp_path):
    import os
    import pty
    import select

    leader, follower = pty.openpty()
    shown = b""
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "comparimg", "scan", str(photos_dir)],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        follower = -1
        while True:  # read while it runs: Linux may drop what is left in a pty once its last user exits
            ready, _, _ = select.select([leader], [], [], 60)
            chunk = _read_available(leader) if ready else b""
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=120)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert process.returncode == 0
    assert b"files," in shown and b"hashed" in shown, shown
    assert b"4 files" in stdout


def _read_available(fd: int) -> bytes:
    import os

    try:
        return os.read(fd, 65536)
    except OSError:  # EIO once the terminal's other side is closed and drained
        return b""


def test_a_scan_killed_midway_resumes_from_a_sound_index(cli_env, tmp_path):
    import os
    import signal
    import sqlite3
    import time

    import numpy as np
    from PIL import Image

    root = tmp_path / "many"
    root.mkdir()
    rng = np.random.default_rng(7)
    for i in range(300):
        Image.fromarray((rng.random((24, 32)) * 255).astype("uint8")).save(root / f"{i:03d}.png")
    db = tmp_path / "index.sqlite3"
    process = subprocess.Popen(
        [sys.executable, "-m", "comparimg", "scan", str(root), "--index", str(db), "--workers", "1"],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _indexed_files(db) < 20:  # wait for a condition (rows committed), not for a duration
            assert process.poll() is None, "the scan ended before it could be killed"
            assert time.monotonic() < deadline, "no rows were committed within a minute"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    done_before = _indexed_files(db)
    resumed = comparimg(cli_env, "scan", root, "--index", db)
    assert resumed.returncode == 0, resumed.stderr
    assert f"300 files, {300 - done_before} hashed, {done_before} skipped unchanged" in resumed.stdout
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*), count(DISTINCT path) FROM files").fetchone() == (300, 300)


def _indexed_files(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
