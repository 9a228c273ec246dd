"""The sorter on real files: trash, move, suffixes, re-checks, cross-file-system copies, undo, crashes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import journal, open_index
from comparimg.sorter import Sorter, SortRequest
from comparimg.sorter.files import identity_of

SHM = Path("/dev/shm")


def make_sorter(tmp: Path, trash: Path, layout: str = "folder", targets=None) -> Sorter:
    index = open_index(tmp / "index.sqlite3")
    settings = SorterSettings(trash_dir=trash, trash_layout=layout, move_targets=targets or {})
    return Sorter(index.db, (tmp / "root",), settings, content_hash_file)


def request_for(path: Path, kind: str = "trash", target: str | None = None) -> SortRequest:
    return SortRequest(kind, path, identity_of(path), content_hash_file(str(path)), target)


def test_trash_keeps_the_relative_path_and_undo_restores_the_bytes(tmp_path, photo):
    original = photo.read_bytes()
    sorter = make_sorter(tmp_path, tmp_path / "trash")
    result = sorter.apply(request_for(photo))
    assert result.state == "done"
    assert Path(result.dest) == tmp_path / "trash" / "root" / "2020" / "a.jpg"
    assert not photo.exists()
    assert Path(result.dest).read_bytes() == original
    undone = sorter.undo(result.action_id)
    assert undone.state == "done" and undone.kind == "restore"
    assert photo.read_bytes() == original
    assert not Path(result.dest).exists()
    assert journal.get_action(sorter.db, result.action_id).state == "undone"


def test_an_existing_name_in_the_trash_keeps_its_bytes(tmp_path, photo):
    taken = tmp_path / "trash" / "root" / "2020" / "a.jpg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"already here")
    result = make_sorter(tmp_path, tmp_path / "trash").apply(request_for(photo))
    assert result.state == "done"
    assert Path(result.dest).name == "a (1).jpg"
    assert taken.read_bytes() == b"already here"


def test_a_file_changed_after_the_decision_is_not_moved(tmp_path, photo):
    request = request_for(photo)
    photo.write_bytes(b"edited since")
    result = make_sorter(tmp_path, tmp_path / "trash").apply(request)
    assert result.state == "refused"
    assert "changed" in result.reason
    assert photo.read_bytes() == b"edited since"
    assert not (tmp_path / "trash" / "root" / "2020" / "a.jpg").exists()


def test_same_size_same_mtime_different_bytes_is_refused(tmp_path, photo):
    request = request_for(photo)
    stat = photo.stat()
    with open(photo, "r+b") as handle:
        handle.write(b"X")
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = make_sorter(tmp_path, tmp_path / "trash").apply(request)
    assert result.state == "refused" and "content" in result.reason
    assert photo.exists()


def test_move_goes_only_to_a_configured_target(tmp_path, photo):
    from comparimg.model import Refused

    sorter = make_sorter(tmp_path, tmp_path / "trash", targets={"best": tmp_path / "best"})
    with pytest.raises(Refused):
        sorter.apply(request_for(photo, "move", "elsewhere"))
    result = sorter.apply(request_for(photo, "move", "best"))
    assert Path(result.dest) == tmp_path / "best" / "root" / "2020" / "a.jpg"


def test_a_file_outside_the_roots_is_refused(tmp_path):
    from comparimg.model import Refused

    stray = tmp_path / "stray.jpg"
    stray.write_bytes(b"x")
    with pytest.raises(Refused):
        make_sorter(tmp_path, tmp_path / "trash").apply(request_for(stray))
    assert stray.exists()


def test_a_symlinked_folder_inside_a_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.jpg").write_bytes(b"secret")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(outside)
    linked = tmp_path / "root" / "link" / "b.jpg"
    result = make_sorter(tmp_path, tmp_path / "trash").apply(request_for(linked))
    assert result.state == "refused"
    assert (outside / "b.jpg").read_bytes() == b"secret"


def test_freedesktop_layout_writes_trashinfo_and_undo_removes_it(tmp_path, photo):
    sorter = make_sorter(tmp_path, tmp_path / "top", layout="freedesktop")
    result = sorter.apply(request_for(photo))
    base = tmp_path / "top" / f".Trash-{os.getuid()}"
    assert Path(result.dest) == base / "files" / "a.jpg"
    info = (base / "info" / "a.jpg.trashinfo").read_text()
    assert f"Path={photo}" in info
    sorter.undo(result.action_id)
    assert photo.exists()
    assert not (base / "info" / "a.jpg.trashinfo").exists()


def test_trash_on_another_file_system_copies_and_verifies(tmp_path, photo, shm_trash):
    original = photo.read_bytes()
    sorter = make_sorter(tmp_path, shm_trash)
    result = sorter.apply(request_for(photo))
    assert result.state == "done"
    row = journal.get_action(sorter.db, result.action_id)
    assert row.cross_fs is True
    assert Path(result.dest).read_bytes() == original
    assert not photo.exists()
    assert not list(Path(result.dest).parent.glob(".comparimg-*"))
    sorter.undo(result.action_id)
    assert photo.read_bytes() == original


def test_undo_twice_is_a_conflict(tmp_path, photo):
    from comparimg.model import Conflict

    sorter = make_sorter(tmp_path, tmp_path / "trash")
    result = sorter.apply(request_for(photo))
    sorter.undo(result.action_id)
    with pytest.raises(Conflict):
        sorter.undo(result.action_id)


# --- crashes ---------------------------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import open_index
from comparimg.model import FileIdentity
from comparimg.sorter import Sorter, SortRequest
tmp, trash, layout, mode, source, hash_, dev, ino, size, mtime, action = sys.argv[1:]
index = open_index(Path(tmp) / "index.sqlite3")
sorter = Sorter(index.db, (Path(tmp) / "root",), SorterSettings(trash_dir=Path(trash), trash_layout=layout),
                content_hash_file)
if mode == "apply":
    sorter.apply(SortRequest("trash", Path(source), FileIdentity(int(dev), int(ino), int(size), int(mtime)),
                             hash_))
else:
    sorter.undo(int(action))
"""

