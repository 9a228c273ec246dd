"""What a reconcile of unchanged files reads and writes: identities by folder, no hash blobs, one `last_seen`
statement a batch (a real index file, real photos, real workers; SQLite's own authorizer and trace)."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from comparimg.scanner import Scanner

FOLDERS = ("a", "a/deeper", "b")
PER_FOLDER = 4


@pytest.fixture
def tree(tmp_path, write_photo):
    """Twelve real photos in three folders, one below another (its rows share the parent's path range)."""
    root = tmp_path / "photos"
    first = write_photo(root / "first.jpg", "coffee", size=(96, 64))
    for folder in FOLDERS:
        for n in range(PER_FOLDER):
            path = root / folder / f"copy{n}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, path)
    first.unlink()
    return root


class ColumnReads:
    """Records every (table, column) a statement on a connection reads, and every statement run."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection
        self.columns: set[tuple[str, str]] = set()
        self.statements: list[str] = []

    def _authorize(self, action, table, column, *_):
        if action == sqlite3.SQLITE_READ:
            self.columns.add((table, column))
        return sqlite3.SQLITE_OK

    def __enter__(self) -> ColumnReads:
        self.connection.set_authorizer(self._authorize)
        self.connection.set_trace_callback(self.statements.append)
        return self

    def __exit__(self, *exc_info) -> None:
        self.connection.set_authorizer(None)
        self.connection.set_trace_callback(None)


def test_a_reconcile_of_unchanged_files_reads_no_hash_and_touches_them_in_one_statement(index, pool, tree):
    scanner = Scanner(index, pool)
    first = scanner.scan([tree])
    assert first.hashed == len(FOLDERS) * PER_FOLDER
    seen_before = dict(index.db.execute("SELECT id, last_seen FROM files"))
    with ColumnReads(index.db.conn) as reads:
        again = scanner.scan([tree])
    assert (again.unchanged, again.hashed, again.moved) == (len(FOLDERS) * PER_FOLDER, 0, 0)
    # The hash blobs and embeddings: what a row per file read (and decoded) before.
    assert ("files", "windows") not in reads.columns
    assert ("embeddings", "vector") not in reads.columns
    touches = [s for s in reads.statements if s.lstrip().upper().startswith("UPDATE FILES SET LAST_SEEN")]
    assert len(touches) == 1, touches
    by_folder = [s for s in reads.statements if "instr(substr(CAST(path AS BLOB)" in s]
    assert len(by_folder) == len(FOLDERS), by_folder
    seen_after = dict(index.db.execute("SELECT id, last_seen FROM files"))
    assert seen_after.keys() == seen_before.keys()
    assert all(seen_after[i] > seen_before[i] for i in seen_after)


def test_folder_stamps_hold_the_files_directly_in_the_folder_only(index, pool, tree):
    Scanner(index, pool).scan([tree])
    stamps = index.file_stamps_in_folder(str(tree / "a"))
    assert sorted(os.path.relpath(p, tree) for p in stamps) == [f"a/copy{n}.jpg" for n in range(PER_FOLDER)]
    row = index.file_by_path(str(tree / "a" / "copy0.jpg"))
    stamp = stamps[str(tree / "a" / "copy0.jpg")]
    assert (stamp.id, stamp.identity, stamp.state, stamp.error) == (row.id, row.identity, "ok", None)
    assert (stamp.fingerprint_is_stale, row.fingerprint_is_stale) == (False, False)
    assert (stamp.lacks_embedding, row.lacks_embedding) == (True, True)  # mode hash: no embedding
    assert index.file_stamp(str(tree / "a" / "copy0.jpg")) == stamp
    assert index.file_stamps_in_folder(str(tree)) == {}
    assert index.file_stamp(str(tree / "a" / "nothing.jpg")) is None


def test_folder_stamps_of_a_folder_named_with_bytes_that_are_not_utf8(index, pool, tmp_path, write_photo):
    root = tmp_path / "photos"
    folder = os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9")
    write_photo(os.path.join(folder, "one.jpg"), "coffee", size=(96, 64))
    write_photo(os.path.join(folder, "sub", "two.jpg"), "rocket", size=(96, 64))
    Scanner(index, pool).scan([root])
    assert list(index.file_stamps_in_folder(folder)) == [os.path.join(folder, "one.jpg")]
    again = Scanner(index, pool).scan([root])
    assert (again.unchanged, again.hashed) == (2, 0)


def test_a_reconcile_reads_a_changed_file_and_follows_a_move_in_a_folder(index, pool, tree, write_photo):
    scanner = Scanner(index, pool)
    scanner.scan([tree])
    moved_id = index.file_by_path(str(tree / "b" / "copy1.jpg")).id
    os.rename(tree / "b" / "copy1.jpg", tree / "b" / "renamed.jpg")
    write_photo(tree / "a" / "copy2.jpg", "rocket", size=(96, 64))
    report = scanner.scan([tree])
    assert (report.hashed, report.moved, report.missing) == (1, 1, 0)
    assert index.file_by_path(str(tree / "b" / "renamed.jpg")).id == moved_id
