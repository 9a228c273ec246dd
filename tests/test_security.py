"""Security of the HTTP API: token, DNS rebinding, CSRF, body type and size, paths, ids, token file mode."""

from __future__ import annotations

import io
import os
import stat

import pytest

from comparimg.web.security import allowed_host_names, ensure_token, host_name, same_origin
from web_support import start_live, stop_live


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


@pytest.fixture
async def indexed(live, write_photo):
    """The live daemon with two exact copies indexed by a job; returns (live, group)."""
    folder = live.tmp / "photos" / "set"
    first = write_photo(folder / "a.jpg", "astronaut", size=(128, 128))
    (folder / "b.jpg").write_bytes(first.read_bytes())
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    await live.wait_job(job["id"])
    group = (await live.json("GET", "/api/groups"))["groups"][0]
    return live, group


def snapshot(folder) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_token_file_is_private(live):
    mode = stat.S_IMODE(os.stat(live.settings.http.token_file).st_mode)
    assert mode == 0o600
    assert len(live.token) >= 32


async def test_no_token_and_wrong_token_are_401(live):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {live.token}"}):
        for path in ("/api/status", "/api/groups", "/api/openapi.json", "/metrics", "/api/events"):
            response = await live.client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert (await response.json())["error"]["code"] == "unauthorized"
    response = await live.client.post("/api/decisions/apply", json={})
    assert response.status == 401


async def test_login_link_sets_a_cookie_and_drops_the_token(live):
    bad = await live.client.get("/login?token=nope", allow_redirects=False)
    assert bad.status == 401
    response = await live.client.get(f"/login?token={live.token}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status = await live.client.get("/api/status")  # the client keeps the cookie
    assert status.status == 200
    page = await live.client.get("/")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]


async def test_foreign_host_is_403(live):
    for host in ("evil.example", f"evil.example:{live.client.port}", "127.0.0.1.evil.example"):
        response = await live.get("/api/status", headers={"Host": host})
        assert response.status == 403, host
        assert (await response.json())["error"]["code"] == "bad_host"
    page = await live.client.get("/", headers={"Host": "evil.example"})
    assert page.status == 403
    ok = await live.get("/api/status", headers={"Host": f"localhost:{live.client.port}"})
    assert ok.status == 200


async def test_foreign_origin_on_a_mutating_request_is_403(live):
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{live.client.port + 1}"):
        response = await live.post("/api/decisions/apply", {}, headers={"Origin": origin})
        assert response.status == 403, origin
        assert (await response.json())["error"]["code"] == "bad_origin"
    same = await live.post(
        "/api/decisions/apply", {}, headers={"Origin": f"http://127.0.0.1:{live.client.port}"}
    )
    assert same.status == 200
    cross_site = await live.post("/api/decisions/apply", {}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status == 403


async def test_only_json_bodies(live):
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ):
        response = await live.client.post(
            "/api/decisions",
            data=b'{"action": "keep", "file_id": 1}',
            headers={**live.auth, "Content-Type": content_type},
        )
        assert response.status == 415, content_type
        assert (await response.json())["error"]["code"] == "unsupported_media_type"


