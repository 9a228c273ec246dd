"""Supervision: a long-lived task that raises is reported (state `degraded`, with the reason), retried with
back-off where that helps, and a task that keeps failing withholds the systemd watchdog. The service runs
in-process over the real pipeline (real index file, real workers, real inotify); faults are injected by a
pipeline that raises where told to."""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest

from comparimg.config import load_settings
from comparimg.notify import Notifier
from comparimg.pipeline import ScannerPipeline
from comparimg.service import Service
from comparimg.supervision import STUCK_AFTER_FAILURES, Supervisor


async def no_pause(_seconds: float) -> None:
    await asyncio.sleep(0)


async def test_a_failing_task_is_recorded_retried_and_cleared_once_it_succeeds():
    changes = []
    supervisor = Supervisor(lambda: changes.append(dict(supervisor.failures)), sleep=no_pause)
    attempts = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError(28, "No space left on device")

    await supervisor.start("ingest", flaky)
    assert len(attempts) == 3
    assert changes[0]["ingest"].failures == 1 and "No space left" in changes[0]["ingest"].reason
    assert changes[1]["ingest"].failures == 2
    assert changes[-1] == {} and supervisor.problems() == []


async def test_a_one_shot_failure_stays_until_the_same_task_succeeds():
    supervisor = Supervisor(lambda: None, sleep=no_pause)

    async def fails() -> None:
        raise UnicodeEncodeError("utf-8", "caf\udce9", 3, 4, "surrogates not allowed")

    async def works() -> None:
        return None

    await supervisor.start("reload", fails, retry=False)
    assert [p["task"] for p in supervisor.problems()] == ["reload"]
    assert "UnicodeEncodeError" in supervisor.problems()[0]["reason"]
    await supervisor.start("reload", works, retry=False)
    assert supervisor.problems() == []


async def test_a_task_failing_again_and_again_is_stuck():
    supervisor = Supervisor(lambda: None, sleep=no_pause)
    seen = []

    async def always_fails() -> None:
        seen.append(supervisor.stuck())
        raise RuntimeError("index unreadable")

    task = supervisor.start("ingest", always_fails)
    while len(seen) <= STUCK_AFTER_FAILURES:
        await asyncio.sleep(0)
    assert seen[STUCK_AFTER_FAILURES - 1] is None
    assert supervisor.stuck().task == "ingest"
    await supervisor.cancel_all()
    assert task.cancelled()


class FaultyPipeline(ScannerPipeline):
    """The real pipeline, except that the first `faults[method]` calls of a method raise."""

    faults: ClassVar[dict[str, int]] = {}

    def ingest(self, found):
        self._maybe_fail("ingest")
        return super().ingest(found)

    def reconcile(self, root):
        self._maybe_fail("reconcile")
        return super().reconcile(root)

    def _maybe_fail(self, method: str) -> None:
        if self.faults.get(method, 0) > 0:
            self.faults[method] -= 1
            raise RuntimeError(f"injected failure in {method}")


def service_for(tmp_path, faults: dict[str, int], extra: str = "") -> tuple[Service, object]:
    root = tmp_path / "photos"
    root.mkdir(exist_ok=True)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"roots: [{root}]\nindex: {tmp_path / 'i.db'}\nexport: {tmp_path / 'd.json'}\n"
        f"watch:\n  settle_seconds: 0.2\n  rescan_interval: 0\nhashing:\n  workers: 1\n{extra}"
    )
    FaultyPipeline.faults = dict(faults)
    settings = load_settings(config)
    service = Service(
        settings, FaultyPipeline, reload_settings=lambda: load_settings(config), notifier=Notifier(None)
    )
    service.supervisor._sleep = no_pause  # back-off without waiting
    return service, root


async def wait_until(predicate, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_failing_ingest_makes_the_daemon_degraded_then_it_recovers(tmp_path, write_photo):
    service, root = service_for(tmp_path, {"ingest": 1})
    states = []
    running = asyncio.ensure_future(service.run())
    try:
        await wait_until(lambda: service.state == "watching")
        write_photo(root / "a.jpg", "astronaut")
        await wait_until(lambda: states.append(service.status()) or service.state == "degraded")
        problem = service.status()["problems"][0]
        assert problem["task"] == "ingest" and "injected failure in ingest" in problem["reason"]
        # The failed batch is reconciled (a.jpg indexed after all); the next batch goes through: healthy.
        await wait_until(lambda: service.stats.reconciles >= 2)
        write_photo(root / "b.jpg", "astronaut")
        await wait_until(lambda: service.state == "watching" and service.stats.hashed >= 1)
        assert service.status()["problems"] == []
        export = tmp_path / "d.json"
        await wait_until(lambda: export.exists() and len(json.loads(export.read_text())["groups"]) == 1)
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0


async def test_a_failing_start_up_scan_is_reported_and_retried(tmp_path, write_photo):
    write_photo(tmp_path / "photos" / "a.jpg", "astronaut")
    write_photo(tmp_path / "photos" / "copy.jpg", "astronaut")
    service, _ = service_for(tmp_path, {"reconcile": 2})
    retry = asyncio.Event()

    async def pause_until_told(_seconds: float) -> None:
        await retry.wait()
        retry.clear()

    service.supervisor._sleep = pause_until_told
    running = asyncio.ensure_future(service.run())
    try:
        for failures in (1, 2):
            await wait_until(lambda: service.status()["problems"])
            problem = service.status()["problems"][0]
            assert service.state == "degraded" and problem["failures"] == failures
            assert problem["task"] == "reconcile (start-up)" and "injected failure" in problem["reason"]
            retry.set()
            await wait_until(lambda: not retry.is_set())
        await wait_until(lambda: service.state == "watching")
        export = tmp_path / "d.json"
        await wait_until(lambda: export.exists() and json.loads(export.read_text())["groups"])
        assert service.stats.reconciles == 1
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0


@pytest.mark.parametrize("change", ["matching:\n  threshold: 6\n", "watch:\n  settle_seconds: 0.3\n"])
async def test_the_state_goes_back_to_watching_after_a_reload(tmp_path, change):
    service, _ = service_for(tmp_path, {})
    running = asyncio.ensure_future(service.run())
    try:
        await wait_until(lambda: service.state == "watching")
        config = tmp_path / "c.yaml"
        text = config.read_text().replace("watch:\n  settle_seconds: 0.2\n  rescan_interval: 0\n", "")
        config.write_text(text + "watch:\n  rescan_interval: 0\n" + change)
        reconciles = service.stats.reconciles
        assert await service.reload()
        await wait_until(lambda: service.stats.reconciles > reconciles)
        await wait_until(lambda: service.state == "watching", timeout=5)
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0


async def test_a_root_missing_at_start_up_is_paused_not_scanning(tmp_path):
    service, root = service_for(tmp_path, {})
    root.rmdir()
    running = asyncio.ensure_future(service.run())
    try:
        await wait_until(lambda: service.stats.reconciles == 0 and service.state == "paused", timeout=10)
        root.mkdir()  # the disk comes back: reconciled, then watching
        await wait_until(lambda: service.state == "watching" and service.stats.reconciles == 1)
    finally:
        service.stop()
        assert await asyncio.wait_for(running, 15) == 0
