"""The index room: the only code that talks SQL. One SQLite file in WAL mode, one writer, versioned schema.

    index = open_index(path)                 # writer: creates the file and directories, migrates
    with index.transaction():
        file_id = index.upsert_fingerprint(path, root, identity, fingerprint, now)
    reader = index.open_reader()              # a read-only connection for another thread

Only one thread may write through the writer `Index` at a time (the daemon keeps a single writer thread);
each reading thread opens its own reader.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path

from sqlite_utils import Database

from comparimg.index.connection import (
    commit_or_roll_back,
    connect_reader,
    connect_writer,
    disk_full_as_index_full,
    write_transaction,
)
from comparimg.index.files import FileRow, FileRows, FileStamp, HashArrays, blob_to_hashes, hashes_to_blob
from comparimg.index.labels import LabelRows, PairLabel
from comparimg.index.relations import RelationRows, StoredGroup, WalkError
from comparimg.index.safety import (
    IndexLock,
    backup_index,
    backup_path_of,
    check_index_header,
    create_index_file,
    is_damage,
    lock_index,
    verify_index,
)
from comparimg.index.schema import (
    MIGRATIONS,
    IndexDamaged,
    IndexInUse,
    IndexSchemaTooNew,
    IndexUnavailable,
    Migration,
    migrate,
    schema_version,
)
from comparimg.model import IndexFull

__all__ = [
    "MIGRATIONS",
    "FileRow",
    "FileStamp",
    "HashArrays",
    "Index",
    "IndexDamaged",
    "IndexFull",
    "IndexInUse",
    "IndexLock",
    "IndexSchemaTooNew",
    "IndexUnavailable",
    "Migration",
    "PairLabel",
    "StoredGroup",
    "WalkError",
    "backup_index",
    "backup_path_of",
    "blob_to_hashes",
    "hashes_to_blob",
    "lock_index",
    "open_index",
    "verify_index",
]


class Index(FileRows, RelationRows, LabelRows):
    """An open index file: the rows of every table, read and written through one connection."""

    def __init__(self, path: Path, db: Database, writable: bool):
        self.path = path
        self.db = db
        self.writable = writable

    def transaction(self, durable: bool = False) -> AbstractContextManager[Database]:
        """Return a context manager running its block in one write transaction (see `write_transaction`)."""
        return write_transaction(self.db, durable)

    def begin_writes(self) -> None:
        """Open a write transaction that spans several calls (the scanner's batches); end it with
        `commit_writes`. For a single block, prefer `transaction()`."""
        with self.disk_full_as_index_full():
            self.db.execute("BEGIN IMMEDIATE")

    def commit_writes(self) -> None:
        """Commit the transaction opened by `begin_writes`; when that fails, roll it back and raise
        (IndexFull when the disk is full)."""
        with self.disk_full_as_index_full():
            commit_or_roll_back(self.db)

    @property
    def in_transaction(self) -> bool:
        """Return whether a transaction is open on this connection (another connection's writes wait)."""
        return self.db.conn.in_transaction

    def disk_full_as_index_full(self) -> AbstractContextManager[None]:
        """Return a context manager turning SQLite's "disk full" on this index into IndexFull."""
        return disk_full_as_index_full(self.path)

    def open_reader(self) -> Index:
        """Return a new read-only Index on the same file, for use in the calling thread."""
        return Index(self.path, connect_reader(self.path), writable=False)

    def schema_version(self) -> int:
        """Return the schema version of the open file."""
        return schema_version(self.db)

    def counts(self) -> dict[str, int]:
        """Return the counts for status pages: files by state, matches, groups by kind. `groups` counts the
        duplicate groups (exact and near); `groups_similar` the groups of shots of one scene."""
        files = self.file_counts()
        groups = self.group_counts()
        return {
            "files": files["total"],
            "files_ok": files["ok"],
            "files_error": files["error"],
            "files_missing": files["missing"],
            "matches": self.match_count(),
            "groups": groups["exact"] + groups["near"],
            "groups_exact": groups["exact"],
            "groups_near": groups["near"],
            "groups_similar": groups["similar"],
            "grouped_files": groups["grouped_files"],
        }

    def close(self) -> None:
        """Close the connection (a writer checkpoints the WAL first)."""
        if self.writable:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self.db.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_index(path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> Index:
    """Given the index file path, return the writer Index, creating directories and file and migrating.

    A missing file is created whole (see `create_index_file`); an existing one must be an SQLite file with
    our schema version (`verify_index` checks every page too, once, at daemon start). Raise IndexDamaged
    when it is not (empty, not SQLite, damaged, another program's database), IndexSchemaTooNew when the
    file comes from a newer version, IndexUnavailable when it cannot be opened or created (OSError for
    its directories).
    """
    path = Path(path)
    if not os.path.lexists(path):
        create_index_file(path, migrations)
    check_index_header(path)
    try:
        db = connect_writer(path)
    except sqlite3.Error as error:
        raise IndexUnavailable(f"cannot open the index {path}: {error}") from error
    try:
        if schema_version(db) == 0:
            raise IndexDamaged(
                f"cannot use the index {path}: it is an SQLite database without a ComparImg schema version"
            )
        migrate(db, migrations)
    except sqlite3.DatabaseError as error:
        db.close()
        if is_damage(error):
            raise IndexDamaged(f"cannot use the index {path}: it is damaged ({error})") from error
        raise IndexUnavailable(f"cannot use the index {path}: {error}") from error
    except BaseException:
        db.close()
        raise
    return Index(path, db, writable=True)
