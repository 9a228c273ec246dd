"""Read queries for the review API: pages of groups with their state, filtered and sorted in SQL.

Owned by the web/sorter room. A group is "decided" when every member has a queued or applied decision,
"pending" otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from comparimg.index.files import prefix_range
from comparimg.index.path_text import bind_path

SORTS = {
    "size": "freed DESC, g.id",
    "count": "n DESC, g.id",
    "distance": "distance ASC, g.id",
    "newest": "g.created DESC, g.id DESC",
    "path": "first_path ASC, g.id",
    "id": "g.id",
}
STATES = ("pending", "decided")

_SUMMARY = """
SELECT g.id AS id, g.kind AS kind, g.created AS created, count(*) AS n,
       coalesce(sum(CASE WHEN gm.suggested = 'trash' THEN f.size END), 0) AS freed,
       max(gm.distance) AS distance, min(f.path) AS first_path,
       sum(EXISTS (SELECT 1 FROM decisions d WHERE d.file_id = gm.file_id
                   AND d.state IN ('queued', 'applied'))) AS decided,
       sum(f.path >= CAST(:low AS TEXT) AND f.path < CAST(:high AS TEXT)) AS in_folder
FROM groups g
JOIN group_members gm ON gm.group_id = g.id
JOIN files f ON f.id = gm.file_id
WHERE (:kind IS NULL OR g.kind = :kind)
GROUP BY g.id
HAVING (:state IS NULL OR (:state = 'pending' AND decided < n) OR (:state = 'decided' AND decided = n))
   AND (:folder IS NULL OR in_folder > 0)
"""


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One line of a group page: id, kind, creation time, member count, decided members, bytes to free."""

    id: int
    kind: str
    created: float
    members: int
    decided: int
    freed: int

    @property
    def state(self) -> str:
        """Return "decided" when every member has a decision, else "pending"."""
        return "decided" if self.decided >= self.members else "pending"


def group_page(
    db: Database, kind: str | None, state: str | None, folder: str | None, sort: str, limit: int, offset: int
) -> tuple[list[GroupSummary], int]:
    """Return (one page of group summaries, total matching) for the filters. Raise KeyError for a bad sort."""
    low, high = prefix_range(folder) if folder else ("", "")
    params: dict[str, Any] = {
        "kind": kind,
        "state": state,
        "folder": bind_path(folder),
        "low": bind_path(low),
        "high": bind_path(high),
    }
    total = db.execute(f"SELECT count(*) FROM ({_SUMMARY})", params).fetchone()[0]
    rows = db.execute(
        f"{_SUMMARY} ORDER BY {SORTS[sort]} LIMIT :limit OFFSET :offset",
        {**params, "limit": limit, "offset": offset},
    ).fetchall()
    return [_summary(row) for row in rows], total


def group_summary(db: Database, group_id: int) -> GroupSummary | None:
    """Return the summary of one group, or None."""
    row = db.execute(
        f"SELECT * FROM ({_SUMMARY}) WHERE id = :id",
        {"kind": None, "state": None, "folder": None, "low": "", "high": "", "id": group_id},
    ).fetchone()
    return _summary(row) if row else None


def _summary(row: tuple) -> GroupSummary:
    """Given a row of _SUMMARY, return its GroupSummary."""
    id_, kind, created, members, freed, _distance, _first_path, decided, _in_folder = row
    return GroupSummary(id_, kind, created, members, decided, freed)


def queued_count(db: Database) -> int:
    """Return the number of decisions waiting to be applied."""
    return db.execute("SELECT count(*) FROM decisions WHERE state = 'queued'").fetchone()[0]


def group_signature(db: Database) -> tuple[int, int, int]:
    """Return (groups, highest group id, memberships): it changes when groups are added, dropped or grow."""
    count, highest = db.execute("SELECT count(*), coalesce(max(id), 0) FROM groups").fetchone()
    members = db.execute("SELECT count(*) FROM group_members").fetchone()[0]
    return count, highest, members


def recent_errors(db: Database, limit: int) -> list[tuple[str, str]]:
    """Given a bound, return (path, reason) of at most `limit` files in `error` state, the most recently
    seen first (for `GET /api/status`; the export lists them all)."""
    return [
        (path, reason or "")
        for path, reason in db.execute(
            "SELECT path, error FROM files WHERE state = 'error' ORDER BY last_seen DESC, id DESC LIMIT ?",
            [limit],
        )
    ]
