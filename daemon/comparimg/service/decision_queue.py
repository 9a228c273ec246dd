"""The decision queue's orchestration: check files, queue decisions, apply them through the sorter.

The rules (what may be queued, cancelled, applied; how states follow) are the decisions room's
(`comparimg.decisions`), the SQL is the index's (`index.journal`). Plain functions with no HTTP in them;
they run on the index's one writer thread (`door.Door` calls them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comparimg import decisions
from comparimg.config import Settings
from comparimg.decisions import DecisionInput
from comparimg.index import FileRow, Index, journal
from comparimg.model import Decision, NotFound, Refused
from comparimg.service import labelling
from comparimg.sorter import ActionResult, Sorter, SortRequest
from comparimg.sorter.files import inside_roots


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


def queue_decision(index: Index, decision: DecisionInput, settings: Settings) -> Decision:
    """Queue keep / trash / move for one file (replacing its previous queued decision); return it.

    Raise NotFound, Refused (file outside the roots, unknown move target).
    """
    file_id = decisions.check_queueable(decision, settings.sorter.move_targets)
    row = checked_file(index, file_id, settings)
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


def cancel_decision(index: Index, decision_id: int) -> Decision:
    """Cancel a queued decision; return it. Raise NotFound, Conflict (no longer queued)."""
    decisions.check_cancellable(journal.get_decision(index.db, decision_id))
    journal.set_decision_state(index.db, decision_id, "cancelled")
    return journal.get_decision(index.db, decision_id)


def not_duplicates_ids(index: Index, decision: DecisionInput, settings: Settings) -> list[int]:
    """Return the checked file ids of a not-duplicates decision (from `file_ids` or the group).

    Raise NotFound, Refused.
    """
    ids = list(decision.file_ids) or group_file_ids(index, decision.group_id or 0)
    decisions.check_not_duplicates(ids)
    for file_id in ids:
        if index.file_by_id(file_id) is None:
            raise NotFound(f"no file {file_id}")
    return ids


def record_not_duplicates(
    index: Index, decision: DecisionInput, ids: list[int], source: str = "not_duplicates"
) -> Decision:
    """Record an (already carried out) not-duplicates decision and its pairs' labels (`different`, for
    retraining the verifier, given by `source`); return it."""
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


def apply_one(index: Index, sorter: Sorter, decision: Decision) -> dict[str, Any]:
    """Apply one queued decision: keep is recorded as applied; trash and move go through the sorter."""
    if not decisions.needs_sorter(decision):
        journal.set_decision_state(index.db, decision.id, "applied")
        return _outcome(decision, "applied", None, None)
    request = SortRequest(
        decision.action,
        Path(decision.path or ""),
        decision.identity,
        decision.content_hash or "",
        decision.target,
        decision.id,
        decision.file_id,
    )
    try:
        result = sorter.apply(request)
    except Refused as error:
        journal.set_decision_state(index.db, decision.id, "refused", reason=str(error))
        return _outcome(decision, "refused", None, str(error))
    if result.state == "done":  # a copy gone with a keeper left: a duplicate pair to learn from
        labelling.label_applied(index, decision)
    return _outcome(decision, decisions.state_after_action(result.kind, result.state), result, result.reason)


def _outcome(
    decision: Decision, state: str, result: ActionResult | None, reason: str | None
) -> dict[str, Any]:
    return {
        "decision_id": decision.id,
        "file_id": decision.file_id,
        "action": decision.action,
        "state": state,
        "action_id": result.action_id if result else None,
        "source": decision.path,
        "dest": result.dest if result else None,
        "reason": reason,
    }
