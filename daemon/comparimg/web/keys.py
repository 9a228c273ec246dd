"""Typed keys for what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from comparimg.config import Settings
from comparimg.web.events import EventHub
from comparimg.web.port import Core

CORE = web.AppKey("core", Core)  # the one door to the daemon: settings, reads, writes, decisions, jobs
CONFIG_PATH = web.AppKey("config_path", Path)
CONFIG_LOCK = web.AppKey("config_lock", asyncio.Lock)  # one PATCH at a time: read, merge, save, apply
TOKEN = web.AppKey("token", str)
EVENTS = web.AppKey("events", EventHub)
THUMBNAILER = web.AppKey("thumbnailer", "LazyWorkerPool")
METRICS = web.AppKey("metrics", "Metrics")
BATCHES = web.AppKey("batches", "BatchRunner")  # decisions by rule (web.bulk)


def current_settings(app: web.Application) -> Settings:
    """Return the settings in force, read through the door (they change with a reload or a patch; `http`
    and `index` stay as the daemon started until a restart)."""
    return app[CORE].settings
