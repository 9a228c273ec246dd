"""Walking a root: every image file below it, with its identity, and every place the walk could not go.

Directory symlinks are followed, but a directory is entered at most once per walk (by device and inode), so
a link back to an ancestor is reported as a loop instead of walked forever.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from comparimg.model import FileIdentity


@dataclass(frozen=True, slots=True)
class FoundFile:
    """An image file the walk found: absolute path, the root it was found under, its identity."""

    path: str
    root: str
    identity: FileIdentity


@dataclass(frozen=True, slots=True)
class WalkProblem:
    """A path the walk could not follow, and why; `unreadable_dir`: the files below it were not seen;
    `root_lost`: the root itself went away during the walk (unmounted, moved), so nothing it did not see is
    gone."""

    path: str
    reason: str
    unreadable_dir: bool = False
    root_lost: bool = False


ROOT_LOST = "the root went away during the walk (unmounted or moved); nothing marked missing"


def identity_of(stat_result: os.stat_result) -> FileIdentity:
    """Given an `os.stat` result, return the FileIdentity it describes."""
    return FileIdentity(stat_result.st_dev, stat_result.st_ino, stat_result.st_size, stat_result.st_mtime_ns)


def exclusion_test(exclude: Iterable[str]) -> Callable[[str], bool] | None:
    """Given glob patterns, return a function telling whether a path relative to its root matches one of
    them (as `fnmatch.fnmatchcase` does), or None when there is no pattern. The patterns are compiled into
    one expression: a walk tests every entry, and a test per pattern cost more than the `stat`."""
    patterns = tuple(exclude)
    if not patterns:
        return None
    match = re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns)).match
    return lambda relative_path: match(relative_path) is not None


def relative_path(path: str, root: str) -> str:
    """Given a path below (or at) a root, return it relative to the root (`os.path.relpath`, cheaply)."""
    prefix = root if root.endswith(os.sep) else root + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)


def has_extension(name: str, extensions: frozenset[str]) -> bool:
    """Given a file name and lower-case extensions with their dot, return whether the name has one of them."""
    stem = name.lstrip(".")  # as os.path.splitext, which a walk paid more for than for the `stat`
    dot = stem.rfind(".")
    return dot > 0 and stem[dot:].lower() in extensions


def walk_images(
    root: str, extensions: frozenset[str], exclude: tuple[str, ...] = ()
) -> Iterator[FoundFile | WalkProblem]:
    """Given an absolute root folder, yield every image file below it and every problem met, depth first.

    A root that is a file is yielded alone when it has an image extension. Nothing is raised for a path
    below the root; a root that cannot be read is yielded as a WalkProblem.
    """
    try:
        root_stat = os.stat(root)
    except OSError as error:
        yield WalkProblem(root, describe_os_error(error), unreadable_dir=True)
        return
    if not stat.S_ISDIR(root_stat.st_mode):
        if has_extension(root, extensions):
            yield _file_entry(root, root, root_stat)
        return
    root_key = (root_stat.st_dev, root_stat.st_ino)
    visited = {root_key}
    excluded = exclusion_test(exclude)
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(root, (root_key,))]
    while stack:
        folder, ancestors = stack.pop()
        subfolders = yield from _walk_folder(folder, root, ancestors, visited, extensions, excluded)
        if subfolders is None or not still_the_same_folder(root, root_key):
            yield WalkProblem(root, ROOT_LOST, unreadable_dir=True, root_lost=True)
            return
        stack.extend(reversed(subfolders))


def still_the_same_folder(path: str, key: tuple[int, int]) -> bool:
    """Given a folder and its (device, inode) when the walk began, return whether it is still that folder:
    an unmounted disk leaves its mount point, another folder, behind."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == key


def _walk_folder(folder, root, ancestors, visited, extensions, excluded):
    """Yield the images and problems of one folder; return its subfolders to walk, or None when a problem
    turned out to be the root going away (the caller then stops: nothing more it does not see is gone)."""
    root_key = ancestors[0]
    subfolders = []
    for item in _folder_entries(folder, root, ancestors, visited, extensions, excluded, subfolders):
        if isinstance(item, WalkProblem) and not still_the_same_folder(root, root_key):
            return None
        yield item
    return subfolders


def _folder_entries(folder, root, ancestors, visited, extensions, excluded, subfolders):
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        yield WalkProblem(folder, describe_os_error(error), unreadable_dir=True)
        return
    for entry in entries:
        if excluded is not None and excluded(relative_path(entry.path, root)):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError as error:
            yield WalkProblem(entry.path, describe_os_error(error))
            continue
        if is_dir:
            subfolders += yield from _enter(entry, ancestors, visited)
        elif has_extension(entry.name, extensions):
            yield _file_entry(entry.path, root, None)


def _enter(entry: os.DirEntry, ancestors, visited):
    try:
        folder_stat = entry.stat()
    except OSError as error:
        yield WalkProblem(entry.path, describe_os_error(error), unreadable_dir=True)
        return []
    key = (folder_stat.st_dev, folder_stat.st_ino)
    if key in ancestors:
        yield WalkProblem(entry.path, f"symbolic link loop (points back to {os.path.realpath(entry.path)})")
        return []
    if key in visited:
        return []  # the same folder reached through another link: walked once already
    visited.add(key)
    return [(entry.path, (*ancestors, key))]


def _file_entry(path: str, root: str, known: os.stat_result | None) -> FoundFile | WalkProblem:
    # One item, not a generator: a walk makes one a file, and a generator each cost more than the `stat`.
    try:
        file_stat = known or os.stat(path)
    except OSError as error:
        reason = describe_os_error(error)
        if isinstance(error, FileNotFoundError) and os.path.islink(path):
            reason = "broken symbolic link"
        return WalkProblem(path, reason)
    if not stat.S_ISREG(file_stat.st_mode):
        return WalkProblem(path, "not a regular file")
    return FoundFile(path, root, identity_of(file_stat))


def describe_os_error(error: OSError) -> str:
    """Given an OSError from the file system, return a short reason for people."""
    if error.errno == errno.ELOOP:
        return "symbolic link loop"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.ENOENT:
        return "not found"
    return (error.strerror or type(error).__name__).lower()
