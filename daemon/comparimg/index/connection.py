"""Opening the SQLite file: one writer connection per process, any number of reader connections."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from comparimg.atomic_files import create_private_folder
from comparimg.index.path_text import decode_text

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


@contextmanager
def write_transaction(db: Database, durable: bool = False) -> Iterator[Database]:
    """Given the writer Database, run the block in one IMMEDIATE transaction; commit, or roll back on error.

    `durable=True` syncs the commit to disk (synchronous=FULL) for rows that must survive a power cut,
    such as the sorter's journal; file rows can be re-derived and use NORMAL.
    """
    if durable:
        db.execute("PRAGMA synchronous = FULL")
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    else:
        db.execute("COMMIT")
    finally:
        if durable:
            db.execute("PRAGMA synchronous = NORMAL")
