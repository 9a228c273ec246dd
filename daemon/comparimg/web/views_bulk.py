"""Views for decisions by rule: preview (dry run), apply the previewed set as one batch, cancel, undo."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from comparimg.decisions import RULE_ACTIONS, RULE_KINDS, BulkRule
from comparimg.web.errors import BadInput
from comparimg.web.keys import BATCHES
from comparimg.web.validation import integer, json_object, only_keys, path_id, text

RULE_KEYS = {"kinds", "folder", "reference_only", "action", "target", "min_confidence"}


def parse_rule(value: Any) -> BulkRule:
    """Return a checked rule from the `rule` member of a request body. Raise BadInput."""
    if not isinstance(value, dict):
        raise BadInput("rule must be an object")
    only_keys(value, RULE_KEYS)
    kinds = value.get("kinds", ["exact", "near"])
    if not isinstance(kinds, list) or not kinds or any(kind not in RULE_KINDS for kind in kinds):
        raise BadInput(f"rule.kinds must be a non-empty list of {', '.join(RULE_KINDS)}")
    folder = value.get("folder")
    if folder is not None:
        folder = text(folder, "rule.folder", 4096)
        if not folder.startswith("/"):
            raise BadInput("rule.folder must be an absolute path")
    reference_only = value.get("reference_only", False)
    if not isinstance(reference_only, bool):
        raise BadInput("rule.reference_only must be true or false")
    action = value.get("action", "trash")
    if action not in RULE_ACTIONS:
        raise BadInput(f"rule.action must be one of {', '.join(RULE_ACTIONS)}")
    target = value.get("target")
    if action == "move":
        target = text(target, "rule.target", 200)
    elif target is not None:
        raise BadInput("rule.target is only for action move")
    min_confidence = value.get("min_confidence")
    if min_confidence is not None and (
        isinstance(min_confidence, bool)
        or not isinstance(min_confidence, int | float)
        or not 0.0 <= min_confidence <= 1.0
    ):
        raise BadInput(f"rule.min_confidence must be null or a number in [0, 1], got {min_confidence!r}")
    rule = BulkRule(tuple(dict.fromkeys(kinds)), folder, reference_only, action, target)
    return replace(rule, min_confidence=None if min_confidence is None else float(min_confidence))


async def post_bulk(request: web.Request) -> web.Response:
    """POST /api/decisions/bulk

    `{"dry_run": true, "rule": {...}}` → 201 with the preview (its `preview_id`, counts, bytes, per folder,
    sample groups); `{"dry_run": false, "preview_id": N}` → 202 with the batch, applied in the background.
    """
    body = await json_object(request)
    only_keys(body, {"dry_run", "rule", "preview_id"})
    dry_run = body.get("dry_run")
    if not isinstance(dry_run, bool):
        raise BadInput("dry_run must be true or false")
    runner = request.app[BATCHES]
    if dry_run:
        if "preview_id" in body:
            raise BadInput("a dry run takes a rule, not a preview_id")
        rule = parse_rule(body.get("rule"))
        return web.json_response(await runner.preview(rule), status=201)
    if "rule" in body:
        raise BadInput("a real run takes the preview_id of a dry run, not a rule")
    if body.get("preview_id") is None:
        raise BadInput("a real run needs preview_id")
    batch_id = integer(body["preview_id"], "preview_id", 1)
    return web.json_response(await runner.apply(batch_id), status=202)


async def list_bulk(request: web.Request) -> web.Response:
    """GET /api/decisions/bulk → {"batches": [...]} newest first."""
    return web.json_response({"batches": await request.app[BATCHES].recent()})


async def get_bulk(request: web.Request) -> web.Response:
    """GET /api/decisions/bulk/{id} → the preview / batch with its progress; 404 unknown."""
    return web.json_response(await request.app[BATCHES].view(path_id(request)))


async def delete_bulk(request: web.Request) -> web.Response:
    """DELETE /api/decisions/bulk/{id} → cancel a running batch (after the current chunk) or discard a
    preview; 404 unknown, 409 neither running nor previewed."""
    return web.json_response(await request.app[BATCHES].cancel(path_id(request)))


async def undo_batch(request: web.Request) -> web.Response:
    """POST /api/undo/batch/{batch_id} → 202 with the batch; every file it moved is put back."""
    batch_id = path_id(request, "batch_id")
    await json_object(request, allow_empty=True)
    return web.json_response(await request.app[BATCHES].undo(batch_id), status=202)