async def test_bodies_over_the_limit_are_413(live):
    big = b'{"ids": [' + b"1," * 700_000 + b"1]}"
    response = await live.client.post(
        "/api/decisions/apply",
        data=io.BytesIO(big),
        headers={**live.auth, "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"


async def test_no_cors_headers(live):
    response = await live.client.options(
        "/api/status", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    response = await live.get("/api/status", headers={"Origin": "https://evil.example"})
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


async def test_jobs_only_under_allowed_scan_roots(live, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (live.tmp / "photos" / "escape").symlink_to(outside)
    for path in (
        str(outside),
        str(live.tmp / "photos" / ".." / "outside"),
        str(live.tmp / "photos" / "escape"),
        "/",
        "/etc",
    ):
        response = await live.post("/api/jobs", {"path": path})
        assert response.status == 403, path
    for body in (
        {"path": "relative/dir"},
        {"path": 5},
        {"path": str(live.tmp / "photos"), "threshold": 99},
        {"path": str(live.tmp / "photos"), "recursive": "yes"},
        {"path": str(live.tmp / "photos" / "none")},
        {"path": str(live.tmp / "photos"), "extra": 1},
        [],
        "x",
    ):
        response = await live.post("/api/jobs", body)
        assert response.status == 400, body


async def test_bad_decisions_move_nothing(indexed, tmp_path):
    live, group = indexed
    before = snapshot(live.tmp / "photos")
    file_id = group["members"][0]["file_id"]
    cases = [
        ({"action": "trash", "file_id": 999_999}, 404),
        ({"action": "delete", "file_id": file_id}, 400),
        ({"action": "trash", "file_id": "1"}, 400),
        ({"action": "trash", "file_id": True}, 400),
        ({"action": "trash"}, 400),
        ({"action": "move", "file_id": file_id, "target": "../../etc"}, 403),
        ({"action": "move", "file_id": file_id, "target": "/tmp"}, 403),
        ({"action": "trash", "file_id": file_id, "path": "/etc/passwd"}, 400),
        ({"action": "not_duplicates", "file_ids": [file_id]}, 400),
        ({"action": "not_duplicates", "group_id": 999_999}, 404),
    ]
    for body, status in cases:
        response = await live.post("/api/decisions", body)
        assert response.status == status, (body, await response.text())
    assert (await live.json("POST", "/api/decisions/apply", {}))["applied"] == 0
    assert snapshot(live.tmp / "photos") == before
    assert not (live.tmp / "trash").exists() or not any((live.tmp / "trash").rglob("*.jpg"))


async def test_a_file_swapped_for_a_symlink_is_not_moved(indexed, tmp_path):
    live, group = indexed
    member = group["members"][-1]
    await live.json("POST", "/api/decisions", {"action": "trash", "file_id": member["file_id"]}, status=201)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    os.unlink(member["path"])
    os.symlink(secret, member["path"])
    result = await live.json("POST", "/api/decisions/apply", {})
    assert result["applied"] == 0
    assert secret.read_bytes() == b"not yours"
    assert os.path.islink(member["path"])


async def test_files_outside_the_roots_are_not_served(indexed):
    live, group = indexed
    await live.json("PATCH", "/api/config", {"roots": [str(live.tmp / "elsewhere")]})
    member = group["members"][0]
    for path in (member["content_url"], member["thumbnail_url"]):
        assert (await live.get(path)).status == 403
    response = await live.post("/api/decisions", {"action": "trash", "file_id": member["file_id"]})
    assert response.status == 403


async def test_junk_ids_in_urls_are_404(live):
    for path in (
        "/api/groups/abc",
        "/api/groups/-1",
        "/api/groups/99999999999999999999999",
        "/api/jobs/1.5",
        "/api/files/..%2F..%2Fetc%2Fpasswd/content",
    ):
        assert (await live.get(path)).status == 404, path


def test_pure_host_and_origin_rules():
    assert host_name("127.0.0.1:8765") == "127.0.0.1"
    assert host_name("[::1]:80") == "::1"
    assert host_name("EVIL.example") == "evil.example"
    assert same_origin("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not same_origin("http://127.0.0.1:8766", "127.0.0.1:8765")
    assert not same_origin("null", "127.0.0.1:8765")


def test_allowed_hosts_of_a_public_bind_are_only_the_configured_names():
    from comparimg.config import HttpSettings

    names = allowed_host_names(HttpSettings(host="0.0.0.0", allowed_hosts=("photos.lan",)))
    assert "localhost" not in names and "photos.lan" in names


def test_token_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "deep" / "token"
    token = ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == token
    path.chmod(0o644)
    assert ensure_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
