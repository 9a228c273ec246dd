"""The decisions room (pure): which member of a duplicate group to keep.

Keep rules, in order: every file in a reference folder is kept; otherwise the single keeper is the file
with the most pixels, then the biggest file, then the oldest mtime, then the shortest path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from comparimg.model import FileFacts, Group


def keeper_key(facts: FileFacts) -> tuple:
    """Given a file's facts, return its sort key in keeper order (first = best to keep): reference files,
    then more pixels, a bigger file, an older mtime, a shorter path, then path and id."""
    return (
        not facts.reference,
        -facts.width * facts.height,
        -facts.size,
        facts.mtime_ns,
        len(facts.path),
        facts.path,
        facts.file_id,
    )


def suggest_keeper(members: Sequence[FileFacts]) -> int:
    """Given a group's members (at least one), return the file id of the one to keep by the keep rules
    (the first reference file when there are reference files; all of them are kept, see `keepers`).
    Raise ValueError for an empty group."""
    if not members:
        raise ValueError("a group has at least one member")
    return min(members, key=keeper_key).file_id


def keepers(members: Sequence[FileFacts]) -> frozenset[int]:
    """Given a group's members, return the ids of the files to keep: every reference file, else the one
    `suggest_keeper` picks."""
    references = frozenset(facts.file_id for facts in members if facts.reference)
    return references or frozenset({suggest_keeper(members)})


def mark_suggestions(group: Group, files: Mapping[int, FileFacts]) -> Group:
    """Given a group and the facts of (at least) its members, return the group with each member's
    `suggested` set to "keep" or "trash" by the keep rules. Raise KeyError for a member without facts."""
    keep = keepers([files[member.file_id] for member in group.members])
    members = tuple(
        replace(member, suggested="keep" if member.file_id in keep else "trash") for member in group.members
    )
    return replace(group, members=members)
