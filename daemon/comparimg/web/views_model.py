"""Views for the verifier model: what is in use, retrain, restore, a pair's verdict, and the labels a person
gives a group (confirmed duplicates, not even similar)."""

from __future__ import annotations

import logging

from aiohttp import web

from comparimg.index import Index
from comparimg.model import NotFound
from comparimg.web import decision_queue as dq
from comparimg.web import labelling, port
from comparimg.web.errors import BadInput
from comparimg.web.keys import DAEMON, EVENTS, LEARNING, READERS, WRITER, current_settings
from comparimg.web.validation import MAX_ID, json_object, path_id, query_int

log = logging.getLogger("comparimg.web")


def required_id(request: web.Request, name: str) -> int:
    """Return a required positive integer query parameter. Raise BadInput naming it."""
    if not request.query.get(name):
        raise BadInput(f"{name} (a file id) is required")
    return query_int(request, name, 0, 1, MAX_ID)


async def get_model(request: web.Request) -> web.Response:
    """GET /api/model → the verifier in use (shipped or user, validation figures, a load problem), the
    previous model's source, label counts by kind and source, the retraining running and the last one."""
    return web.json_response(await request.app[LEARNING].describe())


async def post_retrain(request: web.Request) -> web.Response:
    """POST /api/model/retrain → the outcome (adopted or not, why, figures); 409 while one runs."""
    await json_object(request, allow_empty=True)
    outcome = await request.app[LEARNING].retrain()
    request.app[EVENTS].publish("model", {"retrain": {k: outcome[k] for k in ("adopted", "reason")}})
    return web.json_response(outcome)


async def post_restore(request: web.Request) -> web.Response:
    """POST /api/model/restore → the model now in use; 409 when there is no previous model."""
    await json_object(request, allow_empty=True)
    restored = await request.app[LEARNING].restore()
    request.app[EVENTS].publish("model", {"restored": restored["verifier"]["source"]})
    return web.json_response(restored)


async def get_verdict(request: web.Request) -> web.Response:
    """GET /api/model/verdict?a=ID&b=ID → the verdict of the model in use on the two files' stored
    fingerprints (and embeddings): {"label", "confidence", "probabilities", "source"}; 404 unknown file."""
    first, second = (required_id(request, name) for name in ("a", "b"))

    def features(index: Index):
        row = labelling.features_of_pair(index, first, second)
        if row is None:
            raise NotFound(f"files {first} and {second} are not both indexed with a fingerprint")
        return row

    row = await request.app[READERS].run(features)
    in_use = request.app[DAEMON].verifier.in_use
    verdict = in_use.verifier.judge(row)
    return web.json_response(
        {
            "a": first,
            "b": second,
            "label": verdict.label,
            "confidence": verdict.confidence,
            "probabilities": dict(zip(in_use.verifier.labels, verdict.probabilities, strict=True)),
            "source": in_use.source,
        }
    )


async def confirm_duplicates(request: web.Request) -> web.Response:
    """POST /api/groups/{id}/confirm-duplicates → {"group_id", "label", "labelled", "file_ids"}: the group's
    pairs labelled `duplicate` (what a person says of a `similar` group whose shots they call copies)."""
    group_id = path_id(request)
    await json_object(request, allow_empty=True)
    app = request.app
    result = await app[DAEMON].write(
        labelling.label_group, app[WRITER], group_id, "duplicate", "confirmed", urgent=True
    )
    log.info("event=group_labelled by=api group=%d label=duplicate pairs=%d", group_id, result["labelled"])
    return web.json_response(result)


async def not_similar(request: web.Request) -> web.Response:
    """POST /api/groups/{id}/not-similar → {"group_id", "label", "file_ids", "decision"}: the files are
    marked not duplicates of each other (the group goes away) and their pairs labelled `different`."""
    group_id = path_id(request)
    await json_object(request, allow_empty=True)
    app = request.app
    writer, settings = app[WRITER], current_settings(app)
    decision = dq.DecisionInput("not_duplicates", group_id=group_id)
    ids = await app[DAEMON].write(dq.not_duplicates_ids, writer, decision, settings, urgent=True)
    await port.not_duplicates(app[DAEMON], ids)
    row = await app[DAEMON].write(dq.record_not_duplicates, writer, decision, ids, "not_similar", urgent=True)
    view = dq.decision_view(row)
    log.info("event=group_labelled by=api group=%d label=different files=%d", group_id, len(ids))
    app[EVENTS].publish("decision", {"decision": view})
    return web.json_response({"group_id": group_id, "label": "different", "file_ids": ids, "decision": view})
