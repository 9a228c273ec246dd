"""The OpenAPI 3.1 document describing every route, request and response (served at /api/openapi.json)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comparimg import __version__
from comparimg.decisions import RULE_ACTIONS, RULE_KINDS
from comparimg.export import STATS_KEYS
from comparimg.index.bulk import ITEM_STATES
from comparimg.sorter import plan
from comparimg.web import bulk, decision_queue

INT = {"type": "integer"}
ID = {"type": "integer", "minimum": 1}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}
NULL_STR = {"type": ["string", "null"]}
NULL_INT = {"type": ["integer", "null"]}
NULL_NUM = {"type": ["number", "null"]}


def ref(name: str) -> dict[str, str]:
    """Return a reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], required: tuple[str, ...] | None = None, extra: bool = True) -> dict:
    """Return an object schema; every property is required unless `required` says otherwise."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
    }
    if not extra:
        schema["additionalProperties"] = False
    return schema


JOB_STATES = ["queued", "running", "done", "cancelled", "failed"]
DECISION_STATES = list(decision_queue.DECISION_STATES)
DECISION_ACTIONS = list(decision_queue.ACTIONS)
ACTION_STATES = list(plan.ACTION_STATES)
ACTION_KINDS = list(plan.ACTION_KINDS)

SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": obj({"code": STR, "message": STR})}),
    "Status": obj(
        {
            "state": STR,
            "version": STR,
            "counts": {"type": "object"},
            "decisions_queued": INT,
            "queue_depth": INT,
            "pending": INT,
            "hashed": INT,
            "roots": {"type": "array", "items": obj({"path": STR, "state": STR, "observer": STR})},
            "paused_roots": {"type": "array", "items": STR},
            "last_errors": {"type": "array", "items": STR, "maxItems": 10},
            "error_count": INT,
            "problems": {"type": "array", "items": {"type": "object"}},
            "uptime_seconds": NUM,
        }
    ),
    "Config": {"type": "object", "description": "The settings, shaped like the YAML file"},
    "ConfigPatch": {
        "type": "object",
        "description": "A partial YAML-shaped mapping; sections merge. Only hashing.*, matching.*, watch.*, "
        "logging.* and sorter.apply may change through the API; roots, index, export, http.* and the other "
        "sorter keys answer 403 `file_only_setting` (set them in the configuration file and reload).",
        "properties": {
            "hashing": {"type": "object"},
            "matching": {"type": "object"},
            "watch": {"type": "object"},
            "logging": {"type": "object"},
            "sorter": {"type": "object", "properties": {"apply": {"enum": ["manual", "on-decide"]}}},
        },
    },
    "JobRequest": obj(
        {
            "path": {**STR, "minLength": 1},
            "recursive": BOOL,
            "threshold": {"type": "integer", "minimum": 0, "maximum": 32},
            "orientations": BOOL,
        },
        required=("path",),
        extra=False,
    ),
    "Job": obj(
        {
            "id": INT,
            "path": STR,
            "root": STR,
            "recursive": BOOL,
            "threshold": INT,
            "orientations": BOOL,
            "state": {"enum": JOB_STATES},
            "total": NULL_INT,
            "done": INT,
            "hashed": INT,
            "errors": INT,
            "groups": INT,
            "error": NULL_STR,
            "started": NUM,
            "finished": NULL_NUM,
        }
    ),
    "JobList": obj({"jobs": {"type": "array", "items": ref("Job")}}),
    "Decision": obj(
        {
            "id": INT,
            "action": {"enum": DECISION_ACTIONS},
            "file_id": NULL_INT,
            "file_ids": {"type": ["array", "null"], "items": INT},
            "group_id": NULL_INT,
            "target": NULL_STR,
            "path": NULL_STR,
            "size": NULL_INT,
            "state": {"enum": DECISION_STATES},
            "reason": NULL_STR,
            "action_id": NULL_INT,
            "created": NUM,
            "updated": NUM,
        }
    ),
    "DecisionRequest": obj(
        {
            "action": {"enum": DECISION_ACTIONS},
            "file_id": ID,
            "file_ids": {"type": "array", "items": ID, "minItems": 2},
            "group_id": ID,
            "target": {**STR, "minLength": 1},
        },
        required=("action",),
        extra=False,
    ),
    "DecisionList": obj({"decisions": {"type": "array", "items": ref("Decision")}, "total": INT}),
    "Member": obj(
        {
            "file_id": INT,
            "path": STR,
            "size": INT,
            "width": INT,
            "height": INT,
            "format": STR,
            "mtime_ns": INT,
            "distance": INT,
            "orientation": STR,
            "suggested": {"enum": ["keep", "trash"]},
            "verdict": {
                "enum": ["duplicate", "similar", None],
                "description": "the learned verifier's, on the edge to the leader",
            },
            "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "reason": {"type": ["string", "null"], "description": "why this is the pick of a similar group"},
            "state": STR,
            "reference": BOOL,
            "decision": {"oneOf": [ref("Decision"), {"type": "null"}]},
            "thumbnail_url": STR,
            "content_url": STR,
        }
    ),
    "Group": obj(
        {
            "id": INT,
            "kind": {"enum": ["exact", "near", "similar"]},
            "leader": INT,
            "state": {"enum": ["pending", "decided"]},
            "created": NUM,
            "decided": INT,
            "freed": INT,
            "members": {"type": "array", "items": ref("Member")},
        }
    ),
    "GroupPage": obj(
        {"groups": {"type": "array", "items": ref("Group")}, "total": INT, "limit": INT, "offset": INT}
    ),
    "ApplyRequest": obj({"ids": {"type": "array", "items": ID, "minItems": 1}}, required=(), extra=False),
    "Outcome": obj(
        {
            "decision_id": INT,
            "file_id": NULL_INT,
            "action": STR,
            "state": STR,
            "action_id": NULL_INT,
            "source": NULL_STR,
            "dest": NULL_STR,
            "reason": NULL_STR,
        }
    ),
    "ApplyResult": obj(
        {
            "outcomes": {"type": "array", "items": ref("Outcome")},
            "applied": INT,
            "refused": INT,
            "failed": INT,
        }
    ),
    "ActionResult": obj(
        {
            "action_id": NULL_INT,
            "kind": {"enum": ACTION_KINDS},
            "state": {"enum": ACTION_STATES},
            "source": STR,
            "dest": NULL_STR,
            "reason": NULL_STR,
            "decision_id": NULL_INT,
            "file_id": NULL_INT,
            "undo_of": NULL_INT,
        }
    ),
    "JournalEntry": obj(
        {
            "id": INT,
            "kind": {"enum": ACTION_KINDS},
            "decision_id": NULL_INT,
            "undo_of": NULL_INT,
            "file_id": NULL_INT,
            "source": STR,
            "dest": STR,
            "size": INT,
            "state": {"enum": ACTION_STATES},
            "reason": NULL_STR,
            "batch_id": NULL_INT,
            "created": NUM,
            "updated": NUM,
        }
    ),
    "ActionList": obj({"actions": {"type": "array", "items": ref("JournalEntry")}}),
    "BulkRule": obj(
        {
            "kinds": {
                "type": "array",
                "items": {"enum": list(RULE_KINDS)},
                "minItems": 1,
                "description": "group kinds to act on (default exact and near; `similar` only when named)",
            },
            "folder": {
                **STR,
                "minLength": 1,
                "maxLength": 4096,
                "description": "absolute folder prefix: groups with a member below it",
            },
            "reference_only": {**BOOL, "description": "only groups holding a file under a reference root"},
            "action": {
                "enum": list(RULE_ACTIONS),
                "description": "what happens to the copies (default trash)",
            },
            "target": {**STR, "minLength": 1, "maxLength": 200, "description": "move target (action move)"},
            "min_confidence": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "only groups whose lowest verifier confidence on a member's edge is at least "
                "this (a group with an edge the verifier did not judge never matches)",
            },
        },
        required=(),
        extra=False,
    ),
    "BulkRequest": {
        "description": "A dry run `{dry_run: true, rule}` stores and returns a preview; the real run "
        "`{dry_run: false, preview_id}` applies exactly the previewed set as one batch.",
        "oneOf": [
            obj({"dry_run": {"const": True}, "rule": ref("BulkRule")}, extra=False),
            obj({"dry_run": {"const": False}, "preview_id": ID}, extra=False),
        ],
    },
    "BulkFile": obj(
        {
            "file_id": INT,
            "path": STR,
            "thumbnail_url": STR,
            "size": INT,
            "state": {"enum": list(ITEM_STATES)},
            "reason": NULL_STR,
        },
        required=("file_id", "path", "thumbnail_url"),
    ),
    "Batch": obj(
        {
            "id": INT,
            "preview_id": INT,
            "state": {"enum": list(bulk.BATCH_STATES)},
            "running": BOOL,
            "rule": {"type": "object"},
            "reason": NULL_STR,
            "created": NUM,
            "updated": NUM,
            "expires": NUM,
            "groups": INT,
            "files": INT,
            "bytes": INT,
            "folders": INT,
            "per_folder": {"type": "array", "items": obj({"folder": STR, "files": INT, "bytes": INT})},
            "skipped": {"type": "object", "additionalProperties": INT},
            "progress": obj({"total": INT, **{state: INT for state in ITEM_STATES}}),
            "sample": {
                "type": "array",
                "items": obj(
                    {
                        "group_id": INT,
                        "keep": {"type": "array", "items": ref("BulkFile")},
                        "remove": {"type": "array", "items": ref("BulkFile")},
                    }
                ),
            },
        }
    ),
    "BatchList": obj(
        {
            "batches": {
                "type": "array",
                "items": obj(
                    {"id": INT, "state": STR, "rule": {"type": "object"}}, required=("id", "state", "rule")
                ),
            }
        }
    ),
    "Export": obj(
        {
            "version": INT,
            "groups": {"type": "array", "items": {"type": "object"}},
            "errors": {"type": "array", "items": obj({"path": STR, "error": STR})},
            "stats": obj({key: {} for key in STATS_KEYS}),
        }
    ),
}


def json_body(schema: str) -> dict[str, Any]:
    """Return a required JSON request body of the given schema."""
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def answer(status: int, schema: str | None, description: str, media: str = "application/json") -> dict:
    """Return one documented response: status, description and media type."""
    content = {media: {"schema": ref(schema) if schema else {"type": "string"}}}
    return {str(status): {"description": description, "content": content}}


ERRORS = {
    "default": {"description": "Error (4xx)", "content": {"application/json": {"schema": ref("Error")}}}
}


def operation(summary: str, ok: dict, parameters: list | None = None, body: dict | None = None) -> dict:
    """Return an operation: its success response(s), the shared error response, parameters, body."""
    result: dict[str, Any] = {"summary": summary, "responses": {**ok, **ERRORS}}
    if parameters:
        result["parameters"] = parameters
    if body:
        result["requestBody"] = body
    return result


def path_param(name: str = "id") -> dict:
    """Return a positive integer path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": ID}


