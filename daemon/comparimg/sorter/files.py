"""The few system calls the sorter makes, each small and named for what it guarantees.

Everything below a configured folder (a root, the trash, a move target) is reached through directory file
descriptors: the configured folder is opened by its path (the owner of the configuration chose it), then
every folder under it is opened with `O_NOFOLLOW | O_DIRECTORY` relative to its parent, and files are
opened, linked and unlinked relative to those descriptors. A name swapped for a symlink between a check and
an action therefore makes the action fail instead of reaching outside.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath

from comparimg.config import deepest_root
from comparimg.model import Conflict, FileIdentity, NotFound, Refused

CHUNK = 1 << 20
CRASH_ENV = "COMPARIMG_CRASH_AT"
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a file's name must not hang the sorter.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

FolderCheck = Callable[[PurePath, os.stat_result], None]


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
    return identity_of_stat(info)


def identity_of_stat(info: os.stat_result) -> FileIdentity:
    """Return the (device, inode, size, mtime_ns) identity of a stat result."""
    return FileIdentity(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def inside_roots(path: str | Path, roots: tuple[Path, ...]) -> bool:
    """Return True when `path` resolves (symlinks followed) strictly inside one of `roots`."""
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(root) + os.sep) for root in roots)


def descriptor_path(descriptor: int) -> str:
    """Return a path that opens the very file behind `descriptor` again (Linux's /proc/self/fd link), so a
    function that takes a path reads the file we opened and checked, not whatever the name holds now."""
    return f"/proc/self/fd/{descriptor}"


# --- folders ------------------------------------------------------------------------------------------


def open_folder(
    base: Path,
    relative: PurePath,
    create: bool = False,
    check: FolderCheck | None = None,
    private: Callable[[PurePath], bool] | None = None,
    create_base: bool = True,
) -> int:
    """Given a configured folder and a folder path relative to it, return a descriptor of that folder.

    `base` is opened by its path (created when missing, if `create` and `create_base`); each component of
    `relative` is opened relative to its parent without following a symlink (created first when `create`,
    mode 0700 where `private(component)` says so).
    `check(component, fstat)` may raise ValueError to refuse a component. Raise OSError (ELOOP / ENOTDIR
    when a component is a symlink or not a folder, FileNotFoundError when missing) or ValueError.
    """
    if create and create_base:
        base.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walked = PurePath()
        for part in relative.parts:
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"{relative} is not a plain relative folder")
            walked = walked / part
            if create:
                mode = 0o700 if private is not None and private(walked) else 0o777
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=descriptor)
            child = os.open(part, FOLDER_FLAGS, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = child
            if check is not None:
                check(walked, os.fstat(descriptor))
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise


@contextlib.contextmanager
def folder(
    base: Path,
    relative: PurePath,
    create: bool = False,
    check: FolderCheck | None = None,
    private: Callable[[PurePath], bool] | None = None,
    create_base: bool = True,
) -> Iterator[int]:
    """`open_folder` as a context manager that closes the descriptor."""
    descriptor = open_folder(base, relative, create, check, private, create_base)
    try:
        yield descriptor
    finally:
        os.close(descriptor)


def stat_in(base: Path, path: Path) -> os.stat_result | None:
    """Given a configured folder and a path below it, return the lstat of that path reached without following
    a symlink on the way, or None when it is absent or a folder on the way is a symlink."""
    try:
        with folder(base, path.parent.relative_to(base)) as parent:
            return os.stat(path.name, dir_fd=parent, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:  # ELOOP: a symlink on the way; what is behind it is not ours
            return None
        raise


def unlink_in(base: Path, path: Path, inode: int) -> bool:
    """Remove `path` (reached below `base` without following symlinks) only if it is still `inode`; return
    whether it was removed. The folder is fsynced so the removal survives a power cut."""
    try:
        parent = open_folder(base, path.parent.relative_to(base))
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return unlink_at(parent, path.name, inode)
    finally:
        os.close(parent)


def unlink_at(parent: int, name: str, inode: int) -> bool:
    """Remove `name` in the folder `parent` only if it is still `inode`; fsync the folder; return whether it
    was removed."""
    try:
        if os.stat(name, dir_fd=parent, follow_symlinks=False).st_ino != inode:
            return False
    except FileNotFoundError:
        return False
    os.unlink(name, dir_fd=parent)
    os.fsync(parent)
    return True


def exists_at(parent: int, name: str) -> bool:
    """Return whether anything (a symlink included) is called `name` in the folder `parent`."""
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def inode_at(parent: int, name: str) -> int | None:
    """Return the inode called `name` in the folder `parent` (no symlink following), or None."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return None


# --- files --------------------------------------------------------------------------------------------


def open_regular(parent: int, name: str) -> tuple[int, os.stat_result]:
    """Open `name` in the folder `parent` for reading without following a symlink; return (descriptor,
    fstat). Raise OSError (ELOOP for a symlink), or ValueError when it is not a regular file."""
    descriptor = os.open(name, READ_FLAGS, dir_fd=parent)
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        raise ValueError(f"{name} is not a regular file")
    os.set_blocking(descriptor, True)
    return descriptor, info


def same_version(before: os.stat_result, now: os.stat_result) -> bool:
    """Return whether a file was left alone between two stats of it: same inode, size, mtime and ctime
    (an edit in place changes mtime; chmod, a rename over it or a hard link change ctime)."""
    keys = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return all(getattr(before, key) == getattr(now, key) for key in keys)


def copy_durably(source: int, parent: int, temp: str, on_first_chunk: Callable[[], None]) -> int:
    """Copy the open file `source` to a new file `temp` in the folder `parent` (never an existing one), keep
    its times, fsync it; return the new file's inode.

    `on_first_chunk` runs after the first chunk is written (a crash point for half-copied files).
    """
    info = os.fstat(source)
    writer = os.open(temp, CREATE_FLAGS, 0o600, dir_fd=parent)
    try:
        offset, first = 0, True
        while chunk := os.pread(source, CHUNK, offset):
            _write_all(writer, chunk)
            offset += len(chunk)
            if first:
                on_first_chunk()
                first = False
        os.utime(writer, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.fsync(writer)
        return os.fstat(writer).st_ino
    finally:
        os.close(writer)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def write_exclusive_at(parent: int, name: str, text: str) -> None:
    """Create `name` in the folder `parent` with `text`, fsynced; raise FileExistsError rather than replace
    anything (a symlink planted under the name included)."""
    descriptor = os.open(name, CREATE_FLAGS, 0o600, dir_fd=parent)
    try:
        _write_all(descriptor, text.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def link_open_file(source: int, parent: int, name: str) -> None:
    """Give the open file `source` the new name `name` in the folder `parent` (never replacing anything).

    Linking the descriptor (through its /proc link, which linkat follows to the open file) rather than the
    source's name means the file linked is the one that was checked, even if the name was swapped since.
    """
    os.link(descriptor_path(source), name, dst_dir_fd=parent, follow_symlinks=True)


def open_indexed_file(path: str, identity: FileIdentity, roots: tuple[Path, ...]) -> int:
    """Given an indexed file's path and (device, inode, size, mtime_ns) and the configured roots, return a
    read-only descriptor of that very file: its folders walked from its root without following symlinks,
    the file itself not followed either, and its fstat matching the indexed identity. Serve from it.

    Raise Refused (outside every root, a symlink or a non-folder on the way, not a regular file), NotFound
    (not on disk any more) or Conflict (another file, or changed since it was indexed).
    """
    root = deepest_root(path, roots)
    if root is None or path == root:
        raise Refused(f"{path} is not inside a configured root")
    target = Path(path)
    try:
        parent = open_folder(Path(root), target.parent.relative_to(root))
    except FileNotFoundError as error:
        raise NotFound(f"{path} is not on disk any more") from error
    except (OSError, ValueError) as error:
        raise Refused(f"{target.parent} cannot be reached without following a symlink: {error}") from error
    try:
        descriptor, info = open_regular(parent, target.name)
    except FileNotFoundError as error:
        raise NotFound(f"{path} is not on disk any more") from error
    except (OSError, ValueError) as error:
        raise Refused(f"{path} is not a regular file: {error}") from error
    finally:
        os.close(parent)
    if identity_of_stat(info) != identity:
        os.close(descriptor)
        raise Conflict(f"{path} changed on disk since it was indexed")
    return descriptor
