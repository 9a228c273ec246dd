"""The sorter under real faults: an edit saved during a cross-file-system copy, folders swapped for symlinks
while applies run, other users' freedesktop trash folders, crashes between journal steps, unreadable sources.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import journal, open_index
from comparimg.model import ImageError, Refused
from comparimg.sorter import Sorter, SortRequest
from comparimg.sorter.files import identity_of
from symlink_swapper import swapping

SHM = Path("/dev/shm")
NOBODY = 65534


def make_sorter(tmp: Path, trash: Path, layout: str = "folder", hash_file=content_hash_file) -> Sorter:
    index = open_index(tmp / "index.sqlite3")
    settings = SorterSettings(trash_dir=trash, trash_layout=layout, move_targets={})
    return Sorter(index.db, (tmp / "root",), settings, hash_file)


def queue(sorter: Sorter, path: Path, action: str = "trash") -> SortRequest:
    """Queue a decision for `path` in the sorter's index; return the request that applies it."""
    identity, digest = identity_of(path), content_hash_file(str(path))
    fields = {
        "action": action,
        "path": str(path),
        "device": identity.device,
        "inode": identity.inode,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "content_hash": digest,
    }
    decision_id = journal.add_decision(sorter.db, fields)
    return SortRequest(action, path, identity, digest, decision_id=decision_id)


def files_under(*folders: Path) -> list[Path]:
    """Return every regular file below `folders`, never following a symlink."""
    found = []
    for folder in folders:
        for parent, _, names in os.walk(folder, followlinks=False):
            found += [Path(parent, n) for n in names if stat.S_ISREG(os.lstat(Path(parent, n)).st_mode)]
    return found


def holders(data: bytes, *folders: Path) -> list[Path]:
    return [path for path in files_under(*folders) if path.read_bytes() == data]


# --- 1. an edit saved while the file is copied to another file system ------------------------------------


def test_an_edit_saved_during_a_cross_file_system_trash_is_kept(tmp_path, photo, shm_trash):
    edited = os.urandom(310_000)
    edits = []

    def edit_in_place() -> None:  # what an image editor saving over the photo does
        with open(photo, "r+b") as handle:
            handle.write(edited)
            handle.flush()
            os.fsync(handle.fileno())

    def hash_then_edit(path: str) -> str:
        digest = content_hash_file(path)
        if ".comparimg-" in os.path.realpath(path) and not edits:  # the verified copy: the user saves now
            writer = threading.Thread(target=edit_in_place)
            writer.start()
            writer.join()
            edits.append(path)
        return digest

    sorter = make_sorter(tmp_path, shm_trash, hash_file=hash_then_edit)
    request = queue(sorter, photo)
    result = sorter.apply(request)
    assert edits, "the copy was never verified"
    assert result.state == "refused" and "edited" in result.reason
    assert photo.read_bytes() == edited
    assert files_under(shm_trash) == []
    decision = journal.get_decision(sorter.db, request.decision_id)
    assert decision.state == "refused" and decision.reason == result.reason
    assert journal.open_actions(sorter.db) == []


def test_a_file_replaced_by_an_atomic_save_during_the_copy_is_kept(tmp_path, photo, shm_trash):
    saved = os.urandom(200_000)
    saves = []

    def hash_then_save(path: str) -> str:
        digest = content_hash_file(path)
        if ".comparimg-" in os.path.realpath(path) and not saves:
            temp = photo.with_name(".a.jpg.tmp")
            temp.write_bytes(saved)
            os.replace(temp, photo)  # write a temp file, rename it over the photo
            saves.append(path)
        return digest

    sorter = make_sorter(tmp_path, shm_trash, hash_file=hash_then_save)
    result = sorter.apply(queue(sorter, photo))
    assert result.state == "refused"
    assert photo.read_bytes() == saved
    assert files_under(shm_trash) == []


# --- 2. folders swapped for symlinks while applies run ---------------------------------------------------


