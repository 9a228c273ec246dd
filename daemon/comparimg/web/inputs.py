"""Reading request input with the models of web/schemas.py: the same code the OpenAPI document is made
from. Raise BadInput (400) naming every field that is wrong."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from comparimg.web.errors import BadInput

# Where the app puts a request's validated body and query (web/routes.py) for its view to read: typed keys
# where aiohttp has them (3.12 on; it warns about text keys since), text keys before.
_KEY = getattr(web, "RequestKey", None)
BODY: Any = _KEY("body", object) if _KEY else "comparimg.body"
QUERY: Any = _KEY("query", object) if _KEY else "comparimg.query"
_ADAPTERS: dict[Any, TypeAdapter] = {}


def adapter(shape: Any) -> TypeAdapter:
    """Return the (cached) pydantic TypeAdapter of a model or type."""
    found = _ADAPTERS.get(shape)
    if found is None:
        found = _ADAPTERS[shape] = TypeAdapter(shape)
    return found


async def read_body(request: web.Request, shape: Any, required: bool = True) -> Any:
    """Return the request's JSON body validated by `shape` (an empty body stands for `{}` when not
    `required`). Raise BadInput; a body over the limit raises aiohttp's 413 (the middleware's error body)."""
    raw = await request.read()
    if not raw and not required:
        raw = b"{}"
    try:
        # the standard parser, not pydantic's: a file name that is not UTF-8 travels as `\udcXX` escapes,
        # lone surrogates that only json.loads lets through
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"the body is not valid JSON: {error}") from error
    except RecursionError:  # arrays or objects nested deeper than the interpreter's recursion limit
        raise BadInput("the body is nested too deeply") from None
    try:
        return adapter(shape).validate_python(value)
    except ValidationError as error:
        raise BadInput(describe(error, "the body")) from None


def read_query(request: web.Request, shape: Any) -> Any:
    """Return the query parameters validated by `shape` (an empty value stands for the default)."""
    values = {name: value for name, value in request.query.items() if value != ""}
    try:
        return adapter(shape).validate_python(values)
    except ValidationError as error:
        raise BadInput(describe(error, "the query")) from None


def describe(error: ValidationError, what: str) -> str:
    """Return every problem of a validation error on one line: `field.path: reason; ...`."""
    problems = []
    for details in error.errors(include_url=False):
        where = ".".join(str(part) for part in details["loc"]) or what
        problems.append(f"{where}: {details['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def path_id(request: web.Request, name: str = "id") -> int:
    """Return the integer id from the URL; 404 for anything that is no id (documented as an integer >= 1)."""
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(text=f"no such {name}")
    return int(raw)
