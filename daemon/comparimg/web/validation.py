"""Reading request input strictly: JSON objects, typed fields, bounded integers. Raise BadInput."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from comparimg.web.errors import BadInput

MAX_ID = 2**63 - 1


async def json_object(request: web.Request, allow_empty: bool = False) -> dict[str, Any]:
    """Return the request's JSON body, which must be an object. Raise BadInput (too-large bodies raise
    aiohttp's 413, turned into the error body by the middleware)."""
    raw = await request.read()
    if not raw and allow_empty:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInput(f"the body is not valid JSON: {error}") from error
    except RecursionError:  # arrays or objects nested deeper than the interpreter's recursion limit
        raise BadInput("the body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadInput("the body must be a JSON object")
    return value


def only_keys(body: Mapping[str, Any], allowed: set[str]) -> None:
    """Raise BadInput when `body` has keys outside `allowed`."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadInput(f"unknown field(s): {', '.join(unknown)}")


def integer(value: Any, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """Return `value` as an int in [low, high]. Raise BadInput (booleans are not integers)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"{name} must be an integer from {low} to {high}")
    return value


def boolean(value: Any, name: str) -> bool:
    """Return `value` if it is a boolean. Raise BadInput."""
    if not isinstance(value, bool):
        raise BadInput(f"{name} must be true or false")
    return value


def text(value: Any, name: str, max_length: int = 4096) -> str:
    """Return `value` if it is a non-empty string without NUL. Raise BadInput."""
    if not isinstance(value, str) or not value or len(value) > max_length or "\x00" in value:
        raise BadInput(f"{name} must be a non-empty string of at most {max_length} characters")
    return value


def file_path(value: Any, name: str) -> str:
    """Return `value` if it is a `text` that names a file path: a lone surrogate in it (from a `\\udcXX`
    escape) must stand for a byte of a file name that is not UTF-8 (U+DC80..U+DCFF). Raise BadInput."""
    path = text(value, name)
    try:
        os.fsencode(path)
    except UnicodeEncodeError as error:
        raise BadInput(f"{name} holds a character no file name can hold: {error.reason}") from error
    return path


def id_list(value: Any, name: str, low: int = 1, high: int = 10_000) -> list[int]:
    """Return `value` as a list of distinct ids (between `low` and `high` of them). Raise BadInput."""
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise BadInput(f"{name} must be a list of {low} to {high} ids")
    return list(dict.fromkeys(integer(item, name, 1) for item in value))


def path_id(request: web.Request, name: str = "id") -> int:
    """Return the integer id from the URL. Raise NotFound-like BadInput for junk (404 via the router)."""
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound(text=f"no such {name}")
    return int(raw)


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Return an integer query parameter in [low, high], or `default`. Raise BadInput."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise BadInput(f"{name} must be an integer") from error
    return integer(value, name, low, high)


def query_choice(
    request: web.Request, name: str, choices: tuple[str, ...], default: str | None
) -> str | None:
    """Return a query parameter that must be one of `choices` (empty means `default`). Raise BadInput."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadInput(f"{name} must be one of {', '.join(choices)}")
    return raw
