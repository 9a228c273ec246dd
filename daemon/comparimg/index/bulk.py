"""Bulk decisions in the index: the groups a rule looks at, the previewed set, and the batch's progress.

A preview stores the exact set a rule chose (one `bulk_items` row per file to trash or move, with the
identity the sorter re-checks); applying works through those rows only, so a group found after the
preview is never picked up. The batch id is the preview id, and every journaled action of the batch
carries it (`sort_actions.batch_id`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlite_utils import Database

from comparimg.decisions import CandidateGroup, CandidateMember, GroupPlan
from comparimg.index.connection import write_transaction
from comparimg.index.files import prefix_range
from comparimg.index.journal import action_of
from comparimg.index.path_text import PATH_PARAM, bind_path
from comparimg.model import Action, NotFound

ITEM_STATES = ("pending", "applied", "refused", "failed", "undone")

_CANDIDATES = """
SELECT g.id, g.kind, f.id, gm.suggested, f.path, f.state, f.size, f.device, f.inode, f.mtime_ns,
       coalesce(f.content_hash, ''), gm.reason != '', gm.confidence, gm.file_id = g.leader,
       EXISTS (SELECT 1 FROM decisions d WHERE d.file_id = f.id AND d.state IN ('queued', 'applied'))
FROM groups g
JOIN group_members gm ON gm.group_id = g.id
JOIN files f ON f.id = gm.file_id
WHERE g.kind IN ({kinds})
ORDER BY g.id, f.id
"""


def candidate_groups(
    db: Database, kinds: Sequence[str], reference_roots: Iterable[str]
) -> list[CandidateGroup]:
    """Given a reader (or the writer), the group kinds wanted and the reference roots, return every stored
    group of those kinds with its members, by id. A group's `confidence` is the lowest of the verifier's
    confidences on its members' edges; None when any member's edge was not judged (mode `hash`, the same
    bytes)."""
    ranges = [prefix_range(str(root)) for root in reference_roots]
    sql = _CANDIDATES.format(kinds=",".join("?" * len(kinds)))
    groups: list[CandidateGroup] = []
    current: tuple[int, str] | None = None
    members: list[CandidateMember] = []
    confidences: list[float | None] = []
    decided = False
    for row in db.execute(sql, list(kinds)):
        group_id, kind, file_id, suggested, path, state, size, device, inode, mtime_ns, digest, *rest = row
        picked, confidence, leader, has = rest
        if current is not None and current[0] != group_id:
            groups.append(CandidateGroup(*current, tuple(members), decided, _lowest(confidences)))
            members, confidences, decided = [], [], False
        current = (group_id, kind)
        reference = any(low <= path < high for low, high in ranges)
        members.append(
            CandidateMember(
                file_id,
                path,
                state,
                suggested,
                reference,
                size,
                device,
                inode,
                mtime_ns,
                digest,
                bool(picked),
            )
        )
        if not leader:
            confidences.append(confidence)
        decided = decided or bool(has)
    if current is not None:
        groups.append(CandidateGroup(*current, tuple(members), decided, _lowest(confidences)))
    return groups


def _lowest(confidences: list[float | None]) -> float | None:
    if not confidences or any(c is None for c in confidences):
        return None
    return min(c for c in confidences if c is not None)


def create_batch(
    db: Database,
    rule: dict[str, Any],
    summary: dict[str, Any],
    plans: Sequence[GroupPlan],
    target: str | None,
) -> int:
    """Given the writer, a rule, its preview figures and its plans, durably store the preview (state
    `previewed`) with one item per file to remove; return its id (the batch id)."""
    now = time.time()
    action = rule["action"]
    with write_transaction(db, durable=True):
        batch_id = db.execute(
            "INSERT INTO bulk_batches (rule, state, summary, created, updated) "
            "VALUES (?, 'previewed', ?, ?, ?) RETURNING id",
            [json.dumps(rule), json.dumps(summary), now, now],
        ).fetchone()[0]
        db.conn.executemany(
            "INSERT INTO bulk_items (batch_id, group_id, keeper_ids, file_id, action, target, path, device, "
            "inode, size, mtime_ns, content_hash, state) "
            f"VALUES (?, ?, ?, ?, ?, ?, {PATH_PARAM}, ?, ?, ?, ?, ?, 'pending')",
            [
                (
                    batch_id,
                    plan.group_id,
                    json.dumps([keeper.file_id for keeper in plan.keepers]),
                    member.file_id,
                    action,
                    target,
                    bind_path(member.path),
                    member.device,
                    member.inode,
                    member.size,
                    member.mtime_ns,
                    member.content_hash,
                )
                for plan in plans
                for member in plan.removed
            ],
        )
    return batch_id


def get_batch(db: Database, batch_id: int) -> dict[str, Any]:
    """Return one batch (rule and summary decoded). Raise NotFound."""
    row = db.execute("SELECT * FROM bulk_batches WHERE id = ?", [batch_id]).fetchone()
    if row is None:
        raise NotFound(f"no preview or batch {batch_id}")
    names = ("id", "rule", "state", "summary", "reason", "created", "updated")
    batch = dict(zip(names, row, strict=True))
    batch["rule"] = json.loads(batch["rule"])
    batch["summary"] = json.loads(batch["summary"])
    return batch


def set_batch_state(db: Database, batch_id: int, state: str, reason: str | None = None) -> None:
    """Durably set a batch's state (and reason)."""
    with write_transaction(db, durable=True):
        db.execute(
            "UPDATE bulk_batches SET state = ?, reason = ?, updated = ? WHERE id = ?",
            [state, reason, time.time(), batch_id],
        )


