"""Pure planning for the sorter: where a file goes, how a taken name is avoided, and what recovery does.

Nothing here touches the disk: every function takes values (paths, observations) and returns values, so the
rules that decide the fate of a file are tested on their own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePath
from urllib.parse import quote

MAX_SUFFIX = 10_000
SHARED_TRASH = ".Trash"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one file goes: the preferred destination and, for the freedesktop trash, its info folder."""

    dest: Path
    info_dir: Path | None = None


def relative_to_root(source: PurePath, roots: tuple[PurePath, ...]) -> tuple[PurePath, PurePath]:
    """Given an absolute source path and the configured roots, return (root, path relative to it).

    The deepest root wins when roots nest. Raise ValueError if the path is under no root or climbs out of it.
    """
    best: PurePath | None = None
    for root in roots:
        deeper = best is None or len(root.parts) > len(best.parts)
        if source.is_relative_to(root) and source != root and deeper:
            best = root
    if best is None:
        raise ValueError(f"{source} is not inside a configured root")
    relative = source.relative_to(best)
    if ".." in relative.parts:
        raise ValueError(f"{source} climbs out of its root")
    return best, relative


def trash_placement(
    source: PurePath,
    roots: tuple[PurePath, ...],
    trash_dir: Path,
    layout: str,
    uid: int,
    home: PurePath | None = None,
) -> Placement:
    """Given a file to trash, return where it lands.

    The "folder" layout keeps the path relative to its root under `trash_dir`, prefixed by the root's name so
    that two roots never mix. The "freedesktop" layout uses `trash_dir/HOME/files/NAME` with the
    `.trashinfo` file in `HOME/info/` (the original path goes into the info file, as the specification
    wants); HOME is `home` (`.Trash/$uid` or `.Trash-$uid`, see `trash_homes`), `.Trash-$uid` by default.
    Raise ValueError if the source is outside every root or the layout is unknown.
    """
    root, relative = relative_to_root(source, roots)
    if layout == "folder":
        return Placement(dest=trash_dir / (root.name or "root") / relative)
    if layout == "freedesktop":
        base = trash_dir / (home or trash_homes(uid)[1])
        return Placement(dest=base / "files" / source.name, info_dir=base / "info")
    raise ValueError(f"unknown trash layout {layout!r}")


def trash_homes(uid: int) -> tuple[PurePath, PurePath]:
    """Return the two trash folders the freedesktop specification allows under a top folder, in the order
    it wants them tried: the administrator's shared `.Trash/$uid`, then the user's own `.Trash-$uid`."""
    return PurePath(SHARED_TRASH) / str(uid), PurePath(f".Trash-{uid}")


def trash_folder_problem(component: PurePath, mode: int, owner: int, uid: int) -> str | None:
    """Given a folder on the way into a freedesktop trash (relative to the top folder), its `st_mode` and
    owner as `fstat` gives them for the folder opened without following symlinks, return why the
    specification forbids using it, or None.

    `.Trash` must be a real folder with the sticky bit (so users cannot remove each other's `$uid`);
    `.Trash/$uid` and `.Trash-$uid` must be folders owned by the user that nobody else can write to (one
    made by another user, say mode 0777, would hand that user every trashed photo).
    """
    if not stat.S_ISDIR(mode):
        return f"{component} is not a folder"
    if component == PurePath(SHARED_TRASH):
        return None if mode & stat.S_ISVTX else f"{component} has no sticky bit"
    if component in trash_homes(uid):
        if owner != uid:
            return f"{component} belongs to uid {owner}, not to uid {uid}"
        if mode & 0o022:
            return f"{component} can be written by other users (mode {stat.S_IMODE(mode):04o})"
    return None


def move_placement(
    source: PurePath, roots: tuple[PurePath, ...], targets: dict[str, Path], target: str
) -> Placement:
    """Given a file and the name of a configured move target, return where it lands (relative path kept).

    Raise ValueError for an unknown target name or a source outside every root.
    """
    if target not in targets:
        raise ValueError(f"unknown move target {target!r}; configured: {sorted(targets)}")
    root, relative = relative_to_root(source, roots)
    return Placement(dest=targets[target] / (root.name or "root") / relative)


def candidate_paths(preferred: Path, limit: int = MAX_SUFFIX) -> Iterator[Path]:
    """Yield `preferred`, then `name (1).ext`, `name (2).ext`… : the names tried so nothing is replaced."""
    yield preferred
    suffix = "".join(preferred.suffixes[-1:])
    stem = preferred.name[: len(preferred.name) - len(suffix)] if suffix else preferred.name
    for number in range(1, limit):
        yield preferred.with_name(f"{stem} ({number}){suffix}")


def temp_path_for(dest: Path, action_id: int) -> Path:
    """Return the hidden temporary name used while copying across file systems (same folder as `dest`)."""
    return dest.with_name(f".comparimg-{action_id}.part")


def trashinfo_text(original: PurePath, when: datetime) -> str:
    """Return the body of a freedesktop `.trashinfo` file for a file trashed from `original` at `when`."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"[Trash Info]\nPath={quote(os.fsencode(str(original)), safe='/')}\nDeletionDate={stamp}\n"


@dataclass(frozen=True, slots=True)
class Observation:
    """What recovery sees on disk for one open action.

    `*_inode` is None when the path does not exist. `dest_hash_ok` says the destination holds the journaled
    bytes (None when not checked). `source_unchanged` says the source still has the journaled identity.
    """

    source_inode: int | None
    dest_inode: int | None
    temp_inode: int | None
    dest_hash_ok: bool | None
    source_unchanged: bool
    cross_fs: bool
    journaled_inode: int


def recovery_decision(seen: Observation) -> str:
    """Given what is on disk for an open action, return what recovery must do.

    "finish": the destination holds the file, so drop whatever remains of the source (and temp) and record
    done. "rollback": the destination does not hold the file, so drop the temp / our destination and leave
    the source where it was. "lost": neither place holds it (someone else moved it): record failure, touch
    nothing.
    """
    if seen.dest_inode is None:
        return "rollback" if seen.source_inode is not None else "lost"
    if not seen.cross_fs:
        # Same file system: the destination is a hard link of the source, or the source is already gone.
        if seen.dest_inode == seen.journaled_inode:
            return "finish"
        return "rollback" if seen.source_inode is not None else "lost"
    ours = seen.temp_inode is None or seen.temp_inode == seen.dest_inode
    source_safe = seen.source_inode is None or seen.source_unchanged
    if ours and seen.dest_hash_ok and source_safe:
        return "finish"
    return "rollback" if seen.source_inode is not None else "lost"
