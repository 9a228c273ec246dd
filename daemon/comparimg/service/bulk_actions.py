"""Decisions by rule, on the writer thread: store a preview, apply a batch's files through the sorter a
chunk at a time, undo them. Plain functions with no HTTP; `web.bulk.BatchRunner` drives them through the
door (`door.Door`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from comparimg.decisions import BulkRule, summarize_plans
from comparimg.index import Index, bulk, journal
from comparimg.model import Conflict, FileIdentity, NotFound, Refused
from comparimg.service import labelling
from comparimg.sorter import Sorter, SortRequest

_RESULT_STATES = {"done": "applied", "refused": "refused", "failed": "failed", "rolled_back": "failed"}
_DECISION_TO_ITEM = {"applied": "applied", "refused": "refused", "failed": "failed", "undone": "undone"}


def store_preview(index: Index, rule: BulkRule, plans: list, skipped: dict[str, int]) -> int:
    """Given the writer, a rule, its plans and what it left alone, store the preview; return its id."""
    summary = {**summarize_plans(plans), "skipped": skipped}
    return bulk.create_batch(index.db, rule.as_dict(), summary, plans, rule.target)


def apply_chunk(index: Index, sorter: Sorter, batch_id: int, limit: int) -> list[dict[str, Any]]:
    """Apply up to `limit` pending items of a batch through the sorter; return {"file_id", "action",
    "state"} for each."""
    outcomes = []
    for item in bulk.pending_items(index.db, batch_id, limit):
        state = apply_item(index, sorter, batch_id, item)
        outcomes.append({"file_id": item["file_id"], "action": item["action"], "state": state})
    return outcomes


def apply_item(index: Index, sorter: Sorter, batch_id: int, item: dict[str, Any]) -> str:
    """Apply one previewed file: refuse it if its group was decided since or its keeper is gone, else trash
    or move it (the sorter re-checks its identity and content). Return the item's new state."""
    db = index.db
    decision_id = item["decision_id"]
    if decision_id is not None:  # attached before a stop: the sorter's journal says how it ended
        decision = journal.get_decision(db, decision_id)
        if decision.state != "queued":
            state = _DECISION_TO_ITEM.get(decision.state, "refused")
            bulk.finish_item(db, item["id"], state, decision.action_id, decision.reason)
            return state
    problem = _why_stale(index, item, decision_id)
    if problem is not None:
        if decision_id is not None:
            journal.set_decision_state(db, decision_id, "refused", reason=problem)
        bulk.finish_item(db, item["id"], "refused", reason=problem)
        return "refused"
    if decision_id is None:
        decision_id = bulk.attach_decision(db, item)
    identity = FileIdentity(item["device"], item["inode"], item["size"], item["mtime_ns"])
    request = SortRequest(
        item["action"],
        Path(item["path"]),
        identity,
        item["content_hash"],
        item["target"],
        decision_id,
        item["file_id"],
        batch_id,
    )
    try:
        result = sorter.apply(request)
    except Refused as error:
        journal.set_decision_state(db, decision_id, "refused", reason=str(error))
        bulk.finish_item(db, item["id"], "refused", reason=str(error))
        return "refused"
    state = _RESULT_STATES[result.state]
    if result.state == "done":  # a copy gone with its keeper left: a duplicate pair to learn from
        labelling.label_bulk_item(index, item)
    if result.state == "rolled_back":  # not left queued: the batch, not the queue, owns this decision
        journal.set_decision_state(db, decision_id, "failed", reason=result.reason)
    bulk.finish_item(db, item["id"], state, result.action_id, result.reason)
    return state


def _why_stale(index: Index, item: dict[str, Any], own_decision: int | None) -> str | None:
    """Return why a previewed file must not move now (its group was decided since, or the copy to keep is
    gone), or None."""
    keepers = json.loads(item["keeper_ids"])
    if bulk.decided_since(index.db, [item["file_id"], *keepers], own_decision):
        return "the group was decided since the preview"
    rows = index.files_by_ids(keepers)
    if len(rows) != len(keepers):
        return "the copy to keep is no longer indexed"
    for keeper in rows.values():
        if keeper.state != "ok" or not os.path.isfile(keeper.path):
            return f"the copy to keep ({keeper.path}) is no longer there"
    return None


def undo_chunk(
    index: Index, sorter: Sorter, batch_id: int, after: int, limit: int
) -> tuple[list[tuple[int, str]], list[str], int]:
    """Undo up to `limit` done actions of a batch with ids above `after`; return (restored (file id, path),
    problems, the last action id looked at)."""
    restored: list[tuple[int, str]] = []
    problems: list[str] = []
    undone: list[int] = []
    last = after
    for action in bulk.done_actions(index.db, batch_id, after, limit):
        last = action.id
        try:
            result = sorter.undo(action.id, batch_id)
        except (Refused, Conflict, NotFound) as error:
            problems.append(f"action {action.id}: {error}")
            continue
        if result.state == "done":
            undone.append(action.id)
            if result.file_id is not None and result.dest:
                restored.append((result.file_id, result.dest))
        else:
            problems.append(f"action {action.id}: {result.reason}")
    bulk.mark_items_undone(index.db, undone)
    return restored, problems, last