STEPS = (
    "intent",
    "copying",
    "copied",
    "info_written",
    "linked",
    "temp_removed",
    "source_removed",
    "recorded",
)


def run_child(tmp: Path, trash: Path, layout: str, mode: str, request: SortRequest, step: str, action=0):
    identity = request.identity
    args = [
        str(tmp),
        str(trash),
        layout,
        mode,
        str(request.source),
        request.content_hash,
        str(identity.device),
        str(identity.inode),
        str(identity.size),
        str(identity.mtime_ns),
        str(action),
    ]
    env = {
        **os.environ,
        "COMPARIMG_CRASH_AT": step,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "daemon"),
    }
    return subprocess.run([sys.executable, "-c", CHILD, *args], env=env, timeout=60).returncode


def step_is_on_path(step: str, cross_fs: bool, layout: str) -> bool:
    if step in ("copying", "copied", "temp_removed"):
        return cross_fs
    return step != "info_written" or layout == "freedesktop"


def places_holding(data: bytes, *folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.is_file() and p.read_bytes() == data]


def check_crash_then_recover(tmp_path: Path, photo: Path, trash: Path, layout: str, step: str) -> None:
    original = photo.read_bytes()
    request = request_for(photo)
    code = run_child(tmp_path, trash, layout, "apply", request, step)
    cross_fs = os.stat(tmp_path).st_dev != os.stat(trash.parent).st_dev
    assert code == (70 if step_is_on_path(step, cross_fs, layout) else 0)
    sorter = make_sorter(tmp_path, trash, layout)
    sorter.recover()
    assert journal.open_actions(sorter.db) == []
    holders = places_holding(original, tmp_path / "root", trash)
    assert len(holders) == 1, (step, code, holders)
    assert not list(trash.rglob(".comparimg-*"))
    if holders[0] == photo:  # rolled back (or the step is not on this path): applying again works
        result = sorter.apply(request_for(photo))
        assert result.state == "done"
    done = [a for a in journal.list_actions(sorter.db) if a.state == "done" and a.kind == "trash"]
    assert len(done) == 1
    # Undo, crashing at the same step, then recover: still exactly one copy, journal clean.
    code = run_child(tmp_path, trash, layout, "undo", request, step, action=done[0].id)
    assert code == (70 if step_is_on_path(step, cross_fs, "folder") else 0)
    sorter.recover()
    assert journal.open_actions(sorter.db) == []
    assert len(places_holding(original, tmp_path / "root", trash)) == 1
    if not photo.exists():
        sorter.undo(done[0].id)
    assert photo.read_bytes() == original
    if layout == "freedesktop":
        assert not list(trash.rglob("*.trashinfo"))


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_step_same_file_system(tmp_path, photo, step):
    check_crash_then_recover(tmp_path, photo, tmp_path / "trash", "folder", step)


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_step_across_file_systems(tmp_path, photo, shm_trash, step):
    check_crash_then_recover(tmp_path, photo, shm_trash, "folder", step)


