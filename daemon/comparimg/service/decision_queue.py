"""The decision queue: check files, queue decisions, apply them through the sorter.

Plain functions with no HTTP in them; they run on the index's one writer thread (`door.Door` calls them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comparimg.config import Settings
from comparimg.index import FileRow, Index, journal
from comparimg.model import FileIdentity, NotFound, Refused
from comparimg.service import labelling
from comparimg.sorter import ActionResult, Sorter, SortRequest, plan
from comparimg.sorter.files import inside_roots

ACTIONS = ("keep", "trash", "move", "not_duplicates")
DECISION_STATES = ("queued", "applied", "refused", "cancelled", "failed", "undone")
ACTION_STATES = plan.ACTION_STATES  # the sorter's journal rows, as the API lists them
ACTION_KINDS = plan.ACTION_KINDS


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """A checked `POST /api/decisions` body."""

    action: str
    file_id: int | None = None
    file_ids: tuple[int, ...] = ()
    group_id: int | None = None
    target: str | None = None


def checked_file(index: Index, file_id: int, settings: Settings) -> FileRow:
    """Return the row of an indexed, hashed file inside a configured root.

    Raise NotFound for an unknown id, Refused for a file in error / missing or outside the roots.
    """
    row = index.file_by_id(file_id)
    if row is None:
        raise NotFound(f"no file {file_id}")
    if row.state != "ok" or row.fingerprint is None:
        raise Refused(f"file {file_id} is {row.state}, not a hashed file present on disk")
    if not inside_roots(row.path, settings.root_paths()):
        raise Refused(f"file {file_id} is not inside a configured root")
    return row


def group_file_ids(index: Index, group_id: int) -> list[int]:
    """Return the member ids of a group. Raise NotFound."""
    groups = index.groups_by_ids([group_id])
    if not groups:
        raise NotFound(f"no group {group_id}")
    return [member.file_id for member in groups[0].group.members]


def queue_decision(index: Index, decision: DecisionInput, settings: Settings) -> dict[str, Any]:
    """Queue keep / trash / move for one file (replacing its previous queued decision); return the row.

    Raise NotFound, Refused (file outside the roots, unknown move target).
    """
    if decision.action == "move" and decision.target not in settings.sorter.move_targets:
        raise Refused(
            f"unknown move target {decision.target!r}; configured: {sorted(settings.sorter.move_targets)}"
        )
    assert decision.file_id is not None
    row = checked_file(index, decision.file_id, settings)
    identity, fingerprint = row.identity, row.fingerprint
    assert fingerprint is not None
    fields = {
        "action": decision.action,
        "file_id": row.id,
        "group_id": decision.group_id,
        "target": decision.target if decision.action == "move" else None,
        "path": row.path,
        "device": identity.device,
        "inode": identity.inode,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "content_hash": fingerprint.content_hash,
    }
    return journal.get_decision(index.db, journal.add_decision(index.db, fields))


def cancel_decision(index: Index, decision_id: int) -> dict[str, Any]:
    """Cancel a queued decision; return its row. Raise NotFound, Conflict (no longer queued)."""
    return journal.cancel_decision(index.db, decision_id)


def not_duplicates_ids(index: Index, decision: DecisionInput, settings: Settings) -> list[int]:
    """Return the checked file ids of a not-duplicates decision (from `file_ids` or the group).

    Raise NotFound, Refused.
    """
    ids = list(decision.file_ids) or group_file_ids(index, decision.group_id or 0)
    if len(ids) < 2:
        raise Refused("not-duplicates needs at least two files")
    for file_id in ids:
        if index.file_by_id(file_id) is None:
            raise NotFound(f"no file {file_id}")
    return ids


def record_not_duplicates(
    index: Index, decision: DecisionInput, ids: list[int], source: str = "not_duplicates"
) -> dict[str, Any]:
    """Record an (already carried out) not-duplicates decision and its pairs' labels (`different`, for
    retraining the verifier, given by `source`); return its row."""
    labelling.label_not_duplicates(index, ids, source)
    fields = {
        "action": "not_duplicates",
        "file_ids": json.dumps(ids),
        "group_id": decision.group_id,
        "state": "applied",
    }
    return journal.get_decision(index.db, journal.add_decision(index.db, fields))


def apply_queue(index: Index, sorter: Sorter, ids: list[int] | None) -> list[dict[str, Any]]:
    """Apply queued decisions (all, or those among `ids`), oldest first; return one outcome per decision:
    `{"decision_id", "action", "state", "action_id", "source", "dest", "reason"}`."""
    return [apply_one(index, sorter, row) for row in journal.queued_decisions(index.db, ids)]


def apply_one(index: Index, sorter: Sorter, row: dict[str, Any]) -> dict[str, Any]:
    """Apply one queued decision: keep is recorded as applied; trash and move go through the sorter."""
    if row["action"] == "keep":
        journal.set_decision_state(index.db, row["id"], "applied")
        return _outcome(row, "applied", None, None)
    request = SortRequest(
        row["action"],
        Path(row["path"]),
        _identity(row),
        row["content_hash"],
        row["target"],
        row["id"],
        row["file_id"],
    )
    try:
        result = sorter.apply(request)
    except Refused as error:
        journal.set_decision_state(index.db, row["id"], "refused", reason=str(error))
        return _outcome(row, "refused", None, str(error))
    if result.state == "done":  # a copy gone with a keeper left: a duplicate pair to learn from
        labelling.label_applied(index, row)
    return _outcome(row, _decision_state(result), result, result.reason)


def _decision_state(result: ActionResult) -> str:
    return {"done": "applied", "rolled_back": "queued"}.get(result.state, result.state)


def _identity(row: dict[str, Any]) -> FileIdentity:
    return FileIdentity(row["device"], row["inode"], row["size"], row["mtime_ns"])


def _outcome(row: dict[str, Any], state: str, result: ActionResult | None, reason: str | None) -> dict:
    return {
        "decision_id": row["id"],
        "file_id": row["file_id"],
        "action": row["action"],
        "state": state,
        "action_id": result.action_id if result else None,
        "source": row["path"],
        "dest": result.dest if result else None,
        "reason": reason,
    }


def decision_view(row: dict[str, Any]) -> dict[str, Any]:
    """Return a decision row as the API shows it (file_ids decoded, identity left out)."""
    file_ids = json.loads(row["file_ids"]) if row.get("file_ids") else None
    return {
        "id": row["id"],
        "action": row["action"],
        "file_id": row["file_id"],
        "file_ids": file_ids,
        "group_id": row["group_id"],
        "target": row["target"],
        "path": row["path"],
        "size": row["size"],
        "state": row["state"],
        "reason": row["reason"],
        "action_id": row["action_id"],
        "created": row["created"],
        "updated": row["updated"],
    }


def action_view(row: dict[str, Any]) -> dict[str, Any]:
    """Return a journal row as the API shows it."""
    keys = (
        "id",
        "kind",
        "decision_id",
        "undo_of",
        "file_id",
        "source",
        "dest",
        "size",
        "state",
        "reason",
        "batch_id",
        "created",
        "updated",
    )
    return {key: row.get(key) for key in keys}
