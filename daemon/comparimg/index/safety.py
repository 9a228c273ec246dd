"""Keeping the index file whole: refuse a file that is not a sound index, one daemon per index, backups.

- `check_index_header(path)`: cheap, on every open: a file that exists must be a non-empty SQLite file.
  A zero-length file would otherwise open as a new, empty index (decisions and journal silently gone).
- `verify_index(path)`: once at daemon start: the header, `PRAGMA quick_check` and our schema version.
  A damaged page would otherwise start, then kill the start-up scan and leave the daemon "scanning".
- `create_index_file(path, migrations)`: a missing index is built beside its final name (0600) and
  linked into place whole, so a crash during creation never leaves an empty or half-made index behind.
- `lock_index(path)`: `<index>.lock`, flock'ed for the daemon's life with its pid inside; a second daemon
  is refused, naming the first one's pid.
- `backup_index(path)`: SQLite's online backup of the whole index (decisions and journal included) to a
  temp file, checked, then renamed to `<index>.backup`; older ones become `.backup.1` … (BACKUPS_KEPT in all).
  docs/recovery.md says how to restore one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import tempfile
from pathlib import Path

from comparimg.atomic_files import create_private_folder
from comparimg.index.connection import connect_writer
from comparimg.index.schema import IndexDamaged, IndexInUse, IndexUnavailable, Migration, migrate

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_BYTES = 100
DAMAGE_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})
PROBLEMS_SHOWN = 3
BACKUPS_KEPT = 3
RECOVERY_HINT = "docs/recovery.md says how to restore it from its backup"


def check_index_header(path: Path) -> None:
    """Given the path of an index file that may exist, return if it is absent, not a regular file (SQLite
    reports those) or starts with an SQLite header. Raise IndexDamaged naming the file otherwise."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(SQLITE_HEADER_BYTES)
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as error:
        raise IndexUnavailable(f"cannot read the index {path}: {error}") from error
    if not header:
        raise IndexDamaged(f"cannot use the index {path}: it is empty (0 bytes); {RECOVERY_HINT}")
    if len(header) < SQLITE_HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        raise IndexDamaged(f"cannot use the index {path}: it is not an SQLite database")


def is_damage(error: sqlite3.Error) -> bool:
    """Given an error SQLite raised, return whether it says the file is damaged or not a database."""
    return getattr(error, "sqlite_errorname", "") in DAMAGE_CODES


def verify_index(path: Path) -> None:
    """Given the index path, check an existing file whole: SQLite header, `PRAGMA quick_check` (every page
    and index readable and consistent) and our schema version. A missing file passes (it will be created).
    Raise IndexDamaged naming the file and the first problems, IndexUnavailable when it cannot be read."""
    check_index_header(path)
    if not path.is_file():
        return
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as error:
        raise IndexUnavailable(f"cannot open the index {path}: {error}") from error
    try:
        problems = quick_check(conn)
        has_version = (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            and conn.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone()
        )
    except sqlite3.DatabaseError as error:
        if is_damage(error):
            raise IndexDamaged(_damaged(path, str(error))) from error
        raise IndexUnavailable(f"cannot read the index {path}: {error}") from error
    finally:
        conn.close()
    if problems:
        raise IndexDamaged(_damaged(path, "; ".join(problems)))
    if not has_version:
        raise IndexDamaged(
            f"cannot use the index {path}: it is an SQLite database without a ComparImg schema version"
        )


def _damaged(path: Path, problems: str) -> str:
    return f"cannot use the index {path}: it is damaged ({problems}); {RECOVERY_HINT}"


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """Given a connection, return the first problems `PRAGMA quick_check` finds (empty when sound)."""
    rows = [row[0] for row in conn.execute(f"PRAGMA quick_check({PROBLEMS_SHOWN})")]
    return [] if rows == ["ok"] else rows


