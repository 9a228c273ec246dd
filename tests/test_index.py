"""The index room: schema migrations, file rows by path and identity, hashes, matches, groups, readers."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from comparimg.index import (
    MIGRATIONS,
    IndexSchemaTooNew,
    IndexUnavailable,
    Migration,
    hashes_to_blob,
    open_index,
)
from comparimg.model import FINGERPRINT_VERSION, FileIdentity, Fingerprint, Group, GroupMember, Match

NOW = 1_700_000_000.0


def fingerprint(seed: int, content: str | None = None) -> Fingerprint:
    rng = np.random.default_rng(seed)
    variants = tuple(int(h) for h in rng.integers(0, 2**64, size=8, dtype=np.uint64))
    windows = tuple(int(h) for h in rng.integers(0, 2**64, size=seed % 4, dtype=np.uint64))
    return Fingerprint(content or f"hash{seed}", 640 + seed, 480, "JPEG", variants, windows)


def identity(inode: int, size: int = 1000, mtime_ns: int = 5) -> FileIdentity:
    return FileIdentity(device=1, inode=inode, size=size, mtime_ns=mtime_ns)


@pytest.fixture
def index(tmp_path):
    with open_index(tmp_path / "state" / "index.sqlite3") as opened:
        yield opened


def add(index, n: int, root: str = "/photos") -> list[int]:
    with index.transaction():
        return [
            index.upsert_fingerprint(f"{root}/{i}.jpg", root, identity(i), fingerprint(i), NOW)
            for i in range(n)
        ]


def test_open_creates_directories_wal_and_latest_schema(tmp_path):
    path = tmp_path / "a" / "b" / "index.sqlite3"
    with open_index(path) as index:
        assert index.schema_version() == MIGRATIONS[-1].version
        assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert index.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert path.exists()


def test_reopening_keeps_rows_and_does_not_migrate_twice(tmp_path):
    path = tmp_path / "index.sqlite3"
    with open_index(path) as index:
        add(index, 3)
    with open_index(path) as index:
        assert index.counts()["files"] == 3
        assert index.schema_version() == MIGRATIONS[-1].version


def test_an_appended_migration_runs_once_on_an_existing_file(tmp_path):
    path = tmp_path / "index.sqlite3"
    open_index(path).close()
    notes = Migration(len(MIGRATIONS) + 1, "notes", ("CREATE TABLE notes (id INTEGER PRIMARY KEY)",))
    extra = (*MIGRATIONS, notes)
    with open_index(path, extra) as index:
        assert index.db["notes"].exists()
    with open_index(path, extra) as index:
        assert index.schema_version() == len(extra)


def test_a_failing_migration_leaves_the_old_version(tmp_path):
    path = tmp_path / "index.sqlite3"
    open_index(path).close()
    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "bad", ("CREATE TABLE t (x)", "NOT SQL")))
    with pytest.raises(IndexUnavailable, match="syntax error"):
        open_index(path, broken)
    with open_index(path) as index:
        assert index.schema_version() == len(MIGRATIONS)
        assert not index.db["t"].exists()


def test_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "index.sqlite3"
    with open_index(path) as index:
        index.db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(IndexSchemaTooNew, match="999"):
        open_index(path)


def test_a_file_that_is_not_an_index_is_refused_with_its_path(tmp_path):
    not_a_database = tmp_path / "notes.sqlite3"
    not_a_database.write_text("just some text, long enough to fill a header page " * 20)
    with pytest.raises(IndexUnavailable, match=r"notes\.sqlite3"):
        open_index(not_a_database)
    with pytest.raises(IndexUnavailable, match="cannot open"):
        open_index(tmp_path)  # a folder


def test_fingerprint_round_trips_with_64_bit_hashes(index):
    big = Fingerprint("c", 10, 20, "PNG", (2**64 - 1, 2**63, 0, 1, 2, 3, 4, 5), (2**64 - 2,))
    with index.transaction():
        file_id = index.upsert_fingerprint("/p/a.png", "/p", identity(1), big, NOW)
    row = index.file_by_path("/p/a.png")
    assert row.id == file_id
    assert row.fingerprint == big
    assert row.state == "ok"
    stored = index.db.execute("SELECT phash FROM files WHERE id = ?", [file_id]).fetchone()[0]
    assert stored == -1  # identity hash as signed int64


def test_lookup_by_identity_finds_a_moved_file(index):
    add(index, 2)
    rows = index.files_by_identity(identity(1))
    assert [r.path for r in rows] == ["/photos/1.jpg"]
    assert index.files_by_identity(identity(1, mtime_ns=6)) == []


def test_rename_keeps_id_and_fingerprint(index):
    (file_id,) = add(index, 1)
    with index.transaction():
        index.rename_file(file_id, "/photos/moved/0.jpg", "/photos", NOW + 1)
    assert index.file_by_path("/photos/0.jpg") is None
    row = index.file_by_path("/photos/moved/0.jpg")
    assert row.id == file_id and row.fingerprint == fingerprint(0)


def test_migration_4_counts_existing_rows_as_fingerprint_version_1(tmp_path):
    path = tmp_path / "index.sqlite3"
    with open_index(path, MIGRATIONS[:3]) as old:
        old.db.execute(
            "INSERT INTO files (root, path, device, inode, size, mtime_ns, content_hash, width, height, "
            "format, phash, phash_variants, windows, state, first_seen, last_seen) "
            "VALUES ('/p', '/p/a.jpg', 1, 2, 3, 4, 'c', 10, 20, 'JPEG', 1, ?, ?, 'ok', 0, 0)",
            [hashes_to_blob(range(8)), hashes_to_blob([9] * 11)],
        )
    with open_index(path) as index:
        row = index.file_by_path("/p/a.jpg")
        assert (row.fingerprint_version, row.fingerprint_is_stale) == (1, True)
        assert row.fingerprint == Fingerprint("c", 10, 20, "JPEG", tuple(range(8)), (9,) * 11)


def test_every_fingerprint_write_records_the_current_version(index):
    (file_id,) = add(index, 1)
    with index.transaction():
        index.db.execute("UPDATE files SET fingerprint_version = 1")
    assert index.file_by_id(file_id).fingerprint_is_stale
    with index.transaction():
        index.rename_file(file_id, "/photos/moved.jpg", "/photos", NOW)
    assert index.file_by_id(file_id).fingerprint_version == 1, "a moved row keeps what it holds"
    with index.transaction():
        assert (
            index.upsert_fingerprint("/photos/moved.jpg", "/photos", identity(0), fingerprint(0), NOW)
            == file_id
        )
        linked = index.copy_fingerprint(index.file_by_id(file_id), "/photos/link.jpg", "/photos", NOW)
        failed = index.record_file_error("/photos/bad.jpg", "/photos", identity(7), "not an image", NOW)
    for fid in (file_id, linked, failed):
        row = index.file_by_id(fid)
        assert row.fingerprint_version == FINGERPRINT_VERSION and not row.fingerprint_is_stale


def test_error_rows_keep_the_reason_and_are_listed_under_their_root(index):
    with index.transaction():
        index.record_file_error("/photos/bad.jpg", "/photos", identity(9), "not an image", NOW)
        index.record_walk_error("/photos/locked", "/photos", "permission denied", NOW)
        index.record_walk_error("/elsewhere/x", "/elsewhere", "permission denied", NOW)
    errors = index.errors_under(["/photos"])
    assert [(e.path, e.reason) for e in errors] == [
        ("/photos/bad.jpg", "not an image"),
        ("/photos/locked", "permission denied"),
    ]
    assert index.file_by_path("/photos/bad.jpg").state == "error"
    with index.transaction():
        index.clear_walk_errors("/photos")
    assert [e.path for e in index.errors_under(["/photos"])] == ["/photos/bad.jpg"]


def test_files_not_seen_are_found_below_their_root_only(index):
    ids = add(index, 3, "/photos")
    other = add(index, 1, "/photos2")
    with index.transaction():
        index.touch_files([ids[0]], NOW + 10)
    assert index.files_not_seen_since("/photos", NOW + 5) == ids[1:]
    assert index.files_not_seen_since("/photos", NOW + 5, skip_dirs=["/photos"]) == []
    assert other[0] not in index.files_not_seen_since("/photos", NOW + 5)


def test_missing_files_lose_their_edges_and_leave_the_hash_arrays(index):
    a, b, c = add(index, 3)
    with index.transaction():
        index.add_matches([Match(a, b, "near", 3, 0), Match(b, c, "near", 4, 1)])
        index.mark_missing([b])
    assert index.match_count() == 0
    assert list(index.hash_arrays().ids) == [a, c]
    with index.transaction():
        index.mark_present(b, NOW)
    assert index.file_by_id(b).state == "ok"


def test_hash_arrays_stream_in_batches_with_windows(index):
    ids = add(index, 7)
    batches = list(index.fingerprint_rows(batch=3))
    assert [len(b.ids) for b in batches] == [3, 3, 1]
    whole = index.hash_arrays()
    assert list(whole.ids) == ids
    assert whole.phash.dtype == np.uint64 and whole.phash.shape == (7, 8)
    for i, file_id in enumerate(ids):
        expected = fingerprint(file_id - ids[0])
        assert tuple(int(h) for h in whole.phash[i]) == expected.phash
        start, end = whole.window_offsets[i], whole.window_offsets[i + 1]
        assert tuple(int(h) for h in whole.windows[start:end]) == expected.windows


def test_replace_matches_and_component(index):
    a, b, c, d = add(index, 4)
    with index.transaction():
        index.replace_matches(a, [Match(a, b, "near", 2, 0)])
        index.replace_matches(c, [Match(b, c, "exact", 0, 0)])
        index.replace_matches(a, [Match(a, b, "near", 1, 4)])
    assert index.matches_touching([a]) == [Match(a, b, "near", 1, 4)]
    assert index.component_of([a]) == {a, b, c}
    assert index.component_of([d]) == {d}


def test_groups_are_replaced_and_keep_their_id_when_unchanged(index):
    a, b, c = add(index, 3)
    pair = Group("near", a, (GroupMember(a, 0, 0, "keep"), GroupMember(b, 3, 1, "trash")))
    with index.transaction():
        (first,) = index.replace_groups([a, b], [pair], NOW)
    with index.transaction():
        (again,) = index.replace_groups([a, b], [pair], NOW)
    assert again == first
    trio = Group("near", a, (*pair.members, GroupMember(c, 5, 0, "trash")))
    with index.transaction():
        (third,) = index.replace_groups([a, b, c], [trio], NOW)
    assert third != first
    (stored,) = index.groups_of([c])
    assert stored.id == third and stored.group == trio
    assert index.counts()["groups"] == 1 and index.counts()["grouped_files"] == 3


def test_removing_a_file_drops_its_memberships(index):
    a, b = add(index, 2)
    with index.transaction():
        index.replace_groups([a, b], [Group("exact", a, (GroupMember(a), GroupMember(b)))], NOW)
        index.remove_file(a)
    assert index.groups_of([b]) == []


def test_not_duplicate_pairs_are_ordered_and_drop_the_edge(index):
    a, b, c = add(index, 3)
    with index.transaction():
        index.add_matches([Match(a, b, "near", 2, 0)])
        index.add_not_duplicate(b, a, NOW)
    assert index.not_duplicate_pairs() == {(a, b)}
    assert index.not_duplicate_pairs([c]) == set()
    assert index.match_count() == 0


def test_a_failed_transaction_rolls_back(index):
    with pytest.raises(RuntimeError), index.transaction():
        index.upsert_fingerprint("/p/x.jpg", "/p", identity(1), fingerprint(1), NOW)
        raise RuntimeError("boom")
    assert index.file_by_path("/p/x.jpg") is None


def test_readers_in_other_threads_see_committed_rows_only(index):
    add(index, 2)
    seen = []

    def read():
        with index.open_reader() as reader:
            seen.append(reader.counts()["files"])

    with index.transaction():
        index.upsert_fingerprint("/photos/new.jpg", "/photos", identity(50), fingerprint(50), NOW)
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert seen == [2]


def test_a_reader_cannot_write(index):
    with index.open_reader() as reader, pytest.raises(sqlite3.OperationalError):
        reader.db.execute("DELETE FROM files")


def test_facts_mark_files_under_reference_roots(index):
    a, b = add(index, 1, "/ref")[0], add(index, 1, "/photos")[0]
    facts = index.file_facts([a, b], reference_roots=["/ref"])
    assert facts[a].reference and not facts[b].reference
    assert facts[a].width == 640 and facts[a].path == "/ref/0.jpg"
