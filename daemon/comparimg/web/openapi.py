"""The OpenAPI 3.1 document (served at /api/openapi.json), made from the route table (web/routes.py) and
the pydantic models the requests are validated with (web/schemas.py, comparimg.config): nothing in it is
written by hand but the summaries."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from comparimg import __version__
from comparimg.config import SETTINGS, Settings
from comparimg.web import config_patch, schemas

if TYPE_CHECKING:
    from comparimg.web.routes import Route

REF = "#/components/schemas/{model}"
ID = {"type": "integer", "minimum": 1}


def operation_id(method: str, path: str) -> str:
    """Return a stable operationId such as `get_api_jobs_id`."""
    words = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    return f"{method.lower()}_{'_'.join(w for w in words.split('_') if w)}"


_MADE: dict[int, dict[str, Any]] = {}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """Given the route table, return the OpenAPI document (made once per table)."""
    made = _MADE.get(id(routes))
    if made is None:
        made = _MADE[id(routes)] = _document(tuple(route for route in routes if route.summary is not None))
    return made


def _document(routes: tuple[Route, ...]) -> dict[str, Any]:
    schemas_of, components = _schemas(routes)
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ComparImg API",
            "version": __version__,
            "description": "Every call needs `Authorization: Bearer TOKEN` (the token file) or the login "
            'cookie. Errors are `{"error": {"code", "message"}}` with a 4xx status.',
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _models(routes: tuple[Route, ...]) -> dict[tuple[Any, str], TypeAdapter]:
    """Return every model the routes name, keyed by (model, "validation" | "serialization")."""
    wanted: dict[tuple[Any, str], TypeAdapter] = {}

    def add(shape: Any, mode: str) -> None:
        if not isinstance(shape, str | tuple) and shape is not schemas.ConfigPatch:
            wanted.setdefault((shape, mode), TypeAdapter(shape))

    add(schemas.Error, "serialization")
    add(schemas.Event, "serialization")
    for section in config_patch.API_SECTIONS:
        add(SETTINGS_SECTIONS[section], "validation")
    for route in routes:
        add(route.body, "validation")
        add(route.query, "validation")
        for shape in route.answers.values():
            add(shape, "serialization")
    return wanted


def _schemas(routes: tuple[Route, ...]) -> tuple[dict[tuple[Any, str], Any], dict[str, Any]]:
    """Return the JSON Schema of each model the routes name and the components they refer to."""
    wanted = _models(routes)
    inputs = [(key, key[1], adapter) for key, adapter in wanted.items()]
    made, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF)  # type: ignore[arg-type]
    schemas_of = {key: schema for (key, _mode), schema in made.items()}
    components = dict(definitions.get("$defs", {}))
    components["Event"] = schemas_of[(schemas.Event, "serialization")]
    schemas_of[(schemas.Event, "serialization")] = {"$ref": REF.format(model="Event")}
    components["ConfigPatch"] = _config_patch(schemas_of)
    return schemas_of, components


SETTINGS_SECTIONS = {
    name: hint for name, hint in typing.get_type_hints(Settings).items() if name in config_patch.API_SECTIONS
}


def _config_patch(schemas_of: dict[tuple[Any, str], Any]) -> dict[str, Any]:
    """The body of PATCH /api/config: the sections the API may change, as the file's schema has them."""
    sorter = SETTINGS.json_schema(by_alias=True)["$defs"]["SorterSettings"]["properties"]
    properties = {
        name: schemas_of[(SETTINGS_SECTIONS[name], "validation")]
        for name in sorted(config_patch.API_SECTIONS)
    }
    for key in sorted(config_patch.API_KEYS):
        section, _, name = key.partition(".")
        properties.setdefault(section, {"type": "object", "properties": {}})["properties"][name] = sorter[
            name
        ]
    return {
        "type": "object",
        "description": "A partial YAML-shaped mapping; sections merge. Only "
        + ", ".join(
            [*(f"{name}.*" for name in sorted(config_patch.API_SECTIONS)), *sorted(config_patch.API_KEYS)]
        )
        + " may change through the API; the other settings answer 403 `file_only_setting` (set them in the "
        "configuration file and reload).",
        "properties": properties,
    }


def _operation(route: Route, schemas_of: dict[tuple[Any, str], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id(route.method, route.path),
        "summary": route.summary,
        "responses": {
            **{
                str(status): _answer(route, status, shape, schemas_of)
                for status, shape in route.answers.items()
            },
            "default": {
                "description": "Error (4xx)",
                "content": _json(schemas_of[(schemas.Error, "serialization")]),
            },
        },
    }
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": ID}
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if route.query is not None:
        parameters += _query_parameters(route.query)
    if parameters:
        operation["parameters"] = parameters
    if route.body is schemas.ConfigPatch:
        operation["requestBody"] = {
            "required": True,
            "content": _json({"$ref": REF.format(model="ConfigPatch")}),
        }
    elif route.body is not None:
        body = schemas_of[(route.body, "validation")]
        operation["requestBody"] = {"required": route.body_required, "content": _json(body)}
    return operation


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(route: Route, status: int, shape: Any, schemas_of: dict[tuple[Any, str], Any]) -> dict[str, Any]:
    """One documented success response: a model as JSON, or a media type."""
    if shape == "text/event-stream":
        content = {"text/event-stream": {"schema": SSE_EVENT}}
    elif shape == "OpenAPI":
        content = _json({"type": "object"})
    elif isinstance(shape, str | tuple):
        content = {
            media: {"schema": {"type": "string"}} for media in ([shape] if isinstance(shape, str) else shape)
        }
    else:
        content = _json(schemas_of[(shape, "serialization")])
    answer: dict[str, Any] = {"description": "ok", "content": content}
    if route.links and status == min(route.answers):
        answer["links"] = {
            operation_id(method, path): {
                "operationId": operation_id(method, path),
                "parameters": {name: "$response.body#/id" for name in re.findall(r"{(\w+)}", path)},
            }
            for method, path in route.links
        }
    return answer


# One server-sent event as OpenAPI 3.1 tools (schemathesis among them) read `text/event-stream`: each event
# an object of its fields, `data` a JSON text holding one of the Event models.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"enum": list(schemas.EVENT_KINDS)},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": REF.format(model="Event")},
        },
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
    "required": ["event", "data"],
}


def _query_parameters(model: Any) -> list[dict[str, Any]]:
    """Return the query parameters of a query model: optional, never null (an absent one has its default)."""
    schema = TypeAdapter(model).json_schema(ref_template=REF)
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        parameters.append(
            {"name": name, "in": "query", "required": name in schema.get("required", ()), "schema": prop}
        )
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if len(options) == 1:
        rest = {
            key: value
            for key, value in schema.items()
            if key != "anyOf" and (key, value) != ("default", None)
        }
        return {**rest, **options[0]}
    return schema
