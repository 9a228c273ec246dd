"""SIGKILL the sorter at random moments, a hundred times, while it trashes, undoes and trashes again; after
each kill the next start recovers. At the end: every file's bytes in exactly one place, the index intact,
and every journal entry and decision consistent with where the files are."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import pytest

from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import journal, open_index
from comparimg.model import FileIdentity
from comparimg.sorter import Sorter, SortRequest
from comparimg.sorter.files import identity_of

SHM = Path("/dev/shm")
KILLS = 100
FILES = 12


def sorter_for(tmp: Path, trash: Path) -> Sorter:
    index = open_index(tmp / "index.sqlite3")
    return Sorter(index.db, (tmp / "root",), SorterSettings(trash_dir=trash), content_hash_file)


def queue_present_files(sorter: Sorter, root: Path) -> None:
    """Queue a trash decision for every file in the root that has none queued."""
    queued = {row.path for row in journal.queued_decisions(sorter.db)}
    for path in sorted(root.rglob("*.jpg")):
        if str(path) in queued:
            continue
        identity = identity_of(path)
        fields = {
            "action": "trash",
            "path": str(path),
            "device": identity.device,
            "inode": identity.inode,
            "size": identity.size,
            "mtime_ns": identity.mtime_ns,
            "content_hash": content_hash_file(str(path)),
        }
        journal.add_decision(sorter.db, fields)


def work_forever(tmp: Path, trash: Path) -> None:
    """What the killed process does: recover, then trash everything queued, undo it all, queue again."""
    sorter = sorter_for(tmp, trash)
    sorter.recover()
    while True:
        queue_present_files(sorter, tmp / "root")
        for row in journal.queued_decisions(sorter.db):
            identity = FileIdentity(row.device, row.inode, row.size, row.mtime_ns)
            request = SortRequest("trash", Path(row.path), identity, row.content_hash, None, row.id)
            sorter.apply(request)
        for action in journal.list_actions(sorter.db, limit=1000):
            if action.kind == "trash" and action.state == "done":
                sorter.undo(action.id)


def run_and_kill(tmp: Path, trash: Path, delay: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork is the point: a process to kill
        pid = os.fork()
    if pid == 0:
        try:
            work_forever(tmp, trash)
        finally:
            os._exit(0)
    time.sleep(delay)  # a random moment in the child's work, not a wait for a condition
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def regular_files(*folders: Path) -> list[Path]:
    found = []
    for folder in folders:
        for parent, _, names in os.walk(folder):
            found += [Path(parent, name) for name in names if not name.startswith(".comparimg-")]
    return found


@pytest.fixture(params=["same file system", "across file systems"])
def trash(request, tmp_path):
    if request.param == "same file system":
        yield tmp_path / "trash"
        return
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    folder = SHM / f"comparimg-kill-{os.getpid()}-{tmp_path.name}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(300)
def test_a_hundred_kills_during_apply_and_undo_lose_nothing_and_keep_the_journal_true(tmp_path, trash):
    originals = {}
    for number in range(FILES):
        path = tmp_path / "root" / f"d{number % 3}" / f"p{number}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(150_000 + number))
        originals[content_hash_file(str(path))] = path
    sorter_for(tmp_path, trash).db.conn.close()
    chance = random.Random(13)
    for _ in range(KILLS):
        run_and_kill(tmp_path, trash, chance.uniform(0.005, 0.12))
    sorter = sorter_for(tmp_path, trash)
    sorter.recover()
    assert sorter.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert journal.open_actions(sorter.db) == []
    places = {}
    for path in regular_files(tmp_path / "root", trash):
        places.setdefault(content_hash_file(str(path)), []).append(path)
    assert not list(trash.rglob(".comparimg-*"))
    for digest, original in originals.items():
        assert len(places.get(digest, [])) == 1, (original, places.get(digest))
    assert len(regular_files(tmp_path / "root", trash)) == FILES
    check_journal_matches_files(sorter, places)


def check_journal_matches_files(sorter: Sorter, places: dict[str, list[Path]]) -> None:
    """A file in the trash has exactly one done trash action, whose destination it is; a file in the root
    has none; a done restore reverses an undone action; an applied decision points at a done action."""
    actions = journal.list_actions(sorter.db, limit=100_000)
    by_id = {action.id: action for action in actions}
    done_trash = [a for a in actions if a.kind == "trash" and a.state == "done"]
    trash = Path(sorter.settings.trash_dir)
    for digest, (path,) in places.items():
        holding = [a for a in done_trash if a.content_hash == digest]
        if path.is_relative_to(trash):
            assert [Path(a.dest) for a in holding] == [path], (path, holding)
        else:
            assert holding == [], (path, holding)
    for action in actions:
        if action.kind == "restore" and action.state == "done":
            assert by_id[action.undo_of].state == "undone", action
    for decision in journal.list_decisions(sorter.db, limit=100_000)[0]:
        if decision.state == "applied":
            assert by_id[decision.action_id].state == "done", decision