def query(name: str, schema: dict) -> dict:
    """Return an optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema}


PAGING = [
    query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
    query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000}),
]

PATHS: dict[str, Any] = {
    "/api/status": {
        "get": operation("Daemon state, counts, queues, errors", answer(200, "Status", "status"))
    },
    "/api/config": {
        "get": operation("The settings in force", answer(200, "Config", "settings")),
        "patch": operation(
            "Change the settings the API may change (validated, merged into the configuration file, applied "
            "live); 403 file_only_setting for roots, targets, trash, export, index and http",
            answer(200, "Config", "new settings"),
            body=json_body("ConfigPatch"),
        ),
    },
    "/api/jobs": {
        "get": operation("Scan jobs, newest first", answer(200, "JobList", "jobs")),
        "post": operation(
            "Scan a folder under allowed_scan_roots",
            answer(201, "Job", "job queued"),
            body=json_body("JobRequest"),
        ),
    },
    "/api/jobs/{id}": {
        "get": operation("One job and its progress", answer(200, "Job", "job"), [path_param()]),
        "delete": operation("Cancel a job", answer(200, "Job", "job"), [path_param()]),
    },
    "/api/groups": {
        "get": operation(
            "Duplicate groups, filtered and paginated",
            answer(200, "GroupPage", "page"),
            [
                query("kind", {"enum": ["exact", "near", "similar"]}),
                query("state", {"enum": ["pending", "decided"]}),
                query("folder", {"type": "string", "minLength": 1, "maxLength": 512}),
                query("sort", {"enum": ["size", "count", "distance", "newest", "path", "id"]}),
                *PAGING,
            ],
        )
    },
    "/api/groups/{id}": {"get": operation("One group", answer(200, "Group", "group"), [path_param()])},
    "/api/files/{id}/thumbnail": {
        "get": operation(
            "JPEG thumbnail of an indexed file", answer(200, None, "thumbnail", "image/jpeg"), [path_param()]
        )
    },
    "/api/files/{id}/content": {
        "get": operation(
            "Bytes of an indexed file",
            {
                "200": {
                    "description": "file",
                    "content": {
                        "image/*": {"schema": {"type": "string"}},
                        "application/octet-stream": {"schema": {"type": "string"}},
                    },
                }
            },
            [path_param()],
        )
    },
    "/api/decisions": {
        "get": operation(
            "Decisions, newest first",
            answer(200, "DecisionList", "decisions"),
            [query("state", {"enum": DECISION_STATES}), *PAGING],
        ),
        "post": operation(
            "Queue keep / trash / move, or record not-duplicates",
            answer(201, "Decision", "decision"),
            body=json_body("DecisionRequest"),
        ),
    },
    "/api/decisions/{id}": {
        "delete": operation("Cancel a queued decision", answer(200, "Decision", "decision"), [path_param()])
    },
    "/api/decisions/apply": {
        "post": operation(
            "Apply queued decisions (all, or the given ids)",
            answer(200, "ApplyResult", "outcomes"),
            body={**json_body("ApplyRequest"), "required": False},
        )
    },
    "/api/decisions/bulk": {
        "get": operation(
            "Previews and batches of decisions by rule, newest first", answer(200, "BatchList", "batches")
        ),
        "post": operation(
            "Decide many groups by rule: a dry run stores a preview (201); the real run takes its preview_id "
            "and applies exactly that set as one batch in the background (202). 404 unknown preview, 409 "
            "expired / running / applied already",
            {**answer(201, "Batch", "preview"), **answer(202, "Batch", "batch started")},
            body=json_body("BulkRequest"),
        ),
    },
    "/api/decisions/bulk/{id}": {
        "get": operation(
            "One preview or batch with its progress", answer(200, "Batch", "batch"), [path_param()]
        ),
        "delete": operation(
            "Cancel a running batch (after the current chunk; it can be finished or undone) or discard a "
            "preview",
            answer(200, "Batch", "batch"),
            [path_param()],
        ),
    },
    "/api/undo/batch/{batch_id}": {
        "post": operation(
            "Put back every file a batch trashed or moved (in the background; follow GET "
            "/api/decisions/bulk/{id} or the `batch` events)",
            answer(202, "Batch", "undo started"),
            [path_param("batch_id")],
        )
    },
    "/api/undo/{action_id}": {
        "post": operation(
            "Put a trashed or moved file back",
            answer(200, "ActionResult", "restore"),
            [path_param("action_id")],
        )
    },
    "/api/actions": {
        "get": operation("The sorter's journal, newest first", answer(200, "ActionList", "actions"), PAGING)
    },
    "/api/export": {"get": operation("The duplicates JSON", answer(200, "Export", "document"))},
    "/api/events": {
        "get": operation(
            "Server-sent events: hello, group, job, decision, decision_applied, undone, batch, status",
            answer(200, None, "event stream", "text/event-stream"),
        )
    },
    "/api/openapi.json": {
        "get": operation(
            "This document",
            {
                "200": {
                    "description": "OpenAPI",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        )
    },
    "/metrics": {"get": operation("Prometheus metrics", answer(200, None, "metrics", "text/plain"))},
}


def operation_id(method: str, path: str) -> str:
    """Return a stable operationId such as `get_api_jobs_id`."""
    words = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    return f"{method}_{'_'.join(w for w in words.split('_') if w)}"


# POST answers whose id feeds other operations (schemathesis and clients follow these links).
LINKS = {
    ("/api/jobs", "post"): [("get", "/api/jobs/{id}"), ("delete", "/api/jobs/{id}")],
    ("/api/decisions", "post"): [("delete", "/api/decisions/{id}")],
}


def _paths_with_ids_and_links() -> dict[str, Any]:
    paths = {path: {method: dict(op) for method, op in ops.items()} for path, ops in PATHS.items()}
    for path, ops in paths.items():
        for method, op in ops.items():
            op["operationId"] = operation_id(method, path)
    for (path, method), targets in LINKS.items():
        created = paths[path][method]["responses"]["201"] = dict(paths[path][method]["responses"]["201"])
        created["links"] = {
            operation_id(m, p): {
                "operationId": operation_id(m, p),
                "parameters": {"id": "$response.body#/id"},
            }
            for m, p in targets
        }
    return paths


def document() -> dict[str, Any]:
    """Return the OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ComparImg API",
            "version": __version__,
            "description": "Every call needs `Authorization: Bearer TOKEN` (the token file) or the login "
            'cookie. Errors are `{"error": {"code", "message"}}` with a 4xx status.',
        },
        "paths": _paths_with_ids_and_links(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def get_openapi(request: web.Request) -> web.Response:
    """GET /api/openapi.json → the OpenAPI document."""
    return web.json_response(document())
