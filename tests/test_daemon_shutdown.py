"""SIGTERM is prompt whatever the pipeline does (walking, hashing, verifying), and loses nothing.

A run of near-duplicate pictures makes verification (`hashing.verify_pair` in the workers) the long part
of an ingest; the daemon is stopped in the middle of it, must leave within a few seconds, and on the next
start must reach the same groups as a fresh `comparimg scan`, with no file recorded as an error.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from daemon_harness import (
    Daemon,
    env_with_package,
    fresh_index,
    index_rows,
    make_tree,
    present,
    scan_into,
    wait_for,
)

STOP_SECONDS = 3.5  # the target is ~3 s; systemd's TimeoutStopSec is 30 s


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


def write_near_duplicates(folder: Path, photos, count: int = 80) -> list[Path]:
    """Given a folder, write `count` resized, re-encoded and flipped copies of a few real photos."""
    names = ("astronaut", "coffee")
    paths = []
    for i in range(count):
        image = Image.fromarray(photos[names[i % len(names)]])
        side = 480 + 9 * (i // len(names))
        image = image.resize((side, side * image.height // image.width), Image.Resampling.LANCZOS)
        if i % 4 == 1:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"near{i:03d}.{'png' if i % 5 == 0 else 'jpg'}"
        options = {} if path.suffix == ".png" else {"quality": 60 + (i * 7) % 35}
        image.save(path, **options)
        paths.append(path)
    return paths


def groups_in(index: Path) -> list[frozenset[str]]:
    """Given an index file, return its groups as sorted sets of member paths."""
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute(
            "SELECT m.group_id, f.path FROM group_members m JOIN files f ON f.id = m.file_id"
        ).fetchall()
    conn.close()
    groups: dict[int, set[str]] = {}
    for group_id, path in rows:
        groups.setdefault(group_id, set()).add(path)
    return sorted((frozenset(g) for g in groups.values()), key=sorted)


def assert_index_sound(index: Path) -> None:
    with sqlite3.connect(index) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        errors = conn.execute("SELECT path, error FROM files WHERE state = 'error'").fetchall()
    conn.close()
    assert errors == [], f"files recorded as errors: {errors}"


def timed_stop(daemon: Daemon, what: str) -> float:
    started = time.monotonic()
    assert daemon.stop(timeout=60) == 0
    seconds = time.monotonic() - started
    print(f"\nSIGTERM {what}: exited in {seconds:.2f} s")
    return seconds


@pytest.mark.timeout(400)
def test_sigterm_while_verifying_near_duplicates_is_prompt_and_loses_nothing(tmp_path, root, photos):
    daemon = Daemon(tmp_path, [root], settle=0.3).start()
    staging = tmp_path / "staging"
    staging.mkdir()
    paths = write_near_duplicates(staging, photos)
    for path in paths:  # dropped in at once, as a copy would
        path.rename(root / path.name)
    # Stop once hashing is done for some files and verification is under way (no groups stored yet).
    wait_for(lambda: sum(s == "ok" for _, s, _ in daemon.rows().values()) >= 40, timeout=120)
    time.sleep(1.0)
    linked = daemon.log().count("event=indexed")
    assert linked < len(paths), "the stop should come while a batch is being linked"
    seconds = timed_stop(daemon, f"while verifying {len(paths)} near duplicates")
    assert seconds < STOP_SECONDS, daemon.log()[-3000:]
    assert_index_sound(daemon.index)

    daemon.start()  # waits for the start-up reconcile
    wait_for(lambda: len(present(daemon.rows())) == len(paths), timeout=120)
    daemon.wait_log("event=reconcile_done", count=2, timeout=180)  # links what the stop left unlinked
    expected = groups_in(fresh_index([root], tmp_path, timeout=600))
    assert len(expected) >= 2
    wait_for(
        lambda: groups_in(daemon.index) == expected,
        timeout=60,
        message=f"groups differ from a fresh scan: {groups_in(daemon.index)} != {expected}",
    )
    timed_stop(daemon, "when idle")
    assert_index_sound(daemon.index)


@pytest.mark.timeout(300)
def test_sigterm_during_a_long_walk_of_unchanged_files_is_prompt(tmp_path, root):
    make_tree(root, 4000, per_dir=250, side=16)
    daemon = Daemon(tmp_path, [root])
    scan_into([root], daemon.index, timeout=280, workers=None)  # the same index: every file is known
    rows = index_rows(daemon.index)
    assert len(present(rows)) == 4000

    daemon.start(wait_ready=False)  # the start-up reconcile walks 4 000 unchanged files
    daemon.wait_log("event=reconcile_start", timeout=30)
    seconds = timed_stop(daemon, "during a walk of 4 000 unchanged files")
    assert seconds < STOP_SECONDS, daemon.log()[-3000:]
    assert index_rows(daemon.index) == rows  # nothing marked missing, nothing re-hashed
    assert_index_sound(daemon.index)


def needing_link(index: Path) -> int:
    """Given an index file, return how many `ok` files wait to be linked (`needs_link`)."""
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30) as conn:
        (count,) = conn.execute("SELECT count(*) FROM files WHERE needs_link = 1 AND state = 'ok'").fetchone()
    conn.close()
    return count


def logged_at(daemon: Daemon, event: str) -> float:
    """Given a daemon and an event, return when it logged that event first (epoch seconds)."""
    from datetime import datetime

    line = next(line for line in daemon.log().splitlines() if event in line)
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def scan_without_crops(root: Path, index: Path) -> Path:
    """Given a root and an index file, run `comparimg scan --no-crops` (mode `hash`) into it; return it."""
    command = [sys.executable, "-m", "comparimg", "scan", str(root), "--index", str(index), "--no-crops"]
    done = subprocess.run(
        [*command, "--mode", "hash"], capture_output=True, text=True, timeout=300, env=env_with_package()
    )
    assert done.returncode == 0, done.stderr
    return index


@pytest.mark.timeout(600)
def test_sigterm_during_a_long_link_is_prompt_and_the_next_start_links_the_rest(tmp_path, root, photos):
    # A first scan's one link pass over thousands of files: each file's hash query comes before any pair
    # check and these files have none (random pixels, no window hashes), so only the link's own stop checks
    # see the stop. Near duplicates, walked last, give pair checks to do once the stop is missed.
    distinct = 3000
    make_tree(root / "a-tiny", distinct, per_dir=500, side=16)
    (root / "z-near").mkdir()
    near = write_near_duplicates(root / "z-near", photos, count=24)
    total = distinct + len(near)
    daemon = Daemon(tmp_path, [root], settle=0.3)
    daemon.write_config(daemon.config_text().replace("  mode: hash\n", "  mode: hash\n  crops: false\n"))
    daemon.start(wait_ready=False)
    wait_for(lambda: sum(s == "ok" for _, s, _ in daemon.rows().values()) == total, timeout=400)
    time.sleep(0.5)  # every file hashed and committed: the link pass runs now
    assert "event=reconcile_done" not in daemon.log(), "the stop should come while the files are linked"
    seconds = timed_stop(daemon, f"while linking {total} files")
    assert seconds < STOP_SECONDS, daemon.log()[-3000:]
    # The link itself gave up at once (the rest of the exit is the workers' and the backup's): before
    # the link looked at the stop, this took as long as the files left to query (1.0 s quiet, 4 s busy).
    noticed = logged_at(daemon, "event=reconcile_interrupted") - logged_at(daemon, "event=stopping")
    print(f"the link noticed the stop {noticed:.3f} s after it")
    assert noticed < 0.5, daemon.log()[-3000:]
    assert_index_sound(daemon.index)
    assert needing_link(daemon.index) > 0  # what the stop left unlinked is still marked

    before = daemon.log().count("event=reconcile_done")
    daemon.start(wait_ready=False)
    daemon.wait_log("event=reconcile_done", timeout=400, count=before + 1)  # nothing read; the rest linked
    assert needing_link(daemon.index) == 0
    assert " hashed=0 " in daemon.log().split("event=reconcile_done")[-1].splitlines()[0]
    expected = groups_in(scan_without_crops(root / "z-near", tmp_path / "near.sqlite3"))
    assert len(expected) == 2

    def near_groups() -> list[frozenset[str]]:
        return [group for group in groups_in(daemon.index) if str(root / "z-near") in min(group)]

    wait_for(lambda: near_groups() == expected, timeout=60, message="groups as a fresh scan's")
    timed_stop(daemon, "when idle")
