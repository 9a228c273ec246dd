"""The token, and the checks every request passes: Host (DNS rebinding), Origin (CSRF), token, body type
and size. No CORS headers are ever sent, so other sites' scripts cannot read any answer."""

from __future__ import annotations

import errno
import hmac
import ipaddress
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from comparimg.atomic_files import create_private_folder
from comparimg.config import HttpSettings
from comparimg.web.keys import TOKEN, current_settings

COOKIE = "comparimg_token"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PREFIXES = ("/css/", "/js/")
PUBLIC_PATHS = frozenset({"/", "/login", "/favicon.ico"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Forbidden(Exception):
    """A request refused before it reaches a view (bad Host or Origin)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class Unauthorized(Exception):
    """A request without the right token."""


class UnsupportedMedia(Exception):
    """A request body that is not JSON."""


class TooLarge(Exception):
    """A request body over `http.max_body_bytes`."""


def ensure_token(path: Path) -> str:
    """Return the token stored in `path`, creating the file (mode 0600; a missing folder is made 0700) with
    a new random token when it does not exist or holds no usable token. The file is opened relative to its
    folder without following a symlink, and only in a folder nobody else can change. Raise OSError
    (PermissionError naming the path for a symlink, a file or folder of another user, a folder others may
    write to) when it cannot be read or written safely."""
    create_private_folder(path.parent)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_token_folder(folder, path.parent)
        token = _existing_token(folder, path)
        if token is not None:
            return token
        return _new_token(folder, path)
    finally:
        os.close(folder)


def _check_token_folder(folder: int, where: Path) -> None:
    # Another user who may rename or delete entries here could swap the token for one they know.
    info = os.fstat(folder)
    if info.st_uid not in (os.geteuid(), 0):
        raise PermissionError(f"the token file's folder {where} belongs to uid {info.st_uid}, not to us")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise PermissionError(f"the token file's folder {where} may be written by other users")


def _existing_token(folder: int, path: Path) -> str | None:
    """Given the folder's descriptor, return the token of an existing file (made 0600), or None when there
    is none or it is unusable (it is then removed). Raise PermissionError for a symlink or a foreign file."""
    try:
        descriptor = os.open(
            path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder
        )
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PermissionError(f"the token file {path} is a symlink; refusing to follow it") from None
        raise
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise PermissionError(f"the token file {path} is not a regular file of ours")
        if stat.S_IMODE(info.st_mode) != 0o600:
            os.fchmod(descriptor, 0o600)
        token = handle.read(4096).decode("ascii", "replace").strip()
    if len(token) >= 16 and token.isprintable() and "\ufffd" not in token:
        return token
    os.unlink(path.name, dir_fd=folder)
    return None


def _new_token(folder: int, path: Path) -> str:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(path.name, flags, 0o600, dir_fd=folder)
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token


def allowed_host_names(http: HttpSettings) -> frozenset[str]:
    """Return the Host names accepted: the bind address, loopback names when bound to loopback, and the
    configured `allowed_hosts` (lower case, without port)."""
    names = {http.host.lower().strip("[]"), *(name.lower() for name in http.allowed_hosts)}
    if _is_loopback(http.host):
        names |= {"localhost", "127.0.0.1", "::1"}
    return frozenset(names)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def host_name(header: str) -> str:
    """Return the host part of a Host header (no port, IPv6 brackets removed), lower case."""
    parsed = urlsplit(f"//{header}")
    try:
        return (parsed.hostname or "").lower()
    except ValueError:
        return ""


def same_origin(origin: str, host_header: str) -> bool:
    """Return True when an Origin header names the very host and port the request was sent to."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def token_matches(request: web.Request, token: str) -> bool:
    """Return True when the request carries the token as a Bearer header or the login cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and given and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), token.encode())


def check_request(request: web.Request) -> None:
    """Raise Forbidden, Unauthorized, UnsupportedMedia or TooLarge for a request that may not proceed."""
    http = current_settings(request.app).http
    if host_name(request.headers.get("Host", "")) not in allowed_host_names(http):
        raise Forbidden("bad_host", "this Host is not served here (DNS rebinding guard)")
    if request.method in MUTATING:
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request.headers.get("Host", "")):
            raise Forbidden("bad_origin", "cross-origin requests may not change anything")
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            raise Forbidden("bad_origin", "cross-site requests may not change anything")
    if _needs_token(request.path) and not token_matches(request, request.app[TOKEN]):
        raise Unauthorized("a valid token is required (Authorization: Bearer TOKEN, or the login link)")
    _check_body(request, http.max_body_bytes)


def _needs_token(path: str) -> bool:
    return not (path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES))


def _check_body(request: web.Request, limit: int) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(f"request bodies are limited to {limit} bytes")
    has_body = bool(length) or "Transfer-Encoding" in request.headers
    if has_body and request.content_type != "application/json":
        raise UnsupportedMedia("request bodies must be application/json")


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run `check_request`, then the view; add headers that keep answers private and unframed."""
    check_request(request)
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


async def login(request: web.Request) -> web.Response:
    """GET /login?token=…: check the token once, set it as an HttpOnly SameSite=Strict cookie and redirect
    to `/`, so the token leaves the address bar. Raise Unauthorized for a wrong token."""
    given = request.query.get("token", "")
    if not given or not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
        raise Unauthorized("the login link's token is not valid")
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(COOKIE, request.app[TOKEN], httponly=True, samesite="Strict", path="/")
    response.headers["Cache-Control"] = "no-store"
    return response
