"""Security of the HTTP API: token, DNS rebinding, CSRF, body type and size, paths, ids, token file mode."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
import yaml

from comparimg import config
from comparimg.config import load_settings
from comparimg.web import config_patch
from comparimg.web.security import allowed_host_names, ensure_token, host_name, same_origin
from web_support import settings_document, start_live, stop_live


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


@pytest.fixture
async def configured(tmp_path, aiohttp_client):
    """The live daemon started from a configuration file, which SIGHUP (`Service.reload`) re-reads and
    `PATCH /api/config` writes; returns (live, the file)."""
    config_file = tmp_path / "comparimg.yaml"
    config_file.write_text(yaml.safe_dump(settings_document(tmp_path)))
    settings = load_settings(config_file)
    handle, task = await start_live(
        tmp_path,
        aiohttp_client,
        settings=settings,
        config_path=config_file,
        reload_settings=lambda: load_settings(config_file),
    )
    yield handle, config_file
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


async def test_files_outside_the_roots_are_not_served(configured, write_photo):
    live, config_file = configured
    folder = live.tmp / "photos" / "set"
    first = write_photo(folder / "a.jpg", "astronaut", size=(128, 128))
    (folder / "b.jpg").write_bytes(first.read_bytes())
    job = await live.json("POST", "/api/jobs", {"path": str(folder)}, status=201)
    await live.wait_job(job["id"])
    member = (await live.json("GET", "/api/groups"))["groups"][0]["members"][0]
    (live.tmp / "elsewhere").mkdir()
    document = yaml.safe_load(config_file.read_text())
    config_file.write_text(yaml.safe_dump({**document, "roots": [str(live.tmp / "elsewhere")]}))
    assert await live.service.reload()  # the file and SIGHUP are the way to change the roots
    for path in (member["content_url"], member["thumbnail_url"]):
        assert (await live.get(path)).status == 403
    response = await live.post("/api/decisions", {"action": "trash", "file_id": member["file_id"]})
    assert response.status == 403


FILE_ONLY_PATCHES = [
    ({"roots": ["/"]}, "roots"),
    ({"export": "{victim}"}, "export"),
    ({"index": "{tmp}/other.sqlite3"}, "index"),
    ({"http": {"listen": "0.0.0.0:8765"}}, "http.listen"),
    ({"http": {"allowed_hosts": ["evil.example"]}}, "http.allowed_hosts"),
    ({"http": {"token_file": "{victim}"}}, "http.token_file"),
    ({"http": {"allowed_scan_roots": ["/"]}}, "http.allowed_scan_roots"),
    ({"http": {"max_body_bytes": 1024}}, "http.max_body_bytes"),
    ({"sorter": {"move_targets": {"out": "/tmp"}}}, "sorter.move_targets"),
    ({"sorter": {"apply": "on-decide", "trash": "{tmp}/elsewhere"}}, "sorter.trash"),
    ({"sorter": {"trash_layout": "freedesktop"}}, "sorter.trash_layout"),
]


async def test_a_patch_cannot_move_the_lines_the_file_draws(configured):
    live, config_file = configured
    victim = live.tmp / "victim.txt"
    victim.write_text("precious")
    saved, settings = config_file.read_bytes(), await live.json("GET", "/api/config")
    for body, key in FILE_ONLY_PATCHES:
        body = yaml.safe_load(
            yaml.safe_dump(body).replace("{victim}", str(victim)).replace("{tmp}", str(live.tmp))
        )
        response = await live.patch("/api/config", body)
        answer = await response.json()
        assert response.status == 403, (body, answer)
        assert answer["error"]["code"] == "file_only_setting"
        assert f"'{key}'" in answer["error"]["message"] and "configuration file" in answer["error"]["message"]
    assert config_file.read_bytes() == saved
    assert await live.json("GET", "/api/config") == settings
    assert victim.read_text() == "precious"
    for host in ("127.0.0.1", "localhost"):  # the API is still there for the names it answered
        response = await live.get("/api/status", headers={"Host": f"{host}:{live.client.port}"})
        assert response.status == 200


async def test_a_patch_changes_what_the_api_may_change_and_reports_unknown_keys(configured):
    live, config_file = configured
    changed = await live.json(
        "PATCH", "/api/config", {"sorter": {"apply": "on-decide"}, "matching": {"threshold": 4}}
    )
    assert changed["sorter"]["apply"] == "on-decide" and changed["matching"]["threshold"] == 4
    assert yaml.safe_load(config_file.read_text())["sorter"]["apply"] == "on-decide"
    for body in ({"colour": "blue"}, {"sorter": {"colour": 1}}, {"matching": {"threshold": "4"}}):
        response = await live.patch("/api/config", body)
        assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_config"


def test_no_setting_the_api_may_change_is_a_path():
    """A path set through the API could point outside what the file's owner allowed: every path setting
    of the schema (a new one too) must be file-only."""
    schema = config.config_json_schema("validation")  # the schema the settings are validated with
    path_settings = []
    for name, section in schema["properties"].items():
        section = schema["$defs"].get(section.get("$ref", "").rpartition("/")[2], section)
        for key, setting in section.get("properties", {}).items():
            if '"format": "path"' in json.dumps(setting):
                path_settings.append(f"{name}.{key}")
    assert {"sorter.trash", "sorter.move_targets", "http.token_file", "http.allowed_scan_roots"} <= set(
        path_settings
    )
    for key in [*path_settings, "roots", "index", "export", "http.listen", "http.allowed_hosts"]:
        assert not config_patch.api_settable(key), key


async def test_a_reload_that_changes_listen_does_not_lock_the_api_out(configured):
    live, config_file = configured
    document = yaml.safe_load(config_file.read_text())
    document["http"] = {**document["http"], "listen": "0.0.0.0:8765"}
    config_file.write_text(yaml.safe_dump(document))
    assert await live.service.reload()
    for host in ("127.0.0.1", "localhost"):
        response = await live.get("/api/status", headers={"Host": f"{host}:{live.client.port}"})
        assert response.status == 200, host


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

    names = allowed_host_names(HttpSettings(listen="0.0.0.0:8765", allowed_hosts=("photos.lan",)))
    assert "localhost" not in names and "photos.lan" in names


def test_token_is_created_once_with_mode_0600(tmp_path):
    path = tmp_path / "deep" / "token"
    token = ensure_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(path) == token
    path.chmod(0o644)
    assert ensure_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
