"""Fingerprint versions: rows made by older hashing code are read again once, moves and links included.

A real index file, real photos and real worker processes; "older code" is a row whose
`fingerprint_version` is set back by SQL (or an index file built by migrations 1-3 only).
"""

from __future__ import annotations

import os

import pytest
from PIL import Image

from comparimg import hashing
from comparimg.index import MIGRATIONS, open_index
from comparimg.index.files import blob_to_hashes, hashes_to_blob
from comparimg.model import FINGERPRINT_VERSION
from comparimg.scanner import MatchOptions, Scanner, ScanOptions

OLD_WINDOW_COUNT = 11  # the upright windows and the content slot, before turned windows (version 1)


@pytest.fixture
def index_path(tmp_path):
    return tmp_path / "state" / "index.sqlite3"


@pytest.fixture
def tree(tmp_path, write_photo):
    """Photos with two near-duplicate pairs (a resized astronaut, a turned coffee) and one lone rocket."""
    root = tmp_path / "photos"
    write_photo(root / "astronaut.jpg", "astronaut")
    write_photo(root / "astronaut-small.png", "astronaut", size=(256, 256))
    write_photo(root / "coffee.jpg", "coffee")
    write_photo(root / "coffee-turned.jpg", "coffee", transpose=Image.Transpose.ROTATE_90)
    write_photo(root / "rocket.jpg", "rocket")
    (root / "broken.jpg").write_bytes(b"not a picture at all")
    return root


def scan(index, pool, tree):
    return Scanner(index, pool, ScanOptions(match=MatchOptions())).scan([tree])


@pytest.fixture
def index(index_path, pool, tree):
    """Return the index of a first scan of the tree (the pool's record of it taken)."""
    with open_index(index_path) as opened:
        scan(opened, pool, tree)
        pool.take()
        yield opened


def make_old(index, tree, *names: str) -> None:
    """Turn the rows of these files into what the code before versions wrote: version 1, 11 windows."""
    with index.transaction():
        for name in names:
            row = index.file_by_path(str(tree / name))
            old_windows = hashes_to_blob(row.fingerprint.windows[:OLD_WINDOW_COUNT])
            index.db.execute(
                "UPDATE files SET fingerprint_version = 1, windows = ? WHERE id = ?", [old_windows, row.id]
            )


def versions(index) -> dict[str, tuple[str, int, int]]:
    """Return {file name: (state, fingerprint version, window count)} of every row."""
    rows = index.db.execute("SELECT path, state, fingerprint_version, windows FROM files").fetchall()
    return {os.path.basename(p): (s, v, len(blob_to_hashes(w))) for p, s, v, w in rows}


def groups_by_name(index) -> list[list[str]]:
    found = []
    for stored in index.iter_groups():
        rows = index.files_by_ids(m.file_id for m in stored.group.members)
        found.append(sorted(os.path.basename(rows[m.file_id].path) for m in stored.group.members))
    return sorted(found)


def test_old_rows_are_hashed_again_once_and_no_others(index, pool, tree):
    ids = {name: index.file_by_path(str(tree / name)).id for name in versions(index)}
    current = versions(index)["coffee.jpg"]
    assert current[1] == FINGERPRINT_VERSION and current[2] > OLD_WINDOW_COUNT
    make_old(index, tree, "coffee.jpg", "rocket.jpg")
    with index.transaction():  # an error row set back is not read again: it holds no fingerprint
        index.db.execute(
            "UPDATE files SET fingerprint_version = 1 WHERE path = ?", [str(tree / "broken.jpg")]
        )
        # A person's mark, keyed by file ids: the re-read file keeps its id, so the mark holds.
        index.add_not_duplicate(ids["coffee.jpg"], ids["coffee-turned.jpg"], 0.0)

    report = scan(index, pool, tree)

    assert pool.take() == ["coffee.jpg", "rocket.jpg"]
    assert (report.hashed, report.rehashed, report.unchanged, report.errors) == (2, 2, 4, 1)
    assert versions(index)["coffee.jpg"] == current
    assert versions(index)["rocket.jpg"][1:] == (FINGERPRINT_VERSION, current[2])
    assert versions(index)["broken.jpg"] == ("error", 1, 0)
    assert {name: index.file_by_path(str(tree / name)).id for name in ids} == ids
    assert index.not_duplicate_pairs() == {tuple(sorted((ids["coffee.jpg"], ids["coffee-turned.jpg"])))}
    assert groups_by_name(index) == [["astronaut-small.png", "astronaut.jpg"]]
    assert index.files_needing_link() == []

    again = scan(index, pool, tree)
    assert pool.take() == []
    assert (again.hashed, again.rehashed, again.unchanged) == (0, 0, 6)