def test_a_trash_folder_swapped_for_a_symlink_during_applies_sends_nothing_outside(tmp_path):
    outside = tmp_path / "outside"
    (outside / "2020").mkdir(parents=True)
    sources = []
    for number in range(40):
        path = tmp_path / "root" / "2020" / f"p{number}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(2000) + bytes([number]))
        sources.append((path, path.read_bytes()))
    trash = tmp_path / "trash"
    (trash / "root" / "2020").mkdir(parents=True)
    decoy = trash / "root.decoy"
    decoy.symlink_to(outside)
    sorter = make_sorter(tmp_path, trash)
    results = []
    with swapping(trash / "root", decoy) as counts:
        for path, _ in sources:
            try:
                results.append(sorter.apply(queue(sorter, path)))
            except Refused as refusal:
                results.append(refusal)
    assert counts["swaps"] > 100
    assert files_under(outside) == []
    assert journal.open_actions(sorter.db) == []
    for path, data in sources:  # every file's bytes in exactly one place, inside the root or the trash
        assert len(holders(data, tmp_path / "root", trash)) == 1, path
    done = [r for r in results if not isinstance(r, Exception) and r.state == "done"]
    for result in done:
        undone = sorter.undo(result.action_id)
        assert undone.state == "done"
    assert files_under(outside) == []
    for path, data in sources:
        assert path.read_bytes() == data


def test_a_source_folder_swapped_for_a_symlink_never_moves_the_file_behind_it(tmp_path):
    outside = tmp_path / "outside"
    secrets = []
    for number in range(40):
        secret = outside / f"p{number}.jpg"
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_bytes(b"secret" + bytes([number]))
        secrets.append((secret, secret.read_bytes()))
    album = tmp_path / "root" / "album"
    album.mkdir(parents=True)
    for number in range(40):
        (album / f"p{number}.jpg").write_bytes(os.urandom(2000))
    decoy = tmp_path / "root" / "album.decoy"
    decoy.symlink_to(outside)
    sorter = make_sorter(tmp_path, tmp_path / "trash")
    requests = [queue(sorter, album / f"p{number}.jpg") for number in range(40)]
    with swapping(album, decoy):
        for request in requests:
            with contextlib.suppress(Refused):
                sorter.apply(request)
    for secret, data in secrets:
        assert secret.read_bytes() == data
    assert not [p for p in files_under(tmp_path / "trash") if p.read_bytes().startswith(b"secret")]


# --- 3. freedesktop trash folders made by someone else ---------------------------------------------------


def test_a_trash_folder_pre_created_by_another_user_is_not_used(tmp_path, photo):
    if os.getuid() != 0:
        pytest.skip("needs root to make a folder owned by another user")
    top = tmp_path / "top"
    planted = top / f".Trash-{os.getuid()}"
    (planted / "files").mkdir(parents=True)
    for folder in (planted, planted / "files"):
        os.chown(folder, 1234, 1234)
        os.chmod(folder, 0o777)
    sorter = make_sorter(tmp_path, top, layout="freedesktop")
    request = queue(sorter, photo)
    with pytest.raises(Refused, match="belongs to uid 1234"):
        sorter.apply(request)
    assert photo.exists()
    assert files_under(top) == []


def test_a_world_writable_own_trash_folder_is_not_used(tmp_path, photo):
    top = tmp_path / "top"
    planted = top / f".Trash-{os.getuid()}"
    planted.mkdir(parents=True)
    os.chmod(planted, 0o777)
    sorter = make_sorter(tmp_path, top, layout="freedesktop")
    with pytest.raises(Refused, match="written by other users"):
        sorter.apply(queue(sorter, photo))
    assert photo.exists() and files_under(top) == []


def test_a_symlinked_own_trash_folder_is_not_followed(tmp_path, photo):
    top, elsewhere = tmp_path / "top", tmp_path / "elsewhere"
    top.mkdir()
    elsewhere.mkdir(mode=0o700)
    (top / f".Trash-{os.getuid()}").symlink_to(elsewhere)
    sorter = make_sorter(tmp_path, top, layout="freedesktop")
    with pytest.raises(Refused):
        sorter.apply(queue(sorter, photo))
    assert photo.exists() and files_under(elsewhere) == []


def test_the_shared_trash_with_the_sticky_bit_is_used_with_a_private_uid_folder(tmp_path, photo):
    shared = tmp_path / "top" / ".Trash"
    shared.mkdir(parents=True)
    os.chmod(shared, 0o1777)
    sorter = make_sorter(tmp_path, tmp_path / "top", layout="freedesktop")
    result = sorter.apply(queue(sorter, photo))
    assert result.state == "done"
    home = shared / str(os.getuid())
    assert Path(result.dest) == home / "files" / "a.jpg"
    assert (home / "info" / "a.jpg.trashinfo").exists()
    info = os.lstat(home)
    assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    sorter.undo(result.action_id)
    assert photo.exists() and files_under(tmp_path / "top") == []


