"""Typed keys for what the application holds (aiohttp's AppKey)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from aiohttp import web

from comparimg.config import Settings
from comparimg.index import Index
from comparimg.sorter import Sorter
from comparimg.web.events import EventHub
from comparimg.web.port import DaemonPort

SETTINGS = web.AppKey("settings", "SettingsHolder")
CONFIG_PATH = web.AppKey("config_path", Path)
CONFIG_LOCK = web.AppKey("config_lock", asyncio.Lock)  # one PATCH at a time: read, merge, save, apply
DAEMON = web.AppKey("daemon", DaemonPort)
TOKEN = web.AppKey("token", str)
WRITER = web.AppKey("writer", Index)  # decisions and sorter journal, used only on DAEMON.write's thread
READERS = web.AppKey("readers", "ReaderPool")
SORTER = web.AppKey("sorter", Sorter)
EVENTS = web.AppKey("events", EventHub)
THUMBNAILER = web.AppKey("thumbnailer", "LazyWorkerPool")
METRICS = web.AppKey("metrics", "Metrics")
JOBS = web.AppKey("jobs", "JobRunner")
BATCHES = web.AppKey("batches", "BatchRunner")  # decisions by rule (web.bulk)
LEARNING = web.AppKey("learning", "Learning")  # retrain / restore the verifier (web.learning)


class SettingsHolder:
    """The settings the web room acts on: the daemon's (so a SIGHUP reload or a `PATCH /api/config` reach
    the roots, targets and trash the API uses), except `http` and `index`, which stay those the app started
    with until a restart: the server listens where it was started, and its Host check must match that, or
    a reload that changed `listen` would lock the API out."""

    def __init__(self, settings: Settings, daemon: DaemonPort):
        self.started = settings
        self.daemon = daemon
        self._seen: Settings | None = None
        self._current = settings

    @property
    def current(self) -> Settings:
        """Return the daemon's settings in force, with `http` and `index` as the app started."""
        live = self.daemon.settings
        if live is not self._seen:
            self._seen = live
            pinned = {"http": self.started.http, "index_path": self.started.index_path}
            self._current = dataclasses.replace(live, **pinned)
        return self._current


def current_settings(app: web.Application) -> Settings:
    """Return the settings in force (they change when the configuration is patched)."""
    return app[SETTINGS].current


def current_sorter(app: web.Application) -> Sorter:
    """Return the sorter, its roots, trash and targets brought in line with the settings in force (they
    change with a reload or a patch; the sorter reads them when it plans each action)."""
    sorter, settings = app[SORTER], current_settings(app)
    if sorter.settings is not settings.sorter:
        sorter.settings = settings.sorter
    roots = tuple(settings.root_paths())
    if tuple(sorter.roots) != roots:
        sorter.roots = roots
    return sorter
