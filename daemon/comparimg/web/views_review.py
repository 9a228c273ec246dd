"""Views for reviewing: pages of groups, one group, a file's thumbnail and content."""

from __future__ import annotations

import asyncio
import mimetypes
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from comparimg.config import Settings
from comparimg.hashing import thumbnails
from comparimg.index import Index, journal, review
from comparimg.model import ORIENTATIONS, NotFound, Refused
from comparimg.web import schemas
from comparimg.web.inputs import QUERY, path_id
from comparimg.web.keys import CORE, THUMBNAILER, current_settings
from comparimg.web.views_decisions import decision_view

GROUP_KINDS = ("exact", "near", "similar")
THUMBNAIL_SIZE = 256
CONTENT_CHUNK = 1 << 20
FORMAT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}


async def list_groups(request: web.Request) -> web.Response:
    """GET /api/groups?kind=&state=&folder=&sort=&limit=&offset=

    Return {"groups": [...], "total", "limit", "offset"}. `kind` is one of GROUP_KINDS: `similar` groups
    (shots of one scene, never duplicates) are listed with the rest unless a kind is asked for.
    """
    query: schemas.GroupQuery = request[QUERY]
    kind = None if query.kind is None else str(query.kind)
    state = None if query.state is None else str(query.state)
    sort, folder, limit, offset = str(query.sort), query.folder, query.limit, query.offset
    settings = current_settings(request.app)

    def read(index: Index) -> tuple[list[dict[str, Any]], int]:
        page, total = review.group_page(index.db, kind, state, folder, sort, limit, offset)
        return group_views(index, page, settings), total

    groups, total = await request.app[CORE].read(read)
    return web.json_response({"groups": groups, "total": total, "limit": limit, "offset": offset})


async def get_group(request: web.Request) -> web.Response:
    """GET /api/groups/{id} → one group with its members. 404 for an unknown id."""
    group_id = path_id(request)
    settings = current_settings(request.app)

    def read(index: Index) -> dict[str, Any]:
        summary = review.group_summary(index.db, group_id)
        if summary is None:
            raise NotFound(f"no group {group_id}")
        return group_views(index, [summary], settings)[0]

    return web.json_response(await request.app[CORE].read(read))


def group_views(index: Index, page: list[review.GroupSummary], settings: Settings) -> list[dict[str, Any]]:
    """Given a page of summaries, return the groups as the API shows them (members, files, decisions)."""
    stored = {sg.id: sg.group for sg in index.groups_by_ids([s.id for s in page])}
    member_ids = [m.file_id for group in stored.values() for m in group.members]
    files = index.files_by_ids(member_ids)
    decisions = journal.decision_states_by_file(index.db, member_ids)
    references = [str(root.path) for root in settings.roots if root.reference]
    views = []
    for summary in page:
        group = stored.get(summary.id)
        if group is None:
            continue
        members = [
            _member_view(m, files.get(m.file_id), decisions.get(m.file_id), references) for m in group.members
        ]
        views.append(
            {
                "id": summary.id,
                "kind": summary.kind,
                "leader": group.leader,
                "state": summary.state,
                "created": summary.created,
                "decided": summary.decided,
                "freed": summary.freed,
                "members": members,
            }
        )
    return views


def _member_view(member, row, decision, references: list[str]) -> dict[str, Any]:
    fingerprint = row.fingerprint if row else None
    path = row.path if row else ""
    return {
        "file_id": member.file_id,
        "path": path,
        "size": row.identity.size if row else 0,
        "width": fingerprint.width if fingerprint else 0,
        "height": fingerprint.height if fingerprint else 0,
        "format": fingerprint.format if fingerprint else "",
        "mtime_ns": row.identity.mtime_ns if row else 0,
        "distance": member.distance,
        "orientation": ORIENTATIONS[member.orientation % len(ORIENTATIONS)],
        "suggested": member.suggested,
        "verdict": member.verdict or None,  # the learned verifier's, on the edge to the leader
        "confidence": member.confidence,
        "reason": member.reason or None,  # why this is the pick of a `similar` group
        "state": row.state if row else "missing",
        "reference": any(path.startswith(ref.rstrip("/") + "/") for ref in references),
        "decision": decision_view(decision) if decision else None,
        "thumbnail_url": f"/api/files/{member.file_id}/thumbnail",
        "content_url": f"/api/files/{member.file_id}/content",
    }


async def _opened_file(request: web.Request) -> tuple[Any, int]:
    """Return (row, read-only descriptor) of an indexed file that may be served: opened through folder
    descriptors without following symlinks and matched (fstat) with its indexed identity, so a name swapped
    for a symlink serves nothing. The caller closes the descriptor. Raise NotFound / Refused / Conflict."""
    file_id = path_id(request)
    row = await request.app[CORE].read(lambda index: index.file_by_id(file_id))
    if row is None or row.state == "missing":
        raise NotFound(f"no file {file_id}")
    return row, await request.app[CORE].open_file(row.path, row.identity)


async def file_content(request: web.Request) -> web.StreamResponse:
    """GET /api/files/{id}/content → the file's bytes (indexed files inside a root only), read from the
    descriptor that was checked."""
    row, descriptor = await _opened_file(request)
    try:
        fingerprint = row.fingerprint
        kind = FORMAT_TYPES.get(fingerprint.format if fingerprint else "")
        kind = kind or mimetypes.guess_type(Path(row.path).name)[0] or "application/octet-stream"
        response = web.StreamResponse(
            headers={
                "Content-Type": kind,
                "Cache-Control": "private, max-age=60",
                "Content-Disposition": "inline",
            }
        )
        size = os.fstat(descriptor).st_size
        response.content_length = size
        await response.prepare(request)
        offset = 0
        while offset < size:
            chunk = await asyncio.to_thread(os.pread, descriptor, min(CONTENT_CHUNK, size - offset), offset)
            if not chunk:
                break
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
        return response
    finally:
        os.close(descriptor)


async def file_thumbnail(request: web.Request) -> web.StreamResponse:
    """GET /api/files/{id}/thumbnail → a JPEG at most 256 px, made once per content hash in a worker (which
    reads the checked descriptor through /proc, never the file's name)."""
    row, descriptor = await _opened_file(request)
    try:
        if row.fingerprint is None:
            raise Refused(f"file {row.id} could not be decoded: {row.error}")
        cache = current_settings(request.app).index_path.parent / "thumbnails"
        target = thumbnails.cache_path(cache, row.fingerprint.content_hash, THUMBNAIL_SIZE)
        if not target.exists():
            pool = request.app[THUMBNAILER].get()
            source = f"/proc/{os.getpid()}/fd/{descriptor}"
            await pool.run_async(thumbnails.make_thumbnail, source, str(target), THUMBNAIL_SIZE)
    finally:
        os.close(descriptor)
    return web.FileResponse(
        target, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=86400"}
    )