@pytest.mark.parametrize("kind", ["no sticky bit", "symlink"])
def test_a_shared_trash_that_fails_the_checks_is_skipped_for_a_private_own_folder(tmp_path, photo, kind):
    top = tmp_path / "top"
    top.mkdir()
    if kind == "symlink":
        sticky = tmp_path / "sticky"
        sticky.mkdir()
        os.chmod(sticky, 0o1777)
        (top / ".Trash").symlink_to(sticky)
    else:
        (top / ".Trash").mkdir()
        os.chmod(top / ".Trash", 0o777)
    sorter = make_sorter(tmp_path, top, layout="freedesktop")
    result = sorter.apply(queue(sorter, photo))
    own = top / f".Trash-{os.getuid()}"
    assert Path(result.dest) == own / "files" / "a.jpg"
    assert stat.S_IMODE(os.lstat(own).st_mode) == 0o700
    assert files_under(top / ".Trash") == [] if kind != "symlink" else files_under(tmp_path / "sticky") == []


# --- 7. a crash between the journal's steps ---------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import open_index, journal
from comparimg.model import FileIdentity
from comparimg.sorter import Sorter, SortRequest
tmp, mode, number = sys.argv[1:]
index = open_index(Path(tmp) / "index.sqlite3")
settings = SorterSettings(trash_dir=Path(tmp) / "trash", trash_layout="freedesktop")
sorter = Sorter(index.db, (Path(tmp) / "root",), settings, content_hash_file)
if mode == "apply":
    row = journal.get_decision(index.db, int(number))
    identity = FileIdentity(row.device, row.inode, row.size, row.mtime_ns)
    request = SortRequest("trash", Path(row.path), identity, row.content_hash, decision_id=row.id)
    sorter.apply(request)
else:
    sorter.undo(int(number))
