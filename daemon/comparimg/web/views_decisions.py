"""Views for decisions: queue, list, cancel, apply, undo, and the journal of actions.

`decision_view` and `action_view` are the one place a `Decision` or an `Action` becomes the API's JSON.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from comparimg.decisions import DecisionInput
from comparimg.index import Index, journal
from comparimg.model import Action, Decision
from comparimg.web import schemas
from comparimg.web.errors import BadInput
from comparimg.web.inputs import BODY, QUERY, path_id
from comparimg.web.keys import CORE, EVENTS, METRICS, current_settings

log = logging.getLogger("comparimg.web")


def parse_decision(body: schemas.DecisionRequest) -> DecisionInput:
    """Given a validated request, return the decision, checking what each action needs. Raise BadInput."""
    action, group_id = str(body.action), body.group_id
    if action == "not_duplicates":
        ids = tuple(dict.fromkeys(body.file_ids or ()))
        if not ids and group_id is None:
            raise BadInput("not_duplicates needs file_ids (two or more) or group_id")
        return DecisionInput(action, file_ids=ids, group_id=group_id)
    if body.file_id is None:
        raise BadInput(f"{action} needs file_id")
    if action == "move" and body.target is None:
        raise BadInput("move needs target")
    target = body.target if action == "move" else None
    return DecisionInput(action, file_id=body.file_id, group_id=group_id, target=target)


async def post_decision(request: web.Request) -> web.Response:
    """POST /api/decisions → 201 with the decision (and, with `apply: on-decide`, its outcome)."""
    decision = parse_decision(request[BODY])
    app = request.app
    settings = current_settings(app)
    if decision.action == "not_duplicates":
        row = await app[CORE].not_duplicates(decision)
    else:
        row = await app[CORE].queue_decision(decision)
    body = decision_view(row)
    log_decision("decision_queued", body)
    app[EVENTS].publish("decision", {"decision": body})
    if decision.action != "not_duplicates" and settings.sorter.apply == "on-decide":
        outcomes = await apply_decisions(app, [row.id])
        log_outcomes("decision_applied", outcomes)
        row = await app[CORE].read(_decision_row, row.id)
        body = {**decision_view(row), "outcome": outcomes[0] if outcomes else None}
    return web.json_response(body, status=201)


async def list_decisions(request: web.Request) -> web.Response:
    """GET /api/decisions?state=&limit=&offset= → {"decisions": [...], "total"}."""
    query: schemas.DecisionQuery = request[QUERY]
    state = None if query.state is None else str(query.state)
    limit, offset = query.limit, query.offset

    def read(index: Index) -> tuple[list[Decision], int]:
        return journal.list_decisions(index.db, state, limit, offset)

    rows, total = await request.app[CORE].read(read)
    return web.json_response({"decisions": [decision_view(r) for r in rows], "total": total})


async def delete_decision(request: web.Request) -> web.Response:
    """DELETE /api/decisions/{id} → the cancelled decision; 404 unknown, 409 no longer queued."""
    decision_id = path_id(request)
    row = await request.app[CORE].cancel_decision(decision_id)
    log_decision("decision_cancelled", decision_view(row))
    request.app[EVENTS].publish("decision", {"decision": decision_view(row)})
    return web.json_response(decision_view(row))


async def apply_queue(request: web.Request) -> web.Response:
    """POST /api/decisions/apply {"ids"?: [...]} → {"outcomes": [...], "applied", "refused", "failed"}."""
    body: schemas.ApplyRequest = request[BODY]
    ids = None if body.ids is None else list(dict.fromkeys(body.ids))
    outcomes = await apply_decisions(request.app, ids)
    counts = {
        state: sum(1 for o in outcomes if o["state"] == state) for state in ("applied", "refused", "failed")
    }
    log_outcomes("decisions_applied", outcomes)
    return web.json_response({"outcomes": outcomes, **counts})


async def apply_decisions(app: web.Application, ids: list[int] | None) -> list[dict[str, Any]]:
    """Apply queued decisions through the door (which tells the index which files left), count them,
    publish the outcomes."""
    outcomes = await app[CORE].apply_decisions(ids)
    for outcome in outcomes:
        if outcome["action_id"]:
            app[METRICS].actions.labels(outcome["action"], outcome["state"]).inc()
    app[EVENTS].publish("decision_applied", {"outcomes": outcomes})
    return outcomes


async def undo(request: web.Request) -> web.Response:
    """POST /api/undo/{action_id} → the restore action; 404 unknown, 409 not undoable, 403 file changed."""
    action_id = path_id(request, "action_id")
    result = await request.app[CORE].undo(action_id)
    request.app[METRICS].actions.labels("restore", result["state"]).inc()
    log.info(
        "event=undo by=api action=%d state=%s file=%s from=%r to=%r reason=%r",
        action_id,
        result["state"],
        result["file_id"],
        result["source"],
        result["dest"],
        result["reason"],
    )
    request.app[EVENTS].publish("undone", {"action": result})
    return web.json_response(result)


def _decision_row(index: Index, decision_id: int) -> Decision:
    return journal.get_decision(index.db, decision_id)


def log_decision(event: str, decision: dict[str, Any]) -> None:
    """Log one line for a decision a person queued or cancelled through the API: what, which file(s)."""
    files = decision["file_ids"] if decision["file_ids"] else [decision["file_id"]]
    log.info(
        "event=%s by=api decision=%d action=%s state=%s file_ids=%s path=%r target=%r",
        event,
        decision["id"],
        decision["action"],
        decision["state"],
        ",".join(str(f) for f in files),
        decision["path"],
        decision["target"],
    )


def log_outcomes(event: str, outcomes: list[dict[str, Any]]) -> None:
    """Log one line for an apply a person asked for through the API: the counts and each file moved."""
    states = {s: sum(1 for o in outcomes if o["state"] == s) for s in ("applied", "refused", "failed")}
    files = [f"{o['action']} {o['source']} -> {o['dest'] or '-'} ({o['state']})" for o in outcomes]
    log.info(
        "event=%s by=api decisions=%s applied=%d refused=%d failed=%d files=%r",
        event,
        ",".join(str(o["decision_id"]) for o in outcomes) or "-",
        states["applied"],
        states["refused"],
        states["failed"],
        files,
    )


async def list_actions(request: web.Request) -> web.Response:
    """GET /api/actions?limit=&offset= → {"actions": [...]} newest first (the sorter's journal)."""
    query: schemas.ActionQuery = request[QUERY]
    limit, offset = query.limit, query.offset

    def read(index: Index) -> list[dict[str, Any]]:
        return [action_view(r) for r in journal.list_actions(index.db, limit, offset)]

    rows = await request.app[CORE].read(read)
    return web.json_response({"actions": rows})


def decision_view(decision: Decision) -> dict[str, Any]:
    """Return a decision as the API shows it (identity left out)."""
    return {
        "id": decision.id,
        "action": decision.action,
        "file_id": decision.file_id,
        "file_ids": None if decision.file_ids is None else list(decision.file_ids),
        "group_id": decision.group_id,
        "target": decision.target,
        "path": decision.path,
        "size": decision.size,
        "state": decision.state,
        "reason": decision.reason,
        "action_id": decision.action_id,
        "created": decision.created,
        "updated": decision.updated,
    }


def action_view(action: Action) -> dict[str, Any]:
    """Return a journaled action as the API shows it (identity, temp and info paths left out)."""
    return {
        "id": action.id,
        "kind": action.kind,
        "decision_id": action.decision_id,
        "undo_of": action.undo_of,
        "file_id": action.file_id,
        "source": action.source,
        "dest": action.dest,
        "size": action.size,
        "state": action.state,
        "reason": action.reason,
        "batch_id": action.batch_id,
        "created": action.created,
        "updated": action.updated,
    }
