"""File names that are not valid UTF-8 (`caf\\xe9.jpg`, Latin-1 bytes): a Linux file name is bytes.

They are indexed, matched, exported, shown, trashed and restored like any other name, byte for byte, and
nothing else stops: the index, `comparimg scan`, the daemon (start-up scan and live watching), the API.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bulk_support import wait_batch
from comparimg.index import open_index, review
from comparimg.model import FileIdentity, Fingerprint
from daemon_harness import Daemon, api_get, env_with_package, photo_bytes, wait_for
from web_support import start_live, stop_live

LATIN1_NAME = b"caf\xe9.jpg"  # "café.jpg" in Latin-1: not valid UTF-8


def bytes_path(folder: Path, name: bytes) -> str:
    """Given a folder and a file name as bytes, return the path as the program holds it (surrogateescape)."""
    return os.fsdecode(os.fsencode(folder) + b"/" + name)


def raw_rows(index: Path, sql: str) -> list[tuple]:
    """Given an index file and a query, return its rows with text read as bytes (what is stored)."""
    with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as conn:
        conn.text_factory = bytes
        rows = conn.execute(sql).fetchall()
    conn.close()
    return rows


# --- the index room -------------------------------------------------------------------------------------


def fingerprint() -> Fingerprint:
    return Fingerprint("c0ffee", 10, 10, "JPEG", (1, 2, 3, 4, 5, 6, 7, 8), ())


def test_index_stores_the_exact_bytes_and_finds_them_by_equality_and_range(tmp_path):
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/dossier-\xe9t\xe9")  # a non-UTF-8 folder too
    odd, plain, accented = bytes_path(Path(folder), LATIN1_NAME), folder + "/b.jpg", folder + "/été.jpg"
    identity = FileIdentity(1, 2, 3, 4)
    with open_index(tmp_path / "index.sqlite3") as index:
        with index.transaction():
            for path in (odd, plain, accented):
                index.upsert_fingerprint(path, folder, identity, fingerprint(), now=1.0)
            index.record_walk_error(folder + "/locked-\udcff", folder, "permission denied", now=1.0)
        assert index.file_by_path(odd).path == odd
        assert [r.path for r in index.iter_files_under(folder)] == sorted(
            [odd, plain, accented], key=os.fsencode
        )
        assert set(index.files_not_seen_since(folder, since=2.0)) == {1, 2, 3}
        assert [e.path for e in index.errors_under([folder])] == [folder + "/locked-\udcff"]
        with index.transaction():
            index.rename_file(index.file_by_path(odd).id, folder + "/b\udce9bé.jpg", folder, now=3.0)
        assert index.file_by_path(folder + "/b\udce9bé.jpg").id == 1
        assert review.group_page(index.db, None, None, folder, "id", 10, 0) == ([], 0)  # no group yet
    stored = dict(raw_rows(tmp_path / "index.sqlite3", "SELECT path, typeof(path) FROM files"))
    assert stored[os.fsencode(folder) + b"/b\xe9b\xc3\xa9.jpg"] == b"text"  # the file's bytes, as TEXT
    assert stored[os.fsencode(folder) + "/été.jpg".encode()] == b"text"  # UTF-8 names: as they always were


def test_an_index_written_before_the_codec_is_read_unchanged(tmp_path):
    with open_index(tmp_path / "index.sqlite3") as index:
        pass
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:  # rows bound as plain str, as before
        conn.execute(
            "INSERT INTO files (root, path, device, inode, size, mtime_ns, state, first_seen, last_seen) "
            "VALUES ('/p', '/p/été.jpg', 1, 2, 3, 4, 'ok', 0, 0)"
        )
    conn.close()
    with open_index(tmp_path / "index.sqlite3") as index:
        assert index.file_by_path("/p/été.jpg").id == 1
        assert [r.path for r in index.iter_files_under("/p", ("ok",))] == ["/p/été.jpg"]


# --- comparimg scan -------------------------------------------------------------------------------------


def test_scan_lists_a_non_utf8_name_in_its_group_and_exits_0(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(photo_bytes(1))
    with open(os.fsencode(root) + b"/" + LATIN1_NAME, "wb") as out:
        out.write(photo_bytes(1))
    out_file = tmp_path / "out.json"
    command = [sys.executable, "-m", "comparimg", "scan", str(root), "--json", str(out_file)]
    done = subprocess.run(command, capture_output=True, timeout=120, env=env_with_package())
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    text = out_file.read_bytes().decode("utf-8")  # valid UTF-8 text: the odd byte is a JSON escape
    assert '/caf\\udce9.jpg"' in text
    (group,) = json.loads(text)["groups"]
    assert {os.fsencode(m["path"]) for m in group["members"]} == {
        os.fsencode(root / "a.jpg"),
        os.fsencode(root) + b"/" + LATIN1_NAME,
    }
    to_stdout = subprocess.run(
        [*command[:-2], "--json", "-"], capture_output=True, timeout=120, env=env_with_package()
    )
    assert to_stdout.returncode == 0 and json.loads(to_stdout.stdout)["groups"] == [group]


# --- the API, in front of the real daemon ---------------------------------------------------------------


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


async def test_api_shows_exports_trashes_and_restores_the_exact_name(live, tmp_path):
    folder = Path(bytes_path(tmp_path / "photos", b"alb\xfcm"))  # the job names a non-UTF-8 folder too
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo_bytes(7))
    odd = os.fsencode(folder) + b"/" + LATIN1_NAME
    with open(odd, "wb") as out:
        out.write(photo_bytes(7))
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    assert (await live.wait_job(job["id"]))["state"] == "done"
    (group,) = (await live.json("GET", "/api/groups"))["groups"]
    member = next(m for m in group["members"] if os.fsencode(m["path"]) == odd)
    response = await live.get(member["content_url"])
    assert response.status == 200 and await response.read() == photo_bytes(7)
    export = await live.json("GET", "/api/export")
    assert odd in {os.fsencode(m["path"]) for g in export["groups"] for m in g["members"]}

    await live.json("POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]}, status=201)
    queued = (await live.json("GET", "/api/decisions?state=queued"))["decisions"]
    assert [os.fsencode(d["path"]) for d in queued] == [odd]
    result = await live.json("POST", "/api/decisions/apply", {})
    assert result["applied"] == 1, result
    assert not os.path.exists(odd)
    (trashed,) = [p for p in (tmp_path / "trash").rglob("*") if p.is_file() and p.suffix == ".jpg"]
    assert os.fsencode(trashed.name) == LATIN1_NAME and trashed.read_bytes() == photo_bytes(7)
    assert os.fsencode(trashed.parent.name) == b"alb\xfcm"
    (action,) = (await live.json("GET", "/api/actions"))["actions"]
    assert os.fsencode(action["source"]) == odd
    restored = await live.json("POST", f"/api/undo/{action['id']}")
    assert restored["state"] == "done"
    with open(odd, "rb") as back:
        assert back.read() == photo_bytes(7)
    assert sorted(os.listdir(os.fsencode(folder))) == [b"a.jpg", LATIN1_NAME]


# --- the daemon as a process, with real inotify ---------------------------------------------------------


def byte_groups(daemon: Daemon) -> set[frozenset[bytes]]:
    """Given a running daemon, return the groups of its export file as sets of file-system paths (bytes)."""
    return {frozenset(map(os.fsencode, group)) for group in daemon.grouped_paths()}


def test_daemon_start_up_scan_indexes_a_non_utf8_name(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    at_start = os.fsencode(root) + b"/d\xe9j\xe0.jpg"
    with open(at_start, "wb") as out:
        out.write(photo_bytes(4))
    (root / "b.jpg").write_bytes(photo_bytes(4))
    daemon = Daemon(tmp_path, [root], settle=0.3)
    try:
        daemon.start()  # waits for the start-up scan to finish
        wait_for(
            lambda: frozenset({at_start, os.fsencode(root / "b.jpg")}) in byte_groups(daemon),
            timeout=15,
            message=daemon.log()[-3000:],
        )
        assert "task_failed" not in daemon.log()
    finally:
        assert daemon.stop() == 0


def test_daemon_indexes_a_non_utf8_name_dropped_in_and_keeps_going(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(photo_bytes(3))
    daemon = Daemon(tmp_path, [root], settle=0.3)
    try:
        daemon.start()
        dropped = os.fsencode(root) + b"/" + LATIN1_NAME  # real inotify: a copy dropped in while it watches
        with open(dropped, "wb") as out:
            out.write(photo_bytes(3))
        wait_for(
            lambda: frozenset({dropped, os.fsencode(root / "a.jpg")}) in byte_groups(daemon),
            timeout=15,
            message=daemon.log()[-3000:],
        )
        (root / "after.jpg").write_bytes(photo_bytes(5))  # and it keeps indexing other files
        (root / "after-copy.jpg").write_bytes(photo_bytes(5))
        wait_for(
            lambda: {str(root / "after.jpg"), str(root / "after-copy.jpg")} in daemon.grouped_paths(),
            timeout=15,
            message=daemon.log()[-3000:],
        )
        _, status = api_get(daemon, "/api/status")
        assert status["state"] == "watching", status
        assert "task_failed" not in daemon.log()
        assert "event=indexed path='" + str(root) + "/caf\\udce9.jpg'" in daemon.log()  # readable, exact
    finally:
        assert daemon.stop() == 0
    stored = {p for (p,) in raw_rows(daemon.index, "SELECT path FROM files WHERE state = 'ok'")}
    assert dropped in stored  # the file's bytes, exactly


async def test_a_path_no_file_name_can_hold_is_a_4xx(live, tmp_path):
    for path in (str(tmp_path / "photos") + "/\ud800", "/photos/\udce9\ud800"):
        response = await live.post("/api/jobs", {"path": path})
        assert 400 <= response.status < 500, (path, response.status, await response.text())


async def test_a_bulk_rule_trashes_and_its_batch_undo_restores_the_exact_name(live, tmp_path):
    folder = tmp_path / "photos" / "bulk"
    folder.mkdir(parents=True)
    plain = os.fsencode(folder / "a.jpg")
    odd = os.fsencode(folder) + b"/" + LATIN1_NAME
    for path in (plain, odd):  # an exact pair: the rule keeps one and trashes the other
        with open(path, "wb") as out:
            out.write(photo_bytes(8))
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    assert (await live.wait_job(job["id"]))["state"] == "done"
    rule = {"dry_run": True, "rule": {"kinds": ["exact"]}}
    preview = await live.json("POST", "/api/decisions/bulk", rule, status=201)
    assert preview["files"] == 1, preview
    await live.json("POST", "/api/decisions/bulk", {"dry_run": False, "preview_id": preview["id"]}, 202)
    batch = await wait_batch(live, preview["id"], ("applied",))
    assert [os.path.exists(p) for p in (plain, odd)].count(False) == 1, batch
    await live.json("POST", f"/api/undo/batch/{preview['id']}", None, 202)
    await wait_batch(live, preview["id"], ("undone",))
    for path in (plain, odd):
        with open(path, "rb") as back:
            assert back.read() == photo_bytes(8)