def create_index_file(path: Path, migrations: tuple[Migration, ...]) -> None:
    """Given a missing index path, build a migrated index beside it (mode 0600) and link it into place;
    if another process created the index meanwhile, keep theirs. Raise IndexUnavailable when it cannot be
    built (a failing migration), OSError when the folder cannot be written."""
    create_private_folder(path.parent)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(descriptor)
    try:
        db = connect_writer(Path(temporary))
        try:
            migrate(db, migrations)
        except sqlite3.Error as error:
            raise IndexUnavailable(f"cannot create the index {path}: {error}") from error
        finally:
            db.close()  # the last connection checkpoints the WAL into the file and removes it
        _fsync_file(temporary)
        _place_without_replacing(temporary, path)
        _fsync_folder(path.parent)
    finally:
        for leftover in (temporary, f"{temporary}-wal", f"{temporary}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _place_without_replacing(temporary: str, path: Path) -> None:
    """Give the finished file its name unless that name exists by now (someone else's index wins)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        return
    except OSError as error:
        # File systems without hard links (FAT, some FUSE and SMB mounts): a rename, checked first.
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        if not os.path.lexists(path):
            os.rename(temporary, path)


class IndexLock:
    """The single-instance lock of one index, held until `release()` (or the process ends)."""

    def __init__(self, path: Path, descriptor: int):
        self.path = path
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        """Let another daemon use the index. The file stays: removing it would race a starting daemon."""
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor releases the flock
            self._descriptor = None


def lock_path_of(index_path: Path) -> Path:
    """Given the index path, return its lock file's path (`<index>.lock`)."""
    return index_path.with_name(index_path.name + ".lock")


def lock_index(index_path: Path) -> IndexLock:
    """Given the index path, take its single-instance lock (`<index>.lock`, our pid written inside) and
    return it. Raise IndexInUse naming the pid of the process holding it, OSError when it cannot be made."""
    create_private_folder(index_path.parent)
    path = lock_path_of(index_path)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(descriptor)
        raise IndexInUse(
            f"the index {index_path} is in use by another comparimg daemon (pid {holder}, lock {path}); "
            "stop it first, or give this one another index"
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return IndexLock(path, descriptor)


def backup_path_of(index_path: Path, generation: int = 0) -> Path:
    """Given the index path, return the path of its newest backup (generation 0) or an older one."""
    suffix = ".backup" if generation == 0 else f".backup.{generation}"
    return index_path.with_name(index_path.name + suffix)


def backup_index(index_path: Path, kept: int = BACKUPS_KEPT) -> Path:
    """Given the index path, copy it whole with SQLite's online backup (writers may go on meanwhile) into a
    temp file beside it, check the copy, and make it `<index>.backup` (0600), the older ones moving one
    generation down, `kept` in all. Return the new backup's path. Raise IndexDamaged when the copy fails
    its check (the older backups are left alone), IndexUnavailable or OSError when it cannot be made."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{index_path.name}.", suffix=".backup-new", dir=index_path.parent
    )
    os.close(descriptor)
    try:
        _copy_checked(index_path, Path(temporary))
        _fsync_file(temporary)
        for generation in range(kept - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(backup_path_of(index_path, generation - 1), backup_path_of(index_path, generation))
        target = backup_path_of(index_path)
        os.replace(temporary, target)
        _fsync_folder(index_path.parent)
        return target
    finally:
        for leftover in (temporary, f"{temporary}-wal", f"{temporary}-shm", f"{temporary}-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _copy_checked(index_path: Path, copy: Path) -> None:
    try:
        source = sqlite3.connect(str(index_path), isolation_level=None)
        try:
            target = sqlite3.connect(str(copy), isolation_level=None)
            try:
                source.backup(target)
                target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
                problems = quick_check(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as error:
        if is_damage(error):
            message = f"the index {index_path} is damaged ({error}); the older backups are kept"
            raise IndexDamaged(message) from error
        raise IndexUnavailable(f"cannot back up the index {index_path}: {error}") from error
    if problems:
        raise IndexDamaged(
            f"the backup of {index_path} is damaged ({'; '.join(problems)}); the older backups are kept"
        )


def _fsync_file(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
