"""Views for decisions by rule: preview (dry run), apply the previewed set as one batch, cancel, undo."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from comparimg.decisions import BulkRule
from comparimg.web import schemas
from comparimg.web.errors import BadInput
from comparimg.web.inputs import BODY, path_id
from comparimg.web.keys import BATCHES


def rule_from(rule: schemas.BulkRule) -> BulkRule:
    """Given a validated rule, return it, checking what the schema cannot say. Raise BadInput."""
    if rule.folder is not None and not rule.folder.startswith("/"):
        raise BadInput("rule.folder must be an absolute path")
    if rule.action == "move" and rule.target is None:
        raise BadInput("rule.target is needed for action move")
    if rule.action != "move" and rule.target is not None:
        raise BadInput("rule.target is only for action move")
    kinds = tuple(dict.fromkeys(str(kind) for kind in rule.kinds))
    built = BulkRule(kinds, rule.folder, rule.reference_only, str(rule.action), rule.target)
    return replace(built, min_confidence=rule.min_confidence)


async def post_bulk(request: web.Request) -> web.Response:
    """POST /api/decisions/bulk

    `{"dry_run": true, "rule": {...}}` → 201 with the preview (its `preview_id`, counts, bytes, per folder,
    sample groups); `{"dry_run": false, "preview_id": N}` → 202 with the batch, applied in the background.
    """
    body = request[BODY]
    runner = request.app[BATCHES]
    if isinstance(body, schemas.BulkPreviewRequest):
        return web.json_response(await runner.preview(rule_from(body.rule)), status=201)
    return web.json_response(await runner.apply(body.preview_id), status=202)


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
    return web.json_response(await request.app[BATCHES].undo(batch_id), status=202)
