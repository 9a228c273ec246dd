"""Typed keys for what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from comparimg.config import Settings
from comparimg.index import Index
from comparimg.sorter import Sorter
from comparimg.web.events import EventHub
from comparimg.web.port import DaemonPort

SETTINGS = web.AppKey("settings", "SettingsHolder")
CONFIG_PATH = web.AppKey("config_path", Path)
DAEMON = web.AppKey("daemon", DaemonPort)
TOKEN = web.AppKey("token", str)
WRITER = web.AppKey("writer", Index)  # decisions and sorter journal, used only on DAEMON.write's thread
READERS = web.AppKey("readers", "ReaderPool")
SORTER = web.AppKey("sorter", Sorter)
EVENTS = web.AppKey("events", EventHub)
THUMBNAILER = web.AppKey("thumbnailer", "LazyWorkerPool")
METRICS = web.AppKey("metrics", "Metrics")
JOBS = web.AppKey("jobs", "JobRunner")


class SettingsHolder:
    """The settings in force; `PATCH /api/config` replaces `current`."""

    def __init__(self, settings: Settings):
        self.current = settings


def current_settings(app: web.Application) -> Settings:
    """Return the settings in force (they change when the configuration is patched)."""
    return app[SETTINGS].current
