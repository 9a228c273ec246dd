"""The token file is never reached through a symlink, and the daemon's own files are private outside systemd
too: index, export, lock, backup and token folders 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from comparimg.web.security import ensure_token
from daemon_harness import Daemon, photo_bytes, wait_for


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_token_path_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("a file of the user's, long enough to pass for a token\n")
    victim.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "token").symlink_to(victim)
    with pytest.raises(PermissionError, match=r"state/token is a symlink"):
        ensure_token(state / "token")
    assert mode_of(victim) == 0o644
    assert victim.read_text().startswith("a file of the user's")


def test_a_dangling_token_symlink_creates_nothing_at_its_target(tmp_path):
    target = tmp_path / "elsewhere" / "planted"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "token").symlink_to(target)
    with pytest.raises(PermissionError, match="symlink"):
        ensure_token(tmp_path / "token")
    assert not target.exists()


def test_a_token_folder_others_may_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="may be written by other users"):
        ensure_token(shared / "token")
    assert not (shared / "token").exists()


def test_a_new_token_is_private_in_a_private_folder_and_a_junk_one_is_replaced(tmp_path):
    path = tmp_path / "new" / "token"
    token = ensure_token(path)
    assert (mode_of(path), mode_of(path.parent)) == (0o600, 0o700)
    assert ensure_token(path) == token
    path.write_bytes(b"\xff\xfe short")
    replaced = ensure_token(path)
    assert replaced != token and len(replaced) >= 32
    assert mode_of(path) == 0o600


def test_the_daemon_makes_its_folders_and_files_private_whatever_the_umask(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(photo_bytes(1))
    (root / "b.jpg").write_bytes(photo_bytes(1))
    daemon = Daemon(tmp_path, [root], settle=0.2)
    daemon.index = tmp_path / "state" / "index.sqlite3"
    daemon.export = tmp_path / "out" / "duplicates.json"
    daemon.write_config()
    old_umask = os.umask(0o022)  # the child inherits it: what a user's shell usually has
    try:
        daemon.start()
    finally:
        os.umask(old_umask)
    try:
        wait_for(lambda: daemon.grouped_paths(), timeout=20, message="no group exported")
    finally:
        assert daemon.stop() == 0
    state = daemon.index.parent
    assert mode_of(state) == 0o700
    assert mode_of(daemon.export.parent) == 0o700
    assert mode_of(tmp_path / "token") == 0o600
    for name in os.listdir(state):
        assert mode_of(state / name) == 0o600, name
    assert {"index.sqlite3", "index.sqlite3.lock", "index.sqlite3.backup"} <= set(os.listdir(state))
    assert mode_of(daemon.export) == 0o600
