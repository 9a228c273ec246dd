"""The freedesktop trash under a top folder, chosen and checked the way the specification says.

`$topdir/.Trash/$uid` is used when an administrator made `$topdir/.Trash` (a real folder with the sticky
bit); otherwise `$topdir/.Trash-$uid`. Each folder is checked (`fstat`) as it is opened without following
symlinks, so a folder planted by another user, or swapped for a symlink, is never written into. The rules
themselves are pure (`plan.trash_folder_problem`).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from comparimg.sorter import files
from comparimg.sorter.plan import trash_folder_problem, trash_homes


def folder_check(top: Path, uid: int) -> files.FolderCheck:
    """Return the check `files.open_folder` runs on each folder it opens below `top`: it raises ValueError
    (naming the folder and the broken rule) for one the specification forbids."""

    def check(component: PurePath, info: os.stat_result) -> None:
        problem = trash_folder_problem(component, info.st_mode, info.st_uid, uid)
        if problem is not None:
            raise ValueError(f"{top}: {problem}; not used")

    return check


def private(_: PurePath) -> bool:
    """Every folder the sorter creates in a freedesktop trash is created mode 0700."""
    return True


def choose(top: Path, uid: int) -> PurePath:
    """Return the trash folder to use under `top` (relative to it): the shared `.Trash/$uid` when `.Trash`
    passes the checks, else `.Trash-$uid` (created mode 0700). Raise ValueError when that one fails them."""
    shared, own = trash_homes(uid)
    check = folder_check(top, uid)
    try:
        with files.folder(top, shared.parent, check=check):
            pass
        with files.folder(top, shared, create=True, check=check, private=private):
            return shared
    except (OSError, ValueError):
        pass  # no usable shared trash: the specification falls back to the user's own
    try:
        with files.folder(top, own, create=True, check=check, private=private):
            return own
    except OSError as error:
        raise ValueError(f"cannot open the trash {top / own}: {error}") from error
