"""Shared set-up for the web tests: a real daemon (`service.Service` with the real scanner pipeline) on the
test's event loop, and the real aiohttp app on loopback in front of it."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from comparimg.config import parse_settings
from comparimg.notify import Notifier
from comparimg.pipeline import ScannerPipeline
from comparimg.service import Service
from comparimg.web import create_app


def make_settings(tmp: Path, **overrides: Any):
    """Return settings for a daemon living entirely in `tmp` (root `tmp/photos`, trash, move target)."""
    return parse_settings(settings_document(tmp, **overrides), "test", tmp)


def settings_document(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """Return the YAML-shaped settings of `make_settings` (creating the root folder)."""
    (tmp / "photos").mkdir(exist_ok=True)
    return {
        "roots": [str(tmp / "photos")],
        "index": str(tmp / "state" / "index.sqlite3"),
        "export": str(tmp / "state" / "duplicates.json"),
        "hashing": {"workers": 1, "timeout_seconds": 30},
        # The API tests exercise the daemon's mechanics, in mode `hash` as tests/daemon_harness.py does;
        # tests of the model stage pass `matching={"mode": "hash+model"}`.
        "matching": {"mode": "hash"},
        "watch": {"settle_seconds": 0.2, "rescan_interval": 0},
        "http": {"listen": "127.0.0.1:8765", "token_file": str(tmp / "state" / "token")},
        "sorter": {"trash": str(tmp / "trash"), "move_targets": {"best": str(tmp / "best")}},
        **overrides,
    }


@dataclasses.dataclass
class Live:
    """A running daemon and a client of its app."""

    client: Any
    service: Service
    settings: Any
    token: str
    tmp: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kwargs):
        return await self.client.get(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    async def post(self, path: str, body: Any = None, **kwargs):
        return await self.client.post(
            path, json=body, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs
        )

    async def delete(self, path: str, **kwargs):
        return await self.client.delete(path, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs)

    async def patch(self, path: str, body: Any = None, **kwargs):
        return await self.client.patch(
            path, json=body, headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs
        )

    async def json(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        call = {"GET": self.get, "POST": self.post, "DELETE": self.delete, "PATCH": self.patch}[method]
        response = await (call(path, body) if method in ("POST", "PATCH") else call(path))
        data = await response.json()
        assert response.status == status, (response.status, data)
        return data

    async def wait_job(self, job_id: int, timeout: float = 60) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.json("GET", f"/api/jobs/{job_id}")
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            assert asyncio.get_running_loop().time() < deadline, job
            await asyncio.sleep(0.05)


async def start_live(
    tmp: Path,
    aiohttp_client,
    *,
    settings: Any = None,
    config_path: Path | None = None,
    reload_settings: Any = None,
    **overrides: Any,
) -> tuple[Live, asyncio.Task]:
    """Start the daemon and its app (on `settings`, default `make_settings(tmp, **overrides)`; PATCH
    writing `config_path`, default `tmp/state/config.yaml`; SIGHUP calling `reload_settings`); return the
    handle and the daemon's task."""
    settings = settings or make_settings(tmp, **overrides)
    service = Service(settings, ScannerPipeline, notifier=Notifier(None), reload_settings=reload_settings)
    task = asyncio.ensure_future(service.run())
    while service.pipeline is None or service.state == "starting":
        assert not task.done(), task.exception()
        await asyncio.sleep(0.02)
    config_path = config_path or tmp / "state" / "config.yaml"
    client = await aiohttp_client(create_app(service.door, config_path))
    token = settings.http.token_file.read_text().strip()
    return Live(client, service, settings, token, tmp), task


async def stop_live(live: Live, task: asyncio.Task) -> None:
    """Close the app, let the daemon finish hashing what the watcher saw, then stop it.

    (Waiting for idle works around a hang seen in `Service` when it is stopped while hashing.)
    """
    await live.client.close()
    for _ in range(200):
        status = live.service.status()
        if not status["queue_depth"] and not status["pending"]:
            break
        await asyncio.sleep(0.05)
    live.service.stop()
    await asyncio.wait_for(task, 30)
