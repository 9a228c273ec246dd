"""Rows that relate files: verified match edges, duplicate groups, not-duplicate pairs, walk errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlite_utils import Database

from comparimg.index.files import BATCH, chunked, prefix_range
from comparimg.index.path_text import PATH_PARAM, bind_path
from comparimg.model import Group, GroupMember, Match


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group as stored: its id and the group."""

    id: int
    group: Group


@dataclass(frozen=True, slots=True)
class WalkError:
    """A path the walk could not enter or read (a directory, a symlink loop...), with the reason."""

    path: str
    reason: str


class RelationRows:
    """Reads and writes of matches, groups, not-duplicates and walk errors (a part of `Index`)."""

    db: Database

    def replace_matches(self, file_id: int, matches: Iterable[Match]) -> None:
        """Given a file id and its verified matches, make them the file's only match edges."""
        self.db.execute("DELETE FROM matches WHERE file_a = ? OR file_b = ?", [file_id, file_id])
        self.add_matches(matches)

    def add_matches(self, matches: Iterable[Match]) -> None:
        """Given verified matches (file_a < file_b), store them, replacing an existing edge between a pair."""
        self.db.conn.executemany(
            "INSERT OR REPLACE INTO matches "
            "(file_a, file_b, kind, distance, orientation, verdict, confidence) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (m.file_a, m.file_b, m.kind, m.distance, m.orientation, m.verdict, m.confidence)
                for m in matches
            ],
        )

    def matches_touching(self, file_ids: Iterable[int]) -> list[Match]:
        """Given file ids, return every match edge with at least one end among them."""
        found: dict[tuple[int, int], Match] = {}
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                "SELECT file_a, file_b, kind, distance, orientation, verdict, confidence FROM matches "
                f"WHERE file_a IN ({marks}) OR file_b IN ({marks})",
                chunk + chunk,
            ):
                found[(row[0], row[1])] = Match(*row)
        return sorted(found.values(), key=lambda m: (m.file_a, m.file_b))

    def component_of(self, file_ids: Iterable[int]) -> set[int]:
        """Given file ids, return them with every file connected to them through match edges."""
        component = set(file_ids)
        frontier = set(component)
        while frontier:
            neighbours = set()
            for m in self.matches_touching(frontier):
                neighbours.update((m.file_a, m.file_b))
            frontier = neighbours - component
            component |= frontier
        return component

    def match_count(self) -> int:
        """Return the number of verified match edges."""
        return self.db.execute("SELECT count(*) FROM matches").fetchone()[0]

    def replace_groups(self, file_ids: Iterable[int], groups: Iterable[Group], now: float) -> list[int]:
        """Given file ids and their new groups, drop every group holding one of them and store the new ones.

        A new group with exactly the members of an old one keeps the old id (so links stay valid).
        Return the ids of the stored groups, in order.
        """
        old = {frozenset(m.file_id for m in sg.group.members): sg.id for sg in self.groups_of(file_ids)}
        kept = set()
        ids = []
        for group in groups:
            same = old.get(frozenset(m.file_id for m in group.members))
            if same is not None:
                self.db.execute("DELETE FROM group_members WHERE group_id = ?", [same])
                self.db.execute(
                    "UPDATE groups SET kind = ?, leader = ? WHERE id = ?", [group.kind, group.leader, same]
                )
                kept.add(same)
                group_id = same
            else:
                group_id = self.db.execute(
                    "INSERT INTO groups (kind, leader, created) VALUES (?, ?, ?) RETURNING id",
                    [group.kind, group.leader, now],
                ).fetchone()[0]
            self._insert_members(group_id, group.members)
            ids.append(group_id)
        for group_id in set(old.values()) - kept:
            self.db.execute("DELETE FROM groups WHERE id = ?", [group_id])
        return ids

    def _insert_members(self, group_id: int, members: Iterable[GroupMember]) -> None:
        self.db.conn.executemany(
            "INSERT INTO group_members "
            "(group_id, file_id, distance, orientation, suggested, verdict, confidence, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    group_id,
                    m.file_id,
                    m.distance,
                    m.orientation,
                    m.suggested,
                    m.verdict,
                    m.confidence,
                    m.reason,
                )
                for m in members
            ],
        )

    def groups_of(self, file_ids: Iterable[int]) -> list[StoredGroup]:
        """Given file ids, return the stored groups that hold at least one of them."""
        group_ids: set[int] = set()
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            group_ids.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT DISTINCT group_id FROM group_members WHERE file_id IN ({marks})", chunk
                )
            )
        return self.groups_by_ids(sorted(group_ids))

    def groups_by_ids(self, group_ids: Iterable[int]) -> list[StoredGroup]:
        """Given group ids, return those groups that exist, by id, members in stored order."""
        found = []
        for chunk in chunked(list(group_ids)):
            marks = ",".join("?" * len(chunk))
            heads = self.db.execute(
                f"SELECT id, kind, leader FROM groups WHERE id IN ({marks}) ORDER BY id", chunk
            ).fetchall()
            members = self._members_of([h[0] for h in heads])
            found.extend(
                StoredGroup(gid, Group(kind, leader, tuple(members.get(gid, ()))))
                for gid, kind, leader in heads
            )
        return found

    def _members_of(self, group_ids: list[int]) -> dict[int, list[GroupMember]]:
        members: dict[int, list[GroupMember]] = {}
        if not group_ids:
            return members
        marks = ",".join("?" * len(group_ids))
        for gid, *row in self.db.execute(
            "SELECT group_id, file_id, distance, orientation, suggested, verdict, confidence, reason "
            f"FROM group_members WHERE group_id IN ({marks}) "
            "ORDER BY group_id, suggested = 'trash', reason = '', distance, file_id",
            group_ids,
        ):
            members.setdefault(gid, []).append(GroupMember(*row))
        return members

    def iter_groups(self, batch: int = BATCH) -> Iterator[StoredGroup]:
        """Yield every stored group, by id."""
        last = 0
        while True:
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM groups WHERE id > ? ORDER BY id LIMIT ?", [last, batch]
                )
            ]
            if not ids:
                return
            yield from self.groups_by_ids(ids)
            last = ids[-1]

    def group_counts(self) -> dict[str, int]:
        """Return the number of groups of each kind and the number of files in a duplicate group (exact or
        near: a file only in a `similar` group is not counted)."""
        counts = {"exact": 0, "near": 0, "similar": 0}
        for kind, n in self.db.execute("SELECT kind, count(*) FROM groups GROUP BY kind"):
            counts[kind] = n
        counts["grouped_files"] = self.db.execute(
            "SELECT count(DISTINCT file_id) FROM group_members JOIN groups ON groups.id = group_id "
            "WHERE kind != 'similar'"
        ).fetchone()[0]
        return counts

    def add_not_duplicate(self, file_a: int, file_b: int, now: float) -> None:
        """Given two file ids a person said are not duplicates, record the pair and drop their edge."""
        a, b = sorted((file_a, file_b))
        self.db.execute(
            "INSERT OR IGNORE INTO not_duplicates (file_a, file_b, created) VALUES (?, ?, ?)", [a, b, now]
        )
        self.db.execute("DELETE FROM matches WHERE file_a = ? AND file_b = ?", [a, b])

    def not_duplicate_pairs(self, file_ids: Iterable[int] | None = None) -> set[tuple[int, int]]:
        """Return the not-duplicate pairs (a < b), all of them or those touching the given file ids."""
        if file_ids is None:
            return {tuple(r) for r in self.db.execute("SELECT file_a, file_b FROM not_duplicates")}
        pairs: set[tuple[int, int]] = set()
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            pairs.update(
                tuple(r)
                for r in self.db.execute(
                    "SELECT file_a, file_b FROM not_duplicates "
                    f"WHERE file_a IN ({marks}) OR file_b IN ({marks})",
                    chunk + chunk,
                )
            )
        return pairs

    def record_walk_error(self, path: str, root: str, reason: str, now: float) -> None:
        """Given a path the walk could not read and the reason, record (or refresh) it."""
        self.db.execute(
            f"INSERT INTO walk_errors (path, root, reason, seen) VALUES ({PATH_PARAM}, {PATH_PARAM}, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET "
            "root = excluded.root, reason = excluded.reason, seen = excluded.seen",
            [bind_path(path), bind_path(root), reason, now],
        )

    def clear_walk_errors(self, root: str) -> None:
        """Given a root about to be walked again, forget the walk errors recorded below it."""
        self.db.execute(f"DELETE FROM walk_errors WHERE {_AT_OR_BELOW}", _bounds(root))

    def errors_under(self, roots: Iterable[str]) -> list[WalkError]:
        """Given roots, return the walk errors and the files in `error` state at or below them, by path."""
        found = []
        for root in roots:
            found += [
                WalkError(*r)
                for r in self.db.execute(
                    f"SELECT path, reason FROM walk_errors WHERE {_AT_OR_BELOW}", _bounds(root)
                )
            ]
            found += [
                WalkError(*r)
                for r in self.db.execute(  # a root may be a file given by name
                    f"SELECT path, error FROM files WHERE state = 'error' AND ({_AT_OR_BELOW})", _bounds(root)
                )
            ]
        return sorted(set(found), key=lambda e: e.path)


# A path column at a directory or below it (the directory, then the bounds of `prefix_range`): see `_bounds`.
_AT_OR_BELOW = f"path = {PATH_PARAM} OR (path >= {PATH_PARAM} AND path < {PATH_PARAM})"


def _bounds(directory: str) -> list:
    """Given a directory, return the parameters of `_AT_OR_BELOW`."""
    return [bind_path(p) for p in (directory.rstrip("/"), *prefix_range(directory))]
