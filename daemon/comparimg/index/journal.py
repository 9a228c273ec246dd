"""The decision queue and the sorter's journal: the SQL for both, nothing else.

Owned by the web/sorter room; the tables are migration 2 in `index.schema`. Journal rows are
written with `synchronous=FULL` (`write_transaction(durable=True)`): an intent survives a power cut.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import fields as dataclass_fields
from typing import Any

from sqlite_utils import Database

from comparimg.index.connection import write_transaction
from comparimg.index.path_text import PATH_PARAM, bind_path, path_conversions
from comparimg.model import Action, Decision, NotFound

# The columns that hold paths, bound through `index.path_text` (a file name need not be UTF-8).
ACTION_PATHS = ("source", "dest", "temp", "info_path")
DECISION_PATHS = ("path", "target")


# --- sorter journal -------------------------------------------------------------------------------------


def journal_intent(db: Database, fields: dict[str, Any]) -> int:
    """Given the writer Database and an action's fields, durably record it as open; return its id."""
    now = time.time()
    with write_transaction(db, durable=True):
        row, conversions = path_conversions(
            {**fields, "state": "open", "created": now, "updated": now}, ACTION_PATHS
        )
        return db["sort_actions"].insert(row, conversions=conversions).last_pk


def journal_update(db: Database, action_id: int, **fields: Any) -> None:
    """Durably change fields (state, dest, temp, reason…) of one journaled action."""
    with write_transaction(db, durable=True):
        _update(db, "sort_actions", action_id, {**fields, "updated": time.time()})


def record_outcome(
    db: Database,
    action_id: int,
    fields: dict[str, Any],
    decision: tuple[int, dict[str, Any]] | None = None,
    undone: int | None = None,
) -> None:
    """Given the writer Database, record how an action ended in one durable transaction: its `fields`
    (state, dest, reason…), the action a restore reverses marked `undone`, and the decision's new fields
    (state, reason, action_id). A crash cannot leave one recorded without the others.
    """
    now = time.time()
    with write_transaction(db, durable=True):
        _update(db, "sort_actions", action_id, {**fields, "updated": now})
        if undone is not None:
            _update(db, "sort_actions", undone, {"state": "undone", "updated": now})
        if decision is not None:
            decision_id, changes = decision
            _update(db, "decisions", decision_id, {**changes, "updated": now})


def action_holding(db: Database, dest: str, other_than: int) -> int | None:
    """Return the id of a done trash or move (other than `other_than`) whose file is at `dest`, or None.

    Only those still claim their destination: one that was undone is `undone`, while a done restore is
    history (its file may have been trashed again since).
    """
    rows = db.execute(
        f"SELECT id FROM sort_actions WHERE dest = {PATH_PARAM} AND state = 'done' "
        "AND kind IN ('trash', 'move') AND id != ? ORDER BY id LIMIT 1",
        [bind_path(dest), other_than],
    ).fetchall()
    return rows[0][0] if rows else None


def get_action(db: Database, action_id: int) -> Action:
    """Return one journaled action. Raise NotFound."""
    rows = list(db.query("SELECT * FROM sort_actions WHERE id = ?", [action_id]))
    if not rows:
        raise NotFound(f"no action {action_id}")
    return action_of(rows[0])


def open_actions(db: Database) -> list[Action]:
    """Return the actions left open (a crash between intent and completion), oldest first."""
    return [action_of(r) for r in db.query("SELECT * FROM sort_actions WHERE state = 'open' ORDER BY id")]


def list_actions(db: Database, limit: int = 100, offset: int = 0) -> list[Action]:
    """Return journaled actions, newest first."""
    rows = db.query("SELECT * FROM sort_actions ORDER BY id DESC LIMIT ? OFFSET ?", [limit, offset])
    return [action_of(row) for row in rows]


# --- decision queue -------------------------------------------------------------------------------------


def add_decision(db: Database, fields: dict[str, Any]) -> int:
    """Queue one decision (fields: action, file_id, target, path and identity…); return its id.

    A file has at most one queued decision: a new one replaces (cancels) the previous.
    """
    now = time.time()
    with write_transaction(db, durable=True):
        if fields.get("file_id") is not None:
            db.execute(
                "UPDATE decisions SET state = 'cancelled', updated = ? "
                "WHERE file_id = ? AND state = 'queued'",
                [now, fields["file_id"]],
            )
        state = fields.pop("state", "queued")
        row, conversions = path_conversions(
            {**fields, "state": state, "created": now, "updated": now}, DECISION_PATHS
        )
        return db["decisions"].insert(row, conversions=conversions).last_pk


def get_decision(db: Database, decision_id: int) -> Decision:
    """Return one decision. Raise NotFound."""
    rows = list(db.query("SELECT * FROM decisions WHERE id = ?", [decision_id]))
    if not rows:
        raise NotFound(f"no decision {decision_id}")
    return decision_of(rows[0])


def list_decisions(
    db: Database, state: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Decision], int]:
    """Return (decisions newest first, total count), optionally only those in `state`."""
    where, params = ("WHERE state = ?", [state]) if state else ("", [])
    total = db.execute(f"SELECT count(*) FROM decisions {where}", params).fetchone()[0]
    sql = f"SELECT * FROM decisions {where} ORDER BY id DESC LIMIT ? OFFSET ?"
    rows = db.query(sql, [*params, limit, offset])
    return [decision_of(row) for row in rows], total


def queued_decisions(db: Database, ids: Iterable[int] | None = None) -> list[Decision]:
    """Return the queued decisions (all, or those among `ids`), oldest first."""
    rows = db.query("SELECT * FROM decisions WHERE state = 'queued' ORDER BY id")
    wanted = None if ids is None else set(ids)
    return [decision_of(row) for row in rows if wanted is None or row["id"] in wanted]


def set_decision_state(db: Database, decision_id: int, state: str, **fields: Any) -> None:
    """Durably set a decision's state (and reason / action_id)."""
    with write_transaction(db, durable=True):
        _update(db, "decisions", decision_id, {**fields, "state": state, "updated": time.time()})


def decision_states_by_file(db: Database, file_ids: Iterable[int]) -> dict[int, Decision]:
    """Return the latest non-cancelled decision of each of `file_ids` (file id → decision row)."""
    ids = list(file_ids)
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = db.query(
        f"SELECT * FROM decisions WHERE file_id IN ({marks}) AND state != 'cancelled' ORDER BY id", ids
    )
    return {row["file_id"]: decision_of(row) for row in rows}


_DECISION_COLUMNS = tuple(f.name for f in dataclass_fields(Decision))
_ACTION_COLUMNS = tuple(f.name for f in dataclass_fields(Action))


def decision_of(row: Mapping[str, Any]) -> Decision:
    """Given a `decisions` row, return it typed (`file_ids` decoded from its JSON text)."""
    values = {name: row.get(name) for name in _DECISION_COLUMNS}
    values["file_ids"] = tuple(json.loads(row["file_ids"])) if row.get("file_ids") else None
    return Decision(**values)


def action_of(row: Mapping[str, Any]) -> Action:
    """Given a `sort_actions` row, return it typed."""
    values = {name: row.get(name) for name in _ACTION_COLUMNS}
    return Action(**{**values, "cross_fs": bool(row["cross_fs"])})


def _update(db: Database, table: str, row_id: int, fields: dict[str, Any]) -> None:
    """Given a table of this module, a row id and fields, update them, binding paths losslessly."""
    paths = ACTION_PATHS if table == "sort_actions" else DECISION_PATHS
    values, conversions = path_conversions(fields, paths)
    db[table].update(row_id, values, conversions=conversions)