def item_counts(db: Database, batch_id: int) -> dict[str, int]:
    """Return the number of a batch's items in each state (every state present, zero when none)."""
    counts = dict.fromkeys(ITEM_STATES, 0)
    for state, count in db.execute(
        "SELECT state, count(*) FROM bulk_items WHERE batch_id = ? GROUP BY state", [batch_id]
    ):
        counts[state] = count
    return counts


def pending_items(db: Database, batch_id: int, limit: int) -> list[dict[str, Any]]:
    """Return up to `limit` of a batch's pending items, in order."""
    return list(
        db.query(
            "SELECT * FROM bulk_items WHERE batch_id = ? AND state = 'pending' ORDER BY id LIMIT ?",
            [batch_id, limit],
        )
    )


def sample_items(db: Database, batch_id: int, groups: int) -> list[dict[str, Any]]:
    """Return the items of the first `groups` groups of a batch, by group then item."""
    return list(
        db.query(
            "SELECT * FROM bulk_items WHERE batch_id = ? AND group_id IN (SELECT DISTINCT group_id "
            "FROM bulk_items WHERE batch_id = ? ORDER BY group_id LIMIT ?) ORDER BY group_id, id",
            [batch_id, batch_id, groups],
        )
    )


def attach_decision(db: Database, item: dict[str, Any]) -> int:
    """Given a pending item without a decision, queue its trash / move decision and link it to the item in
    one transaction; return the decision id.

    Not synced by itself: the sorter's journal intent, committed durably before the file moves, is a later
    commit of the same write-ahead log, and syncing the log makes every earlier commit durable with it. A
    power cut before that loses only this row, and the item is still pending: it is applied again."""
    now = time.time()
    with write_transaction(db):
        decision_id = db.execute(
            "INSERT INTO decisions (action, file_id, group_id, target, path, device, inode, size, mtime_ns, "
            "content_hash, state, created, updated) "
            f"VALUES (?, ?, ?, ?, {PATH_PARAM}, ?, ?, ?, ?, ?, 'queued', ?, ?) RETURNING id",
            [
                item["action"],
                item["file_id"],
                item["group_id"],
                item["target"],
                bind_path(item["path"]),
                item["device"],
                item["inode"],
                item["size"],
                item["mtime_ns"],
                item["content_hash"],
                now,
                now,
            ],
        ).fetchone()[0]
        db.execute("UPDATE bulk_items SET decision_id = ? WHERE id = ?", [decision_id, item["id"]])
    return decision_id


def finish_item(
    db: Database, item_id: int, state: str, action_id: int | None = None, reason: str | None = None
) -> None:
    """Record how one item ended.

    Not synced by itself (one sync per file is the sorter's to spend): a power cut may lose it, and then the
    item is pending again with its decision attached, and `apply_item` reads how it ended from the
    sorter's durable journal; a refusal is simply judged again."""
    with write_transaction(db):
        db.execute(
            "UPDATE bulk_items SET state = ?, action_id = coalesce(?, action_id), reason = ? WHERE id = ?",
            [state, action_id, reason, item_id],
        )


def decided_since(db: Database, file_ids: Sequence[int], own_decision: int | None) -> bool:
    """Return whether any of `file_ids` has a queued or applied decision other than `own_decision`."""
    marks = ",".join("?" * len(file_ids))
    row = db.execute(
        f"SELECT 1 FROM decisions WHERE file_id IN ({marks}) AND state IN ('queued', 'applied') "
        "AND id IS NOT ? LIMIT 1",
        [*file_ids, own_decision],
    ).fetchone()
    return row is not None


def done_actions(db: Database, batch_id: int, after: int, limit: int) -> list[Action]:
    """Return up to `limit` of a batch's trash / move actions with ids above `after` that are done (so can
    be undone), in order."""
    rows = db.query(
        "SELECT * FROM sort_actions WHERE batch_id = ? AND id > ? AND state = 'done' "
        "AND kind IN ('trash', 'move') ORDER BY id LIMIT ?",
        [batch_id, after, limit],
    )
    return [action_of(row) for row in rows]


def mark_items_undone(db: Database, action_ids: Sequence[int]) -> None:
    """Durably mark the items whose actions were undone."""
    if not action_ids:
        return
    marks = ",".join("?" * len(action_ids))
    with write_transaction(db, durable=True):
        db.execute(f"UPDATE bulk_items SET state = 'undone' WHERE action_id IN ({marks})", list(action_ids))


def list_batches(db: Database, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest batches (rule and summary decoded)."""
    ids = [row[0] for row in db.execute("SELECT id FROM bulk_batches ORDER BY id DESC LIMIT ?", [limit])]
    return [get_batch(db, batch_id) for batch_id in ids]