def test_an_index_written_before_versions_is_upgraded_and_read_again(index_path, pool, tree):
    """Migration 4 keeps every row (ids, fingerprints, marks) and counts them all as version 1."""
    with open_index(index_path) as index:
        scan(index, pool, tree)
        pool.take()
        before = {r.path: r for r in index.iter_files_under(str(tree))}
        groups = groups_by_name(index)
        # What migrations 1-3 alone leave: the same rows without the columns and tables of later ones.
        index.db.execute("ALTER TABLE files DROP COLUMN fingerprint_version")
        for statement in (
            "DROP INDEX sort_actions_batch",
            "ALTER TABLE sort_actions DROP COLUMN batch_id",
            "DROP TABLE bulk_items",
            "DROP TABLE bulk_batches",
            "DROP TABLE embeddings",
            "DROP TABLE pair_labels",
            "ALTER TABLE files DROP COLUMN sharpness",
            "ALTER TABLE files DROP COLUMN exposure",
        ):
            index.db.execute(statement)
        index.db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with open_index(index_path, MIGRATIONS[:3]) as old:
        assert old.schema_version() == 3
        assert "fingerprint_version" not in old.db["files"].columns_dict

    with open_index(index_path) as index:
        assert index.schema_version() == MIGRATIONS[-1].version
        upgraded = {r.path: r for r in index.iter_files_under(str(tree))}
        assert upgraded.keys() == before.keys()
        for path, row in upgraded.items():
            assert (row.id, row.identity, row.fingerprint, row.fingerprint_version) == (
                before[path].id,
                before[path].identity,
                before[path].fingerprint,
                1,
            )
        assert groups_by_name(index) == groups

        report = scan(index, pool, tree)
        ok = ["astronaut-small.png", "astronaut.jpg", "coffee-turned.jpg", "coffee.jpg", "rocket.jpg"]
        assert pool.take() == ok
        assert (report.hashed, report.rehashed, report.unchanged) == (5, 5, 1)
        assert {n: v[1] for n, v in versions(index).items()} == {
            **dict.fromkeys(ok, FINGERPRINT_VERSION),
            "broken.jpg": 1,
        }
        assert groups_by_name(index) == groups
        assert scan(index, pool, tree).hashed == 0


def test_a_moved_old_row_follows_and_is_hashed_again(index, pool, tree):
    coffee = index.file_by_path(str(tree / "coffee.jpg"))
    make_old(index, tree, "coffee.jpg")
    os.rename(tree / "coffee.jpg", tree / "coffee-moved.jpg")

    report = scan(index, pool, tree)

    assert pool.take() == ["coffee-moved.jpg"]
    assert (report.moved, report.hashed, report.rehashed, report.missing) == (1, 1, 1, 0)
    moved = index.file_by_path(str(tree / "coffee-moved.jpg"))
    assert index.file_by_path(str(tree / "coffee.jpg")) is None
    assert (moved.id, moved.fingerprint_version, moved.fingerprint) == (
        coffee.id,
        FINGERPRINT_VERSION,
        coffee.fingerprint,
    )
    assert ["coffee-moved.jpg", "coffee-turned.jpg"] in groups_by_name(index)


def test_a_hard_link_to_an_old_row_is_read_not_copied(index, pool, tree):
    make_old(index, tree, "rocket.jpg")
    os.link(tree / "rocket.jpg", tree / "rocket-link.jpg")

    report = scan(index, pool, tree)

    assert pool.take() == ["rocket-link.jpg", "rocket.jpg"]
    assert (report.hashed, report.rehashed, report.moved) == (2, 1, 0)
    assert versions(index)["rocket-link.jpg"] == versions(index)["rocket.jpg"]
    assert versions(index)["rocket.jpg"][1] == FINGERPRINT_VERSION
    assert ["rocket-link.jpg", "rocket.jpg"] in groups_by_name(index)


def test_a_missing_old_row_that_comes_back_is_hashed_again(index, pool, tree, tmp_path):
    rocket = index.file_by_path(str(tree / "rocket.jpg"))
    make_old(index, tree, "rocket.jpg")
    os.rename(tree / "rocket.jpg", tmp_path / "away.jpg")
    assert scan(index, pool, tree).missing == 1
    os.rename(tmp_path / "away.jpg", tree / "rocket.jpg")

    report = scan(index, pool, tree)

    assert pool.take() == ["rocket.jpg"]
    assert (report.hashed, report.rehashed) == (1, 1)
    back = index.file_by_path(str(tree / "rocket.jpg"))
    assert (back.id, back.state, back.fingerprint_version) == (rocket.id, "ok", FINGERPRINT_VERSION)
    assert index.files_needing_link() == []


# The window count each version's hashing gives every picture: a tripwire for a layout change that
# forgot to bump model.FINGERPRINT_VERSION (which would leave old rows unread).
WINDOW_COUNT_OF_VERSION = {2: 44}


def test_the_window_layout_is_the_one_of_the_fingerprint_version(tmp_path, write_photo):
    fingerprint = hashing.fingerprint_file(str(write_photo(tmp_path / "coffee.jpg", "coffee")))
    assert len(fingerprint.windows) == WINDOW_COUNT_OF_VERSION[FINGERPRINT_VERSION], (
        "the window layout changed: bump model.FINGERPRINT_VERSION and record its count here"
    )
