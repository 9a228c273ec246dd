"""The duplicates JSON (`comparimg scan --json`, the daemon's export file, `GET /api/export`).

    {"version": 1,
     "groups": [{"id", "kind": "exact" | "near",
                 "members": [{"path", "size", "width", "height", "format", "distance", "orientation",
                              "suggested": "keep" | "trash", "verdict", "confidence", "reason"}]}],
     "similar": [{"id", "kind": "similar", "members": [... the same, every member "keep"]}],
     "errors": [{"path", "error"}],
     "stats": {"files", "hashed", "rehashed", "unchanged", "moved", "errors", "missing", "verified",
               "judged", "groups", "seconds", "absent_roots", "threshold", "workers"}}

`groups` holds the duplicate groups only, as in every version-1 document: a reader that trashes the "trash"
members of each group, or counts them, keeps working. The groups of kind "similar" (shots of one scene, from
the learned verifier) are listed apart in `similar`; none of their members is suggested for the trash, the
best shot has a `reason` ("sharpest of 4 shots"). `verdict` ("duplicate" | "similar") and `confidence` are
the learned verifier's on the member's edge to the group's leader, null where it did not judge (the leader,
the same bytes, mode `hash`). These keys were added without changing the version: nothing a version-1 reader
used changed meaning.

Paths are absolute and exact: a byte of a file name that is not UTF-8 is written as the escape of the lone
surrogate Python holds it as (`caf\xe9.jpg` → `"caf\\udce9.jpg"`), which `json.loads` and `os.fsencode` turn
back into the same bytes (`document_text`); every other character is written as itself.
`orientation` is a name from `model.ORIENTATIONS`; members are listed keeper first.
`stats` has one shape wherever the document comes from, built by `export_stats`: `comparimg scan` gives
what that scan did; the daemon (its export file and `GET /api/export`) gives `daemon_stats`, where files,
errors, missing and groups are the index's counts and the rest is what it did since it started.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from comparimg.atomic_files import create_private_folder, write_text_atomically
from comparimg.index import FileRow, Index, StoredGroup
from comparimg.index.files import prefix_range
from comparimg.model import ORIENTATIONS

EXPORT_VERSION = 1
ALL_PATHS = ("/",)
EXPORT_MODE = 0o600  # private, as the index: it lists every photo path
# What `json.dumps(ensure_ascii=False)` leaves in a string: a lone surrogate, which UTF-8 cannot encode.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


# The keys of a scan report (`scanner.ScanReport`, which this room may not import; a test keeps them equal),
# then the settings the scan used.
REPORT_KEYS = (
    "files",
    "hashed",
    "rehashed",
    "unchanged",
    "moved",
    "errors",
    "missing",
    "verified",
    "judged",
    "groups",
    "seconds",
    "absent_roots",
)
STATS_KEYS = (*REPORT_KEYS, "threshold", "workers")


def export_stats(report: Mapping[str, Any], threshold: int, workers: int) -> dict[str, Any]:
    """Given what a scan did (the `REPORT_KEYS` of a `ScanReport.as_dict()`), the threshold and the number
    of workers it used, return the document's `stats`, with exactly `STATS_KEYS`. Raise KeyError naming a
    key the report lacks."""
    stats = {key: report[key] for key in REPORT_KEYS}
    return {**stats, "absent_roots": list(stats["absent_roots"]), "threshold": threshold, "workers": workers}


def daemon_stats(counts: Mapping[str, int], activity: Mapping[str, Any]) -> dict[str, Any]:
    """Given the index counts (`Index.counts()`) and the daemon's activity (`Service.activity()`), return
    the `stats` of the daemon's document: files present, errors, missing and groups from the index; what was
    hashed, re-hashed, skipped unchanged, moved and verified since the start, and for how many seconds."""
    report = {
        **{key: activity[key] for key in ("hashed", "rehashed", "unchanged", "moved", "verified")},
        "judged": activity.get("judged", 0),
        "files": counts["files"] - counts["files_missing"],
        "errors": counts["files_error"],
        "missing": counts["files_missing"],
        "groups": counts["groups"],
        "seconds": activity["seconds"],
        "absent_roots": activity["absent_roots"],
    }
    return export_stats(report, activity["threshold"], activity["workers"])


def build_export(
    index: Index, roots: Sequence[str] | None = None, stats: dict[str, Any] | None = None
) -> dict:
    """Given an index, optional roots and the stats (`export_stats`, `daemon_stats`), return the duplicates
    document.

    With roots, only groups with a member below one of them, and errors below them, are listed.
    """
    roots = tuple(os.path.abspath(r) for r in roots) if roots else ALL_PATHS
    groups = list(_groups(index, roots))
    return {
        "version": EXPORT_VERSION,
        "groups": [g for g in groups if g["kind"] != "similar"],
        "similar": [g for g in groups if g["kind"] == "similar"],
        "errors": [{"path": e.path, "error": e.reason} for e in index.errors_under(roots)],
        "stats": dict(stats or {}),
    }


def _groups(index: Index, roots: tuple[str, ...]) -> Iterator[dict]:
    ranges = [prefix_range(r) for r in roots]
    batch: list[StoredGroup] = []
    for stored in index.iter_groups():
        batch.append(stored)
        if len(batch) >= 500:
            yield from _describe(index, batch, ranges, roots)
            batch = []
    yield from _describe(index, batch, ranges, roots)


def _describe(index: Index, batch: list[StoredGroup], ranges, roots) -> Iterator[dict]:
    rows = index.files_by_ids({m.file_id for g in batch for m in g.group.members})
    for stored in batch:
        paths = [rows[m.file_id].path for m in stored.group.members]
        if any(p in roots or lo <= p < hi for p in paths for lo, hi in ranges):
            yield {
                "id": stored.id,
                "kind": stored.group.kind,
                "members": [_member(rows[m.file_id], m) for m in stored.group.members],
            }


def _member(row: FileRow, member) -> dict:
    fingerprint = row.fingerprint
    return {
        "path": row.path,
        "size": row.identity.size,
        "width": fingerprint.width if fingerprint else None,
        "height": fingerprint.height if fingerprint else None,
        "format": fingerprint.format if fingerprint else None,
        "distance": member.distance,
        "orientation": ORIENTATIONS[member.orientation],
        "suggested": member.suggested,
        "verdict": member.verdict or None,
        "confidence": member.confidence,
        "reason": member.reason or None,
    }


def write_export(document: dict, path: str | os.PathLike) -> None:
    """Given the duplicates document and a path, write it atomically (temp file, fsync, rename), mode 0600
    in a folder created private when missing."""
    create_private_folder(os.path.dirname(os.path.abspath(path)))
    write_text_atomically(path, document_text(document), EXPORT_MODE)


def document_text(document: dict) -> str:
    """Given the duplicates document, return its JSON text (indented, ending with a newline), encodable as
    UTF-8: readable characters as themselves, the lone surrogate of a file name byte that is not UTF-8 as
    its `\\udcXX` escape (JSON strings may hold any escape; that one keeps the path exact)."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if text.isascii():  # the common case, checked at memory speed
        return text
    return LONE_SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
