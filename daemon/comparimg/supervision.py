"""Supervision of the daemon's long-lived tasks: none may die quietly while the status says "watching".

A supervised task that raises is logged with its traceback, recorded as a `TaskFailure` (the service then
reports the state `degraded` with the reason) and, where running it again can help, started again after a
pause that doubles up to a ceiling. A loop says it is healthy again after a unit of work that succeeded; a
task that ends normally is healthy. A task that keeps failing is *stuck*: the service then stops feeding
the systemd watchdog, so systemd restarts it.

Sleeping is injected so tests run the back-off without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("comparimg.service")

FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 60.0
STUCK_AFTER_FAILURES = 5


@dataclass
class TaskFailure:
    """The last failure of one supervised task: why, since when (wall clock), how many times in a row."""

    task: str
    reason: str
    since: float
    failures: int = 1

    def as_dict(self) -> dict[str, object]:
        """Return the failure as `GET /api/status` shows it."""
        return {"task": self.task, "reason": self.reason, "since": self.since, "failures": self.failures}


class Supervisor:
    """Runs named tasks on the running loop and keeps their failures."""

    def __init__(
        self,
        on_change: Callable[[], None],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ):
        """Given what to call when the set of failing tasks changes (the service recomputes its state), how
        to sleep and a wall clock, return a supervisor with no task."""
        self._on_change = on_change
        self._sleep = sleep
        self._wall_clock = wall_clock
        self.failures: dict[str, TaskFailure] = {}
        self.tasks: set[asyncio.Task] = set()

    def start(self, name: str, work: Callable[[], Awaitable[object]], *, retry: bool = True) -> asyncio.Task:
        """Given a name and a function returning the coroutine to run, run it under supervision.

        With `retry`, a failure starts it again after a growing pause until it ends normally; without, a
        failure is only recorded (until the same name runs again and succeeds).
        """
        task = asyncio.ensure_future(self._supervise(name, work, retry))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def healthy(self, name: str) -> None:
        """Given a task's name, forget its failure: it just did a unit of work that succeeded."""
        if self.failures.pop(name, None) is not None:
            log.info("event=task_recovered task=%s", name)
            self._on_change()

    def stuck(self) -> TaskFailure | None:
        """Return a failure that repeated STUCK_AFTER_FAILURES times in a row, or None."""
        return next((f for f in self.failures.values() if f.failures >= STUCK_AFTER_FAILURES), None)

    def problems(self) -> list[dict[str, object]]:
        """Return the current failures, oldest first, as the status shows them."""
        return [f.as_dict() for f in sorted(self.failures.values(), key=lambda f: f.since)]

    async def cancel_all(self) -> None:
        """Cancel every supervised task and wait for them to end."""
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _supervise(self, name: str, work: Callable[[], Awaitable[object]], retry: bool) -> None:
        pause = FIRST_PAUSE_SECONDS
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a loop boundary: every failure is recorded, none kills the daemon
                self._record(name, error)
                if not retry:
                    return
                await self._sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
            else:
                self.healthy(name)
                return

    def _record(self, name: str, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        previous = self.failures.get(name)
        failures = previous.failures + 1 if previous else 1
        since = previous.since if previous else self._wall_clock()
        self.failures[name] = TaskFailure(name, reason, since, failures)
        log.error("event=task_failed task=%s failures=%d error=%r", name, failures, reason, exc_info=error)
        self._on_change()
