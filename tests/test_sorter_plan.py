"""The sorter's pure rules: where a file goes, which names are tried, what recovery decides."""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path, PurePath

import pytest

from comparimg.sorter.plan import (
    Observation,
    candidate_paths,
    move_placement,
    recovery_decision,
    relative_to_root,
    temp_path_for,
    trash_folder_problem,
    trash_homes,
    trash_placement,
    trashinfo_text,
)

ROOTS = (PurePath("/photos"), PurePath("/photos/phone"), PurePath("/other"))


def test_the_deepest_root_wins():
    assert relative_to_root(PurePath("/photos/phone/a/b.jpg"), ROOTS) == (
        PurePath("/photos/phone"),
        PurePath("a/b.jpg"),
    )


@pytest.mark.parametrize("path", ["/elsewhere/a.jpg", "/photos", "/photosx/a.jpg"])
def test_paths_outside_the_roots_are_refused(path):
    with pytest.raises(ValueError):
        relative_to_root(PurePath(path), ROOTS)


def test_folder_trash_keeps_the_path_relative_to_its_root():
    placement = trash_placement(PurePath("/photos/2020/a.jpg"), ROOTS, Path("/t"), "folder", 1000)
    assert placement.dest == Path("/t/photos/2020/a.jpg")
    assert placement.info_dir is None


def test_freedesktop_trash_uses_files_and_info():
    placement = trash_placement(PurePath("/photos/2020/a.jpg"), ROOTS, Path("/t"), "freedesktop", 1000)
    assert placement.dest == Path("/t/.Trash-1000/files/a.jpg")
    assert placement.info_dir == Path("/t/.Trash-1000/info")


def test_unknown_layout_and_target_are_refused():
    with pytest.raises(ValueError):
        trash_placement(PurePath("/photos/a.jpg"), ROOTS, Path("/t"), "bin", 0)
    with pytest.raises(ValueError):
        move_placement(PurePath("/photos/a.jpg"), ROOTS, {"keep": Path("/k")}, "nope")


def test_move_goes_under_the_named_target():
    placement = move_placement(PurePath("/other/x/a.png"), ROOTS, {"best": Path("/best")}, "best")
    assert placement.dest == Path("/best/other/x/a.png")


def test_candidate_names_add_a_numbered_suffix():
    names = [p.name for p, _ in zip(candidate_paths(Path("/t/a.b.jpg")), range(3), strict=False)]
    assert names == ["a.b.jpg", "a.b (1).jpg", "a.b (2).jpg"]
    assert [p.name for p, _ in zip(candidate_paths(Path("/t/README")), range(2), strict=False)] == [
        "README",
        "README (1)",
    ]


def test_temp_name_is_hidden_beside_the_destination():
    assert temp_path_for(Path("/t/a.jpg"), 7) == Path("/t/.comparimg-7.part")


def test_trashinfo_quotes_the_original_path():
    text = trashinfo_text(PurePath("/photos/a b.jpg"), datetime(2024, 1, 2, 3, 4, 5))
    assert text == "[Trash Info]\nPath=/photos/a%20b.jpg\nDeletionDate=2024-01-02T03:04:05\n"


def seen(**changes) -> Observation:
    base = {
        "source_inode": 5,
        "dest_inode": None,
        "temp_inode": None,
        "dest_hash_ok": None,
        "source_unchanged": True,
        "cross_fs": False,
        "journaled_inode": 5,
    }
    return Observation(**{**base, **changes})


@pytest.mark.parametrize(
    ("observation", "verdict"),
    [
        (seen(), "rollback"),  # crashed before linking
        (seen(dest_inode=5), "finish"),  # linked, source not yet removed
        (seen(source_inode=None, dest_inode=5), "finish"),  # moved, not yet recorded
        (seen(source_inode=None), "lost"),
        (seen(dest_inode=9), "rollback"),  # someone else's file at the destination
        (seen(cross_fs=True, temp_inode=8), "rollback"),  # half copy
        (seen(cross_fs=True, temp_inode=8, dest_inode=8, dest_hash_ok=True), "finish"),
        (seen(cross_fs=True, dest_inode=8, dest_hash_ok=True), "finish"),
        (seen(cross_fs=True, source_inode=None, dest_inode=8, dest_hash_ok=True), "finish"),
        (seen(cross_fs=True, dest_inode=8, dest_hash_ok=False), "rollback"),
        (seen(cross_fs=True, dest_inode=8, dest_hash_ok=True, source_unchanged=False), "rollback"),
    ],
)
def test_recovery_decisions(observation, verdict):
    assert recovery_decision(observation) == verdict


DIR = stat.S_IFDIR


@pytest.mark.parametrize(
    ("component", "mode", "owner", "problem"),
    [
        (".Trash", DIR | 0o1777, 0, None),
        (".Trash", DIR | 0o777, 0, "no sticky bit"),
        (".Trash", stat.S_IFLNK | 0o777, 0, "not a folder"),
        (".Trash/1000", DIR | 0o700, 1000, None),
        (".Trash/1000", DIR | 0o700, 0, "belongs to uid 0"),
        (".Trash-1000", DIR | 0o700, 1000, None),
        (".Trash-1000", DIR | 0o755, 1000, None),
        (".Trash-1000", DIR | 0o777, 1000, "written by other users"),
        (".Trash-1000", DIR | 0o777, 1234, "belongs to uid 1234"),
        (".Trash-1000/files", DIR | 0o700, 1000, None),
    ],
)
def test_freedesktop_trash_folder_rules(component, mode, owner, problem):
    found = trash_folder_problem(PurePath(component), mode, owner, 1000)
    assert (found is None) if problem is None else (problem in found)


def test_the_shared_trash_is_tried_before_the_own_one():
    assert trash_homes(1000) == (PurePath(".Trash/1000"), PurePath(".Trash-1000"))
    placement = trash_placement(
        PurePath("/photos/a/b.jpg"), ROOTS, Path("/top"), "freedesktop", 1000, PurePath(".Trash/1000")
    )
    assert placement.dest == Path("/top/.Trash/1000/files/b.jpg")
    assert placement.info_dir == Path("/top/.Trash/1000/info")
