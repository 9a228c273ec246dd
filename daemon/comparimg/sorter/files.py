"""The few system calls the sorter makes, each small and named for what it guarantees."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

from comparimg.model import FileIdentity

CHUNK = 1 << 20
CRASH_ENV = "COMPARIMG_CRASH_AT"


def crash_point(step: str) -> None:
    """Exit at once (no cleanup, like a power cut) when `$COMPARIMG_CRASH_AT` names this step.

    This is how the crash tests stop the sorter between two system calls; unset, it does nothing.
    """
    if os.environ.get(CRASH_ENV) == step:
        os._exit(70)


def identity_of(path: Path) -> FileIdentity | None:
    """Return the identity of a regular file at `path` (not following a final symlink), or None if absent."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileIdentity(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def inode_of(path: Path) -> int | None:
    """Return the inode at `path` (no symlink following), or None if nothing is there."""
    try:
        return os.lstat(path).st_ino
    except FileNotFoundError:
        return None


def inside_roots(path: str | Path, roots: tuple[Path, ...]) -> bool:
    """Return True when `path` resolves (symlinks followed) strictly inside one of `roots`."""
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(root) + os.sep) for root in roots)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk so a link or unlink in it survives a power cut."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_dirs_inside(folder: Path, base: Path) -> None:
    """Create `folder` (and parents) and check it resolves inside `base` (no symlink escapes).

    Raise ValueError when a symlinked component leads outside `base`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    real_base = os.path.realpath(base)
    if os.path.commonpath([os.path.realpath(folder), real_base]) != real_base:
        raise ValueError(f"{folder} resolves outside {base}")


def copy_durably(source: Path, temp: Path, on_first_chunk: Callable[[], None]) -> None:
    """Copy `source` to a new file `temp` (never an existing one), keep its times, fsync it.

    `on_first_chunk` runs after the first chunk is written (a crash point for half-copied files).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with open(source, "rb") as reader, os.fdopen(os.open(temp, flags, 0o600), "wb") as writer:
        first = True
        while chunk := reader.read(CHUNK):
            writer.write(chunk)
            if first:
                writer.flush()
                on_first_chunk()
                first = False
        writer.flush()
        os.fsync(writer.fileno())
    shutil.copystat(source, temp, follow_symlinks=False)


def same_file_system(source: Path, folder: Path) -> bool:
    """Return True when `source` and `folder` are on the same device (a hard link can join them)."""
    return os.lstat(source).st_dev == os.stat(folder).st_dev


def write_exclusive(path: Path, text: str) -> None:
    """Create `path` with `text`, fsynced; raise FileExistsError rather than replace anything."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def unlink_if_inode(path: Path, inode: int) -> bool:
    """Remove `path` only if it is still the inode we expect; return whether it was removed."""
    if inode_of(path) != inode:
        return False
    path.unlink()
    return True
