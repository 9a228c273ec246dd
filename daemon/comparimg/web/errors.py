"""One error body for the whole API: `{"error": {"code", "message"}}`, turned from exceptions in one place."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from comparimg.model import (
    ComparImgError,
    ConfigError,
    Conflict,
    ImageError,
    IndexFull,
    ModelError,
    NotFound,
    Refused,
)
from comparimg.web import security
from comparimg.web.security import Handler

log = logging.getLogger("comparimg.web")


class BadInput(ComparImgError):
    """A request whose parameters or body are malformed (wrong type, out of range, missing)."""


class FileOnlySetting(Refused):
    """A `PATCH /api/config` naming a setting that only the configuration file may change."""

    def __init__(self, key_path: str):
        self.key_path = key_path
        super().__init__(
            f"'{key_path}' cannot be changed through the API: set it in the configuration file and reload "
            "(SIGHUP, `systemctl reload comparimg`)"
        )


# exception class → (HTTP status, code); the first match in order wins.
STATUS_OF: tuple[tuple[type[BaseException], int, str], ...] = (
    (BadInput, 400, "bad_request"),
    (ConfigError, 400, "invalid_config"),
    (security.Unauthorized, 401, "unauthorized"),
    (FileOnlySetting, 403, "file_only_setting"),
    (Refused, 403, "refused"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (ModelError, 409, "model_unusable"),  # a stored model that cannot be loaded (restore): named, kept as is
    (security.TooLarge, 413, "too_large"),
    (security.UnsupportedMedia, 415, "unsupported_media_type"),
    (ImageError, 422, "bad_image"),
    (IndexFull, 503, "index_full"),  # the daemon is `degraded` until there is room; then writes resume
)


def error_response(status: int, code: str, message: str) -> web.Response:
    """Return the JSON error response every failure uses."""
    body = json.dumps({"error": {"code": code, "message": message}})
    response = web.Response(status=status, text=body, content_type="application/json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="comparimg"'
    response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler; turn domain exceptions and aiohttp's own HTTP errors into the JSON error body.

    Anything else is a bug: logged with its traceback and answered 500.
    """
    try:
        return await handler(request)
    except security.Forbidden as error:
        return error_response(403, error.code, str(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = "too_large" if error.status == 413 else error.reason.lower().replace(" ", "_")
        return error_response(error.status, code, error.text or error.reason)
    except tuple(cls for cls, _, _ in STATUS_OF) as error:
        status, code = next((s, c) for cls, s, c in STATUS_OF if isinstance(error, cls))
        return error_response(status, code, str(error))
    except Exception:
        log.exception("event=http_error method=%s path=%s", request.method, request.path)
        return error_response(500, "internal", "internal error (logged)")