"""


def run_child(tmp: Path, mode: str, number: int, crash_at: str, cli_env: dict) -> int:
    env = {**cli_env, "COMPARIMG_CRASH_AT": crash_at}
    run = subprocess.run([sys.executable, "-c", CHILD, str(tmp), mode, str(number)], env=env, timeout=60)
    return run.returncode


def test_a_crash_after_recording_leaves_action_original_and_decision_consistent(tmp_path, photo, cli_env):
    sorter = make_sorter(tmp_path, tmp_path / "trash", layout="freedesktop")
    request = queue(sorter, photo)
    assert run_child(tmp_path, "apply", request.decision_id, "recorded", cli_env) == 70
    decision = journal.get_decision(sorter.db, request.decision_id)
    trash_action = journal.get_action(sorter.db, decision.action_id or 0) if decision.action_id else None
    assert decision.state == "applied" and trash_action is not None and trash_action.state == "done"
    assert run_child(tmp_path, "undo", trash_action.id, "recorded", cli_env) == 70
    sorter.recover()
    actions = journal.list_actions(sorter.db)
    restore = next(a for a in actions if a.kind == "restore")
    assert restore.state == "done"
    assert journal.get_action(sorter.db, trash_action.id).state == "undone"
    assert journal.get_decision(sorter.db, request.decision_id).state == "undone"
    assert photo.exists() and not list((tmp_path / "trash").rglob("*.trashinfo"))


# --- 11. unreadable sources ---------------------------------------------------------------------------------


def test_a_source_that_cannot_be_read_is_refused_with_its_reason(tmp_path, photo):
    def failing_disk(path: str) -> str:
        raise ImageError("cannot read file: Input/output error")

    sorter = make_sorter(tmp_path, tmp_path / "trash", hash_file=failing_disk)
    request = queue(sorter, photo)
    result = sorter.apply(request)
    assert result.state == "refused" and "Input/output error" in result.reason
    assert journal.open_actions(sorter.db) == []
    assert journal.get_decision(sorter.db, request.decision_id).state == "refused"
    assert photo.exists()


APPLY_AS_NOBODY = """
import json, os, sys
from pathlib import Path
from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import open_index, journal
from comparimg.sorter import Sorter
from comparimg.service.decision_queue import apply_queue
tmp = Path(sys.argv[1])
index = open_index(tmp / "index.sqlite3")
sorter = Sorter(index.db, (tmp / "root",), SorterSettings(trash_dir=tmp / "trash"), content_hash_file)
os.setgroups([])
os.setgid(65534)
os.setuid(65534)  # from here on the sorter runs as "nobody" (the interpreter lives in root's home)
sorter.recover()
print(json.dumps(apply_queue(index, sorter, None)))
"""


@pytest.fixture
def shared_tmp():
    """A temp folder other users can reach (pytest's own is private to root), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="comparimg-nobody-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_one_unreadable_queued_source_is_refused_and_the_rest_applied(shared_tmp, cli_env):
    if os.getuid() != 0:
        pytest.skip("needs root to run the sorter as another user")
    root = shared_tmp / "root"
    root.mkdir()
    blocked, fine = root / "blocked.jpg", root / "fine.jpg"
    blocked.write_bytes(os.urandom(5000))
    fine.write_bytes(os.urandom(5000))
    sorter = make_sorter(shared_tmp, shared_tmp / "trash")
    first, second = queue(sorter, blocked), queue(sorter, fine)
    sorter.db.conn.close()
    for parent, folders, names in os.walk(shared_tmp):
        for name in [".", *folders, *names]:
            os.chown(Path(parent, name), NOBODY, NOBODY)
    os.chmod(blocked, 0)  # its owner can no longer read it
    outcomes = []
    for _ in range(2):  # the second apply (as after a restart) finds nothing left to do
        run = subprocess.run(
            [sys.executable, "-c", APPLY_AS_NOBODY, str(shared_tmp)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        outcomes.append(json.loads(run.stdout))
    by_id = {o["decision_id"]: o for o in outcomes[0]}
    assert by_id[first.decision_id]["state"] == "refused"
    assert "Permission denied" in by_id[first.decision_id]["reason"]
    assert by_id[second.decision_id]["state"] == "applied"
    assert outcomes[1] == []
    index = open_index(shared_tmp / "index.sqlite3")
    actions = journal.list_actions(index.db)
    assert journal.open_actions(index.db) == []
    assert [a.state for a in actions if a.state == "done"] == ["done"]
    assert blocked.exists() and not fine.exists()


def test_open_actions_left_behind_do_not_become_extra_done_actions(tmp_path, photo, cli_env):
    sorter = make_sorter(tmp_path, tmp_path / "trash")
    request = queue(sorter, photo)
    child = CHILD.replace('trash_layout="freedesktop"', 'trash_layout="folder"')
    for _ in range(3):  # three applies that died after journaling their intent, never recovered
        env = {**cli_env, "COMPARIMG_CRASH_AT": "intent"}
        args = [sys.executable, "-c", child, str(tmp_path), "apply", str(request.decision_id)]
        assert subprocess.run(args, env=env, timeout=60).returncode == 70
    assert len(journal.open_actions(sorter.db)) == 3
    assert sorter.apply(request).state == "done"
    sorter.recover()  # as at the next start
    done = [a for a in journal.list_actions(sorter.db) if a.state == "done"]
    assert len(done) == 1
    assert journal.open_actions(sorter.db) == []
    assert journal.get_decision(sorter.db, request.decision_id).state == "applied"
    assert not photo.exists()


def test_a_name_taken_in_the_trash_after_the_check_leaves_no_stray_trashinfo(tmp_path, photo):
    own = tmp_path / "top" / f".Trash-{os.getuid()}"

    def hash_then_take_the_name(path: str) -> str:
        taken = own / "files" / "a.jpg"
        if not taken.exists():  # another program trashes an a.jpg between the sorter's check and its link
            taken.write_bytes(b"someone else's")
        return content_hash_file(path)

    sorter = make_sorter(tmp_path, tmp_path / "top", layout="freedesktop", hash_file=hash_then_take_the_name)
    result = sorter.apply(queue(sorter, photo))
    assert result.state == "done" and Path(result.dest).name == "a (1).jpg"
    assert (own / "files" / "a.jpg").read_bytes() == b"someone else's"
    assert sorted(p.name for p in (own / "info").iterdir()) == ["a (1).jpg.trashinfo"]
