"""The index file kept whole: a zero-length or damaged index is refused (the daemon exits 65 naming it),
a clean stop leaves a checked backup that restores the decisions, and one daemon per index (exit 75)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from comparimg.index import (
    IndexDamaged,
    IndexInUse,
    backup_index,
    backup_path_of,
    lock_index,
    open_index,
    verify_index,
)
from comparimg.service import EXIT_ALREADY_RUNNING, EXIT_INDEX_DAMAGED
from daemon_harness import Daemon, env_with_package, photo_bytes, scan_into

PAGE = 4096


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(12):
        (folder / f"{seed}.jpg").write_bytes(photo_bytes(seed, side=128))
    (folder / "copy-of-0.jpg").write_bytes(photo_bytes(0, side=128))
    return folder


@pytest.fixture
def scanned(tmp_path, root) -> Path:
    """A real index of the photos, written by `comparimg scan`."""
    return scan_into([root], tmp_path / "scanned.sqlite3")


def damage_pages(path: Path, first: int, count: int) -> None:
    """Overwrite `count` pages of the file from page `first` (1-based) with random bytes."""
    with open(path, "r+b") as handle:
        handle.seek((first - 1) * PAGE)
        handle.write(os.urandom(count * PAGE))


def start_refused(daemon: Daemon, timeout: float = 60) -> int:
    """Start the daemon and return its exit status; fail if it is still running after `timeout`."""
    daemon.start(wait_ready=False)
    try:
        return daemon.process.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.kill()
        raise AssertionError(f"the daemon started instead of refusing:\n{daemon.log()[-3000:]}") from None


# ---- refusing a file that is not a sound index ------------------------------------------------------------


def test_a_zero_length_index_is_refused_not_opened_as_empty(tmp_path):
    path = tmp_path / "index.sqlite3"
    path.touch()
    with pytest.raises(IndexDamaged, match=r"index\.sqlite3: it is empty \(0 bytes\)"):
        open_index(path)
    with pytest.raises(IndexDamaged, match="empty"):
        verify_index(path)
    assert path.stat().st_size == 0  # left as found, for whoever recovers it


def test_a_missing_index_is_still_created_fresh_and_private(tmp_path):
    path = tmp_path / "state" / "index.sqlite3"
    with open_index(path) as index:
        assert index.schema_version() > 0
    verify_index(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(os.listdir(path.parent)) == ["index.sqlite3"]  # no temp file left behind


def test_an_sqlite_file_of_another_program_is_refused(tmp_path):
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text)")
    conn.close()
    with pytest.raises(IndexDamaged, match="without a ComparImg schema version"):
        open_index(path)
    with pytest.raises(IndexDamaged, match="without a ComparImg schema version"):
        verify_index(path)


def test_damaged_pages_of_a_copy_are_found_by_the_start_check(tmp_path, scanned):
    pages = scanned.stat().st_size // PAGE
    assert pages >= 6, "the test needs an index of several pages"
    verify_index(scanned)
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(scanned, copy)
    damage_pages(copy, 3, pages - 3)  # the header page is left whole: only a full check sees this
    with pytest.raises(IndexDamaged, match=r"copy\.sqlite3: it is damaged"):
        verify_index(copy)
    header = tmp_path / "header.sqlite3"
    shutil.copyfile(scanned, header)
    damage_pages(header, 1, 1)
    with pytest.raises(IndexDamaged, match="not an SQLite database"):
        open_index(header)


def test_the_daemon_refuses_a_zero_length_index_and_exits_65(tmp_path, root, scanned):
    daemon = Daemon(tmp_path, [root])
    daemon.index.touch()
    assert start_refused(daemon) == EXIT_INDEX_DAMAGED == 65
    assert f"comparimg: cannot use the index {daemon.index}: it is empty (0 bytes)" in daemon.log()
    assert daemon.index.stat().st_size == 0


def test_the_daemon_refuses_an_index_with_damaged_pages(tmp_path, root, scanned):
    daemon = Daemon(tmp_path, [root])
    shutil.copyfile(scanned, daemon.index)
    damage_pages(daemon.index, 3, daemon.index.stat().st_size // PAGE - 3)
    assert start_refused(daemon) == EXIT_INDEX_DAMAGED
    assert f"comparimg: cannot use the index {daemon.index}: it is damaged" in daemon.log()
    assert "docs/recovery.md" in daemon.log()


# ---- backups -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def decide_keep(daemon: Daemon, file_id: int) -> None:
    command = [sys.executable, "-m", "comparimg", "decide", "keep", str(file_id)]
    command += ["--config", str(daemon.config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env_with_package())
    assert done.returncode == 0, done.stderr


def decisions_in(index: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT action, file_id FROM decisions ORDER BY id").fetchall()
    conn.close()
    return rows


def test_a_clean_stop_leaves_a_backup_that_restores_the_decisions(tmp_path, root):
    daemon = Daemon(tmp_path, [root])
    daemon.write_config(daemon.config_text().replace("127.0.0.1:0", f"127.0.0.1:{free_port()}"))
    daemon.start()
    try:
        file_id = daemon.rows()[str(root / "3.jpg")][0]
        decide_keep(daemon, file_id)
    finally:
        assert daemon.stop() == 0
    backup = backup_path_of(daemon.index)
    assert "event=backed_up" in daemon.log()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    verify_index(backup)
    assert decisions_in(backup) == [("keep", file_id)]

    daemon.index.write_bytes(b"")  # the index is lost
    daemon.log_path = tmp_path / "refused.log"
    assert start_refused(daemon) == EXIT_INDEX_DAMAGED
    # docs/recovery.md: copy the backup over the index, remove the old -wal and -shm files, start
    for leftover in (Path(f"{daemon.index}-wal"), Path(f"{daemon.index}-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(backup, daemon.index)
    daemon.log_path = tmp_path / "restored.log"
    daemon.start()
    try:
        assert decisions_in(daemon.index) == [("keep", file_id)]
    finally:
        assert daemon.stop() == 0


def test_backups_rotate_and_a_damaged_copy_keeps_the_older_ones(tmp_path, scanned):
    generations = [backup_index(scanned) for _ in range(4)]
    assert generations[0] == backup_path_of(scanned)
    kept = sorted(p.name for p in tmp_path.iterdir() if ".backup" in p.name)
    assert kept == [f"{scanned.name}.backup", f"{scanned.name}.backup.1", f"{scanned.name}.backup.2"]
    newest = backup_path_of(scanned).read_bytes()
    damage_pages(scanned, 3, scanned.stat().st_size // PAGE - 3)
    with pytest.raises(IndexDamaged, match="older backups are kept"):
        backup_index(scanned)
    assert backup_path_of(scanned).read_bytes() == newest
    assert not [p for p in tmp_path.iterdir() if p.name.endswith("backup-new")]


# ---- one daemon per index --------------------------------------------------------------------------------


def test_the_lock_names_the_holder_and_is_released(tmp_path):
    index = tmp_path / "index.sqlite3"
    held = lock_index(index)
    with pytest.raises(IndexInUse, match=rf"pid {os.getpid()}\b"):
        lock_index(index)
    held.release()
    lock_index(index).release()
    assert stat.S_IMODE((tmp_path / "index.sqlite3.lock").stat().st_mode) == 0o600


def second_daemon_on(first: Daemon, workdir: Path, root: Path) -> Daemon:
    workdir.mkdir()
    second = Daemon(workdir, [root])
    second.index = first.index
    second.write_config()
    return second


def test_a_second_daemon_on_the_same_index_is_refused_naming_the_first(tmp_path, root):
    first = Daemon(tmp_path, [root]).start()
    try:
        second = second_daemon_on(first, tmp_path / "second", root)
        assert start_refused(second) == EXIT_ALREADY_RUNNING == 75
        assert f"in use by another comparimg daemon (pid {first.process.pid}" in second.log()
        first.check_alive()
    finally:
        assert first.stop() == 0
    second.log_path = second.workdir / "after.log"
    second.start()  # the lock went with the first daemon
    assert second.stop() == 0


def test_a_killed_daemon_does_not_keep_the_lock(tmp_path, root):
    first = Daemon(tmp_path, [root]).start()
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    second = second_daemon_on(first, tmp_path / "second", root)
    second.start()
    assert second.stop() == 0


def test_a_scan_into_a_running_daemons_index_is_refused(tmp_path, root):
    daemon = Daemon(tmp_path, [root]).start()
    try:
        command = [sys.executable, "-m", "comparimg", "scan", str(root), "--index", str(daemon.index)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env_with_package())
        assert done.returncode != 0
        assert f"in use by another comparimg daemon (pid {daemon.process.pid}" in done.stderr
        daemon.check_alive()
    finally:
        assert daemon.stop() == 0
    scan_into([root], daemon.index)  # free again once the daemon stopped
