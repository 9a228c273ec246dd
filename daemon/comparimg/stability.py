"""Stability tracker: decide when a file has stopped changing and may be hashed.

Watch events are hints. A file being copied, downloaded or written slowly produces a stream of events and
a growing size; hashing it half-way would index a half file. The tracker keeps, for every pending path, the
last (size, mtime_ns) seen and the time it was first seen with that value. A path is ready once the same
snapshot has been seen again at least `settle_seconds` later. Time comes from an injected clock, so tests
advance it instead of sleeping.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

Snapshot = tuple[int, int]  # (size, mtime_ns)


@dataclass(slots=True)
class _Pending:
    snapshot: Snapshot
    since: float


class StabilityTracker:
    """Pending paths and the moment each last changed."""

    def __init__(self, settle_seconds: float, clock: Callable[[], float]):
        """Given the settle window in seconds and a clock returning seconds, return an empty tracker."""
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending

    def observe(self, path: str, snapshot: Snapshot) -> bool:
        """Given a path and its current (size, mtime_ns), return True if it is ready to hash.

        A ready path leaves the tracker. A new or changed snapshot (re)starts the settle window.
        """
        now = self._clock()
        pending = self._pending.get(path)
        if pending is None or pending.snapshot != snapshot:
            self._arm(path, snapshot, now)
            return False
        if now - pending.since >= self.settle_seconds:
            del self._pending[path]
            return True
        return False

    def touch(self, path: str) -> None:
        """Given a path an event just named, restart its settle window (it is being written to)."""
        pending = self._pending.get(path)
        if pending is not None:
            self._arm(path, pending.snapshot, self._clock())

    def forget(self, path: str) -> None:
        """Given a path that vanished or was excluded, stop tracking it."""
        self._pending.pop(path, None)

    def forget_under(self, directory: str) -> None:
        """Given a directory that vanished, stop tracking every path below it."""
        prefix = directory.rstrip("/") + "/"
        for path in [p for p in self._pending if p.startswith(prefix)]:
            del self._pending[path]

    def rename(self, source: str, destination: str) -> None:
        """Given a pending path that moved, track it under its new name with the same window."""
        pending = self._pending.pop(source, None)
        if pending is not None:
            self._pending[destination] = pending
            heapq.heappush(self._deadlines, (pending.since + self.settle_seconds, destination))

    def due(self) -> list[str]:
        """Return the pending paths whose settle window has run out (to be stat'ed and observed again)."""
        now = self._clock()
        paths: list[str] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, path = heapq.heappop(self._deadlines)
            if self._is_current(deadline, path):
                paths.append(path)
        return paths

    def next_deadline(self) -> float | None:
        """Return the clock time at which the next path becomes due, or None when nothing is pending."""
        while self._deadlines:
            deadline, path = self._deadlines[0]
            if self._is_current(deadline, path):
                return deadline
            heapq.heappop(self._deadlines)
        return None

    def _is_current(self, deadline: float, path: str) -> bool:
        # A heap entry is stale once its path left the tracker or was re-armed with a later window.
        pending = self._pending.get(path)
        return pending is not None and pending.since + self.settle_seconds == deadline

    def _arm(self, path: str, snapshot: Snapshot, now: float) -> None:
        self._pending[path] = _Pending(snapshot, now)
        heapq.heappush(self._deadlines, (now + self.settle_seconds, path))
