"""Views for the verifier model: what is in use, retrain, restore, a pair's verdict, and the labels a person
gives a group (confirmed duplicates, not even similar). All through the door (service.learning)."""

from __future__ import annotations

import logging

from aiohttp import web

from comparimg.web import schemas
from comparimg.web.inputs import QUERY, path_id
from comparimg.web.keys import CORE, EVENTS
from comparimg.web.views_decisions import decision_view

log = logging.getLogger("comparimg.web")


async def get_model(request: web.Request) -> web.Response:
    """GET /api/model → the verifier in use (shipped or user, validation figures, a load problem), the
    previous model's source, label counts by kind and source, the retraining running and the last one."""
    return web.json_response(await request.app[CORE].model())


async def post_retrain(request: web.Request) -> web.Response:
    """POST /api/model/retrain → the outcome (adopted or not, why, figures); 409 while one runs."""
    outcome = await request.app[CORE].retrain()
    request.app[EVENTS].publish("model", {"retrain": {k: outcome[k] for k in ("adopted", "reason")}})
    return web.json_response(outcome)


async def post_restore(request: web.Request) -> web.Response:
    """POST /api/model/restore → the model now in use; 409 when there is no previous model."""
    restored = await request.app[CORE].restore_model()
    request.app[EVENTS].publish("model", {"restored": restored["verifier"]["source"]})
    return web.json_response(restored)


async def get_verdict(request: web.Request) -> web.Response:
    """GET /api/model/verdict?a=ID&b=ID → the verdict of the model in use on the two files' stored
    fingerprints (and embeddings): {"a", "b", "label", "confidence", "probabilities", "source"}."""
    query: schemas.VerdictQuery = request[QUERY]
    return web.json_response(await request.app[CORE].verdict(query.a, query.b))


async def confirm_duplicates(request: web.Request) -> web.Response:
    """POST /api/groups/{id}/confirm-duplicates → {"group_id", "label", "labelled", "file_ids"}: the group's
    pairs labelled `duplicate` (what a person says of a `similar` group whose shots they call copies)."""
    group_id = path_id(request)
    result = await request.app[CORE].confirm_duplicates(group_id)
    log.info("event=group_labelled by=api group=%d label=duplicate pairs=%d", group_id, result["labelled"])
    return web.json_response(result)


async def not_similar(request: web.Request) -> web.Response:
    """POST /api/groups/{id}/not-similar → {"group_id", "label", "file_ids", "decision"}: the files are
    marked not duplicates of each other (the group goes away) and their pairs labelled `different`."""
    group_id = path_id(request)
    result = await request.app[CORE].not_similar(group_id)
    view = decision_view(result["decision"])
    log.info(
        "event=group_labelled by=api group=%d label=different files=%d", group_id, len(result["file_ids"])
    )
    request.app[EVENTS].publish("decision", {"decision": view})
    return web.json_response({**result, "decision": view})
