"""`comparimg run`: the settings it runs with (file, then command-line overrides), and the daemon's exit
statuses."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comparimg.config import EXIT_CONFIG, Settings, apply_patch, load_settings, saved_config_file
from comparimg.index import IndexDamaged, IndexInUse
from comparimg.logs import configure_logging
from comparimg.model import ComparImgError, ConfigError
from comparimg.pipeline import ScannerPipeline
from comparimg.service.daemon import Service
from comparimg.service.interfaces import Companion
from comparimg.service.roots import absolute

log = logging.getLogger("comparimg.service")

EXIT_START_FAILED = 1
EXIT_INDEX_DAMAGED = 65  # EX_DATAERR: the index file is not a sound ComparImg index (docs/recovery.md)
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: another daemon holds the index's lock


def default_config_file() -> Path:
    """Return where `comparimg run` without --config keeps its settings (`PATCH /api/config` writes there)."""
    return saved_config_file()


def config_to_read(config: str | None) -> str | None:
    """Given `run`'s --config (None without it), return the file to read now: without --config, the file
    `PATCH /api/config` saves, once it exists (so a SIGHUP after a PATCH keeps what the PATCH saved)."""
    if config is not None:
        return config
    saved = default_config_file()
    return str(saved) if saved.exists() else None


def format_settings_error(error: ConfigError) -> str:
    """Given a configuration error, return the message the CLI prints: one line per problem."""
    return "\n".join(f"comparimg: bad configuration: {problem.line}" for problem in error.problems)


def settings_for_run(
    config: str | None,
    watch: list[str] | None = None,
    index: str | None = None,
    export: str | None = None,
    listen: str | None = None,
    token_file: str | None = None,
) -> Settings:
    """Given `comparimg run`'s options, return the settings: the file (or built-in defaults) with the
    command-line overrides applied. Raise ConfigError naming the file or "command line"."""
    settings = load_settings(config)
    patch: dict[str, Any] = {}
    if watch:
        patch["roots"] = [absolute(p) for p in watch]
    if index:
        patch["index"] = absolute(index)
    if export:
        patch["export"] = absolute(export)
    http = {"listen": listen} if listen else {}
    if token_file:
        http["token_file"] = absolute(token_file)
    if http:
        patch["http"] = http
    if not patch:
        return settings
    return dataclasses.replace(apply_patch(settings, patch, source="command line"), source=settings.source)


async def run_service(
    settings: Settings, reload_settings: Callable[[], Settings] | None, companion: Companion | None = None
) -> int:
    """Given settings, how to re-read them and an optional companion (the web app), run the daemon."""
    service = Service(settings, ScannerPipeline, reload_settings=reload_settings, companion=companion)
    return await service.run()


def run_command(
    config: str | None,
    watch: list[str] | None = None,
    index: str | None = None,
    export: str | None = None,
    listen: str | None = None,
    companion: Companion | None = None,
    token_file: str | None = None,
) -> int:
    """Given `comparimg run`'s options, run the daemon until SIGTERM; return the exit status
    (78 for a bad configuration, naming the file, key path and value)."""

    def load() -> Settings:
        return settings_for_run(config_to_read(config), watch, index, export, listen, token_file)

    try:
        settings = load()
    except ConfigError as error:
        print(format_settings_error(error), file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.logging.format, settings.logging.level)
    try:
        return asyncio.run(run_service(settings, load, companion))
    except IndexInUse as error:
        return _refuse_start(error, EXIT_ALREADY_RUNNING)
    except IndexDamaged as error:
        return _refuse_start(error, EXIT_INDEX_DAMAGED)
    except (OSError, ComparImgError) as error:  # the index, the workers or the socket could not be set up
        log.error("event=start_failed error=%r", str(error))
        return EXIT_START_FAILED


def _refuse_start(error: ComparImgError, status: int) -> int:
    """Given why the daemon may not start on its index, say so on stderr and return the exit status."""
    log.error("event=start_refused status=%d error=%r", status, str(error))
    print(f"comparimg: {error}", file=sys.stderr, flush=True)
    return status
