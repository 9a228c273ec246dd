"""Opening the SQLite file: one writer connection per process, any number of reader connections."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from comparimg.atomic_files import create_private_folder
from comparimg.index.path_text import decode_text
from comparimg.model import IndexFull

BUSY_TIMEOUT_MS = 30_000


def connect_writer(path: Path) -> Database:
    """Given the index file path, return a writer Database (WAL, synchronous=NORMAL, autocommit mode).

    Creates missing parent directories (private). Transactions are explicit (see `write_transaction`).
    """
    create_private_folder(path.parent)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    _configure(conn)
    db = Database(conn)
    db.enable_wal()
    conn.execute("PRAGMA synchronous = NORMAL")
    return db


def connect_reader(path: Path) -> Database:
    """Given the index file path, return a read-only Database for use in the calling thread."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    _configure(conn)
    return Database(conn)


def _configure(conn: sqlite3.Connection) -> None:
    conn.text_factory = decode_text  # a path column may hold a file name that is not UTF-8 (path_text)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")


def is_disk_full(error: sqlite3.Error) -> bool:
    """Given an exception from SQLite, return whether it says the disk is full (SQLite reports an ENOSPC
    on its files as SQLITE_FULL, "database or disk is full")."""
    code = getattr(error, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)


def index_full(path: object) -> IndexFull:
    """Given the index file's path, return the error of a write refused for want of space."""
    return IndexFull(
        f"the index's disk is full ({path}): nothing was written; free some space there and writes resume"
    )


@contextmanager
def disk_full_as_index_full(path: object) -> Iterator[None]:
    """Run the block; given the index file's path, turn SQLite's "database or disk is full" into IndexFull.
    Raise every other error as it is (an OSError's ENOSPC may concern another disk: a trash, a target).
    """
    try:
        yield
    except sqlite3.Error as error:
        if not is_disk_full(error):
            raise
        raise index_full(path) from error


@contextmanager
def write_transaction(db: Database, durable: bool = False) -> Iterator[Database]:
    """Given the writer Database, run the block in one IMMEDIATE transaction; commit, or roll back on error.

    `durable=True` syncs the commit to disk (synchronous=FULL) for rows that must survive a power cut,
    such as the sorter's journal; file rows can be re-derived and use NORMAL. Raise IndexFull when the
    index's disk is full (nothing of the block is kept).
    """
    try:
        with _transaction(db, durable):
            yield db
    except sqlite3.Error as error:
        if not is_disk_full(error):
            raise
        raise index_full(database_file(db)) from error


def database_file(db: Database) -> str:
    """Given a Database, return the file of its main database (for messages)."""
    return next((str(row[2]) for row in db.execute("PRAGMA database_list") if row[1] == "main"), "?")


def commit_or_roll_back(db: Database) -> None:
    """Given a Database in a transaction, commit it; when the commit fails (a full disk), roll back what
    is left of it and raise, so the connection never stays inside a transaction that cannot end."""
    try:
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextmanager
def _transaction(db: Database, durable: bool) -> Iterator[None]:
    if durable:
        db.execute("PRAGMA synchronous = FULL")
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.conn.in_transaction:  # SQLite may have rolled back already (a full disk can do that)
            db.execute("ROLLBACK")
        raise
    else:
        commit_or_roll_back(db)
    finally:
        if durable:
            db.execute("PRAGMA synchronous = NORMAL")
