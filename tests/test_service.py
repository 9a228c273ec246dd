"""The service's own pieces: settings for `run`, log lines, root presence, and the service in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest

from comparimg.config import load_settings
from comparimg.logs import LineFormatter
from comparimg.model import ConfigError
from comparimg.notify import Notifier
from comparimg.pipeline import ScannerPipeline, extensions_of, pipeline_changes
from comparimg.service import (
    RootState,
    Service,
    config_to_read,
    default_config_file,
    root_is_present,
    settings_for_run,
    snapshot_of,
)
from comparimg.service.roots import Roots
from comparimg.stability import StabilityTracker
from comparimg.watcher import HintKind


def test_run_without_configuration_uses_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    settings = settings_for_run(None)
    assert settings.root_paths() == (tmp_path / "Pictures",)
    assert settings.index_path == tmp_path / ".local/state/comparimg/index.sqlite3"


def test_command_line_overrides_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("roots: [/srv/a]\nwatch:\n  settle_seconds: 3\n")
    settings = settings_for_run(str(config), ["/x", "y"], "idx.db", "/e.json", "0.0.0.0:9000", "~/tok")
    assert settings.root_paths() == (Path("/x"), Path(os.path.abspath("y")))
    assert settings.index_path == Path(os.path.abspath("idx.db"))
    assert settings.export_path == Path("/e.json")
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)
    assert settings.http.token_file == Path(os.path.expanduser("~/tok"))
    assert settings.watch.settle_seconds == 3
    assert settings.source == str(config)


def test_a_bad_listen_override_names_the_command_line():
    with pytest.raises(ConfigError) as caught:
        settings_for_run(None, listen="nowhere")
    assert "command line" in str(caught.value) and "nowhere" in str(caught.value)


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("comparimg.service", logging.INFO, __file__, 1, message, (), None)


def test_text_log_line_is_one_line_of_key_values():
    line = LineFormatter(as_json=False).format(record("event=indexed path='/a\nb.jpg'"))
    assert "\n" not in line
    assert line.split(" ", 3)[1:3] == ["info", "comparimg.service"]


def test_json_log_line_parses():
    line = LineFormatter(as_json=True).format(record("event=ready roots=1"))
    assert json.loads(line)["message"] == "event=ready roots=1"


def test_root_presence_tracks_disappearance_and_unmounts(tmp_path):
    state = RootState(str(tmp_path / "r"))
    assert not root_is_present(state)
    (tmp_path / "r").mkdir()
    assert root_is_present(state)
    state.was_mount = True  # it was a mount point; an empty folder left behind is not the disk
    assert not root_is_present(state)


def test_snapshot_of_regular_files_only(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    os.symlink(tmp_path / "a", tmp_path / "link")
    assert snapshot_of(str(tmp_path / "a"))[0] == 3
    assert snapshot_of(str(tmp_path / "link")) is None
    assert snapshot_of(str(tmp_path)) is None
    assert snapshot_of(str(tmp_path / "missing")) is None


def test_extensions_come_from_include_globs():
    assert extensions_of(("*.JPG", "*.png")) == frozenset({".jpg", ".png"})
    assert ".jpg" in extensions_of(("IMG_*",))  # not an extension glob: the supported set


def test_pipeline_restarts_only_for_what_it_uses(tmp_path):
    base = load_settings(None)
    threshold = dataclasses.replace(base, matching=dataclasses.replace(base.matching, threshold=4))
    settle = dataclasses.replace(base, watch=dataclasses.replace(base.watch, settle_seconds=9))
    assert pipeline_changes(base, threshold)
    assert not pipeline_changes(base, settle)


async def test_service_in_process_indexes_reloads_and_stops(tmp_path, write_photo):
    root = tmp_path / "photos"
    write_photo(root / "a.jpg", "astronaut")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"roots: [{root}]\nindex: {tmp_path / 'i.db'}\nexport: {tmp_path / 'd.json'}\n"
        "watch:\n  settle_seconds: 0.2\n  rescan_interval: 0\nhashing:\n  workers: 1\n"
    )
    service = Service(
        load_settings(config),
        ScannerPipeline,
        reload_settings=lambda: load_settings(config),
        notifier=Notifier(None),
    )
    running = asyncio.ensure_future(service.run())
    try:
        await wait_until(lambda: service.state == "watching")
        write_photo(root / "copy.jpg", "astronaut")
        await wait_until(
            lambda: (tmp_path / "d.json").exists() and json.loads((tmp_path / "d.json").read_text())["groups"]
        )
        config.write_text(config.read_text() + "matching:\n  threshold: 6\n")
        assert await service.reload()
        assert service.settings.matching.threshold == 6
        config.write_text("roots: 5\n")
        assert not await service.reload()
        assert service.settings.matching.threshold == 6
        status = service.status()
        assert status["state"] in ("watching", "scanning")
        assert status["roots"] == [{"path": str(root), "state": "watching", "observer": "inotify"}]
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0


async def wait_until(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_without_config_a_reload_reads_the_file_a_patch_saved(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("XDG_STATE_HOME", "XDG_DATA_HOME", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    assert config_to_read(None) is None  # a first start: the built-in defaults
    saved = default_config_file()
    saved.parent.mkdir(parents=True)
    saved.write_text("matching:\n  threshold: 6\n")  # what PATCH /api/config saved meanwhile
    assert config_to_read(None) == str(saved)
    assert settings_for_run(config_to_read(None), watch=[str(tmp_path)]).matching.threshold == 6
    assert config_to_read("/etc/mine.yaml") == "/etc/mine.yaml"


def test_a_root_that_disappears_is_paused_and_resumed_when_back_without_sleeping(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    now = [100.0]
    tracker = StabilityTracker(5.0, lambda: now[0])
    changes = []
    roots = Roots(tracker, lambda: changes.append("state"))
    roots.start(dataclasses.replace(load_settings(None), roots=()), lambda hint: None)
    try:
        roots.states = {str(root): RootState(str(root))}
        assert roots.check(initial=True) == [str(root)] and roots.present(str(root))
        tracker.touch(str(root / "a.jpg"))
        root.rmdir()
        assert roots.check() == []
        assert not roots.present(str(root)) and roots.absent() == [str(root)]
        assert str(root / "a.jpg") not in tracker and changes == ["state"]  # pending files dropped, no sleep
        root.mkdir()
        assert roots.check() == [str(root)] and roots.present(str(root))
        assert roots.check() == []  # nothing new
    finally:
        roots.stop()


def test_every_kind_of_hint_has_its_handler():
    service = Service(load_settings(None), ScannerPipeline, notifier=Notifier(None))
    assert set(service.hints.handlers) == set(HintKind)


async def test_the_root_loop_checks_on_its_injected_sleep(tmp_path, write_photo):
    root = tmp_path / "photos"
    write_photo(root / "a.jpg", "astronaut")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"roots: [{root}]\nindex: {tmp_path / 'i.db'}\n"
        "watch:\n  settle_seconds: 0.2\n  rescan_interval: 0\nhashing:\n  workers: 1\n"
    )
    ticks: asyncio.Queue[None] = asyncio.Queue()

    async def one_tick(seconds: float) -> None:  # the root loop's sleep: the test says when it wakes
        await ticks.get()

    service = Service(load_settings(config), ScannerPipeline, notifier=Notifier(None), sleep=one_tick)
    running = asyncio.ensure_future(service.run())
    try:
        await wait_until(lambda: service.state == "watching")
        hidden = tmp_path / "hidden"
        root.rename(hidden)
        await asyncio.sleep(0.3)
        assert service.status()["roots"][0]["state"] == "watching"  # no check without a tick
        ticks.put_nowait(None)
        await wait_until(lambda: service.state == "paused")
        reconciles = service.stats.reconciles
        hidden.rename(root)
        ticks.put_nowait(None)
        await wait_until(lambda: service.state == "watching" and service.stats.reconciles > reconciles)
        assert service.status()["roots"][0]["state"] == "watching"
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0
