"""The route table: every URL the app serves, what each takes and answers, apart from the views.

Each API route names its request body and query models (web/schemas.py): the app validates a request with
them before the view runs (400 naming every wrong field) and hands the view the result as
`request[BODY]` / `request[QUERY]`; web/openapi.py makes the OpenAPI document from the same table. Adding a
route is one `Route(...)` line here (and its view); adding a field is one line in its model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from comparimg.config import Settings
from comparimg.web import (
    openapi,
    schemas,
    security,
    views_bulk,
    views_daemon,
    views_decisions,
    views_model,
    views_review,
)
from comparimg.web.inputs import BODY, QUERY, read_body, read_query

View = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Route:
    """One URL and method: its view and, for the API, its summary, input models and answers.

    `answers` maps a success status to its response model, or to a media type (str) for a body that is
    not JSON; a status absent from it is an error with the `Error` body. `links`: operations (method,
    path) whose path parameter is the `id` of the created object. A route without `summary` is not part of
    the API.
    """

    method: str
    path: str
    view: View
    summary: str | None = None
    answers: Mapping[int, Any] = dataclasses.field(default_factory=dict)
    body: Any = None
    body_required: bool = True
    query: Any = None
    links: tuple[tuple[str, str], ...] = ()


async def get_openapi(request: web.Request) -> web.Response:
    """GET /api/openapi.json → the OpenAPI document, made from ROUTES and their models."""
    return web.json_response(openapi.document(ROUTES))


ROUTES = (
    Route(
        "GET",
        "/api/status",
        views_daemon.get_status,
        "Daemon state, counts, queues, errors",
        {200: schemas.Status},
    ),
    Route("GET", "/api/config", views_daemon.get_config, "The settings in force", {200: Settings}),
    Route(
        "PATCH",
        "/api/config",
        views_daemon.patch_config,
        "Change the settings the API may change (validated like the file, merged into the configuration "
        "file, applied live); 403 file_only_setting for roots, targets, trash, export, index and http",
        {200: Settings},
        body=schemas.ConfigPatch,
    ),
    Route(
        "POST",
        "/api/jobs",
        views_daemon.post_job,
        "Scan a folder under allowed_scan_roots",
        {201: schemas.Job},
        body=schemas.JobRequest,
        links=(("GET", "/api/jobs/{id}"), ("DELETE", "/api/jobs/{id}")),
    ),
    Route("GET", "/api/jobs", views_daemon.list_jobs, "Scan jobs, newest first", {200: schemas.JobList}),
    Route("GET", "/api/jobs/{id}", views_daemon.get_job, "One job and its progress", {200: schemas.Job}),
    Route("DELETE", "/api/jobs/{id}", views_daemon.cancel_job, "Cancel a job", {200: schemas.Job}),
    Route(
        "GET",
        "/api/groups",
        views_review.list_groups,
        "Duplicate groups, filtered and paginated",
        {200: schemas.GroupPage},
        query=schemas.GroupQuery,
    ),
    Route("GET", "/api/groups/{id}", views_review.get_group, "One group", {200: schemas.Group}),
    Route(
        "POST",
        "/api/groups/{id}/confirm-duplicates",
        views_model.confirm_duplicates,
        "Label the group's pairs (its leader with each member) `duplicate`, for retraining the verifier: a "
        "person says the shots of a `similar` group are copies (`labelled`: how many pairs)",
        {200: schemas.GroupLabelled},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/api/groups/{id}/not-similar",
        views_model.not_similar,
        "Mark the group's files not duplicates of each other (the group goes away) and label their pairs "
        "`different`: a person says they are not even similar (`decision`: the decision recorded)",
        {200: schemas.GroupLabelled},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/api/files/{id}/thumbnail",
        views_review.file_thumbnail,
        "JPEG thumbnail of an indexed file",
        {200: "image/jpeg"},
    ),
    Route(
        "GET",
        "/api/files/{id}/content",
        views_review.file_content,
        "Bytes of an indexed file",
        {200: ("image/*", "application/octet-stream")},
    ),
    Route(
        "POST",
        "/api/decisions",
        views_decisions.post_decision,
        "Queue keep / trash / move, or record not-duplicates",
        {201: schemas.Decision},
        body=schemas.DecisionRequest,
        links=(("DELETE", "/api/decisions/{id}"),),
    ),
    Route(
        "POST",
        "/api/decisions/bulk",
        views_bulk.post_bulk,
        "Decide many groups by rule: a dry run stores a preview (201); the real run takes its preview_id and "
        "applies exactly that set as one batch in the background (202). 404 unknown preview, 409 expired / "
        "running / applied already",
        {201: schemas.Batch, 202: schemas.Batch},
        body=schemas.BulkRequest,
        links=(("GET", "/api/decisions/bulk/{id}"), ("POST", "/api/undo/batch/{batch_id}")),
    ),
    Route(
        "GET",
        "/api/decisions/bulk",
        views_bulk.list_bulk,
        "Previews and batches of decisions by rule, newest first",
        {200: schemas.BatchList},
    ),
    Route(
        "GET",
        "/api/decisions/bulk/{id}",
        views_bulk.get_bulk,
        "One preview or batch with its progress",
        {200: schemas.Batch},
    ),
    Route(
        "DELETE",
        "/api/decisions/bulk/{id}",
        views_bulk.delete_bulk,
        "Cancel a running batch (after the current chunk; it can be finished or undone) or discard a preview",
        {200: schemas.Batch},
    ),
    Route(
        "POST",
        "/api/undo/batch/{batch_id}",
        views_bulk.undo_batch,
        "Put back every file a batch trashed or moved (in the background; follow GET "
        "/api/decisions/bulk/{id} or the `batch` events)",
        {202: schemas.Batch},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/api/decisions",
        views_decisions.list_decisions,
        "Decisions, newest first",
        {200: schemas.DecisionList},
        query=schemas.DecisionQuery,
    ),
    Route(
        "DELETE",
        "/api/decisions/{id}",
        views_decisions.delete_decision,
        "Cancel a queued decision",
        {200: schemas.Decision},
    ),
    Route(
        "POST",
        "/api/decisions/apply",
        views_decisions.apply_queue,
        "Apply queued decisions (all, or the given ids)",
        {200: schemas.ApplyResult},
        body=schemas.ApplyRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/api/undo/{action_id}",
        views_decisions.undo,
        "Put a trashed or moved file back",
        {200: schemas.ActionResult},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/api/actions",
        views_decisions.list_actions,
        "The sorter's journal, newest first",
        {200: schemas.ActionList},
        query=schemas.ActionQuery,
    ),
    Route(
        "GET",
        "/api/model",
        views_model.get_model,
        "The verifier in use (shipped or the user's retrained one, its validation figures, a problem loading "
        "it), the previous model, label counts by kind and source, the last retraining",
        {200: schemas.Model},
    ),
    Route(
        "POST",
        "/api/model/retrain",
        views_model.post_retrain,
        "Retrain the verifier from the user's labels; adopted (in use at once) only if it does at least as "
        "well on the shipped validation pairs and better on held-out labels. 409 while one runs",
        {200: schemas.RetrainOutcome},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/api/model/restore",
        views_model.post_restore,
        "Bring back the model in use before the last change (restoring twice comes back); 409 when there is "
        "none or it cannot be loaded",
        {200: schemas.Restored},
        body=schemas.EmptyRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/api/model/verdict",
        views_model.get_verdict,
        "The verdict of the model in use on two indexed files (stored fingerprints and embeddings)",
        {200: schemas.PairVerdict},
        query=schemas.VerdictQuery,
    ),
    Route("GET", "/api/export", views_daemon.get_export, "The duplicates JSON", {200: schemas.Export}),
    Route(
        "GET",
        "/api/events",
        views_daemon.events,
        "Server-sent events: " + ", ".join(schemas.EVENT_KINDS),
        {200: "text/event-stream"},
        query=schemas.EventsQuery,
    ),
    Route("GET", "/api/openapi.json", get_openapi, "This document", {200: "OpenAPI"}),
    Route("GET", "/metrics", views_daemon.metrics, "Prometheus metrics", {200: "text/plain"}),
    Route("GET", "/login", security.login),
    Route("GET", "/", views_daemon.index_page),
)


def validating(route: Route) -> View:
    """Return the route's view behind the validation of its query and body."""
    if route.body is None and route.query is None:
        return route.view

    async def validated(request: web.Request) -> web.StreamResponse:
        if route.query is not None:
            request[QUERY] = read_query(request, route.query)
        if route.body is not None:
            request[BODY] = await read_body(request, route.body, route.body_required)
        return await route.view(request)

    return validated


def add_routes(app: web.Application) -> None:
    """Register ROUTES and the page's static folders on the app."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, validating(route))
    static = views_daemon.static_root()
    for folder in ("css", "js"):
        if (static / folder).is_dir():
            app.router.add_static(f"/{folder}", static / folder, follow_symlinks=False)