@pytest.mark.parametrize("step", ["intent", "info_written", "linked", "source_removed"])
def test_crash_at_each_step_freedesktop(tmp_path, photo, step):
    check_crash_then_recover(tmp_path, photo, tmp_path / "top", "freedesktop", step)


def test_a_file_swapped_after_the_re_check_is_left_in_place(tmp_path, photo):
    request = request_for(photo)
    intruder = tmp_path / "intruder.jpg"
    intruder.write_bytes(b"swapped in")
    calls = []

    def hash_then_swap(path: str) -> str:
        digest = content_hash_file(path)
        if os.path.realpath(path) == str(photo) and not calls:  # the sorter hashes /proc/self/fd/N
            calls.append(path)
            os.replace(intruder, photo)  # the swap lands between the re-check and the link
        return digest

    index = open_index(tmp_path / "index.sqlite3")
    settings = SorterSettings(trash_dir=tmp_path / "trash", trash_layout="folder", move_targets={})
    result = Sorter(index.db, (tmp_path / "root",), settings, hash_then_swap).apply(request)
    assert result.state == "refused" and "replaced" in result.reason
    assert photo.read_bytes() == b"swapped in"
    assert not [p for p in (tmp_path / "trash").rglob("*") if p.is_file()]
    assert journal.open_actions(index.db) == []


FULL_DISK_CHILD = """
import json, resource, signal, sys
from pathlib import Path
from comparimg.config import SorterSettings
from comparimg.hashing.decoding import content_hash_file
from comparimg.index import open_index, journal
from comparimg.sorter import Sorter, SortRequest
from comparimg.sorter.files import identity_of
tmp, trash, source = sys.argv[1:]
index = open_index(Path(tmp) / "index.sqlite3")
request = SortRequest("trash", Path(source), identity_of(Path(source)), content_hash_file(source))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
sorter = Sorter(index.db, (Path(tmp) / "root",), SorterSettings(trash_dir=Path(trash)), content_hash_file)
print(json.dumps(sorter.apply(request).as_dict()))
"""


def test_a_copy_that_runs_out_of_space_leaves_the_source_and_no_debris(tmp_path, shm_trash, cli_env):
    source = tmp_path / "root" / "big.jpg"
    source.parent.mkdir(parents=True)
    data = os.urandom(2_000_000)
    source.write_bytes(data)
    open_index(tmp_path / "index.sqlite3").close()  # the schema exists before the limit applies
    run = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path), str(shm_trash), str(source)],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["state"] == "failed" and "too large" in result["reason"].lower()
    assert source.read_bytes() == data
    assert not [p for p in shm_trash.rglob("*") if p.is_file()]
    index = open_index(tmp_path / "index.sqlite3")
    assert journal.open_actions(index.db) == []
