"""Watcher hints on the event loop: each kind of hint goes to its handler through a typed table."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from comparimg.service.ingest import snapshot_of
from comparimg.watcher import Hint, HintKind, log_watch_limit

if TYPE_CHECKING:
    from comparimg.service.daemon import Service

log = logging.getLogger("comparimg.service")


class HintRouter:
    """Routes each hint from the watcher to what it asks for (settle, move, delete, reconcile)."""

    def __init__(self, service: Service):
        self.service = service
        self.handlers: dict[HintKind, Callable[[Hint], None]] = {
            HintKind.CHANGED: self.changed,
            HintKind.MOVED: self.moved,
            HintKind.DELETED: self.deleted,
            HintKind.DIR_DELETED: self.dir_deleted,
            HintKind.OVERFLOW: self.overflow,
            HintKind.WATCH_LIMIT: self.watch_limit,
        }

    def route(self, hint: Hint) -> None:
        """Given a hint on the loop, hand it to its handler unless its root is paused or the daemon stops."""
        state = self.service.roots.get(hint.root)
        if state is None or not state.present or self.service.stopping.is_set():
            return
        self.handlers[hint.kind](hint)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        """Given a hint's one-shot work, run it; a failure is reported as the task "watch events"."""
        self.service.supervisor.start("watch events", lambda: coroutine, retry=False)

    def changed(self, hint: Hint) -> None:
        tracker, ingest = self.service.tracker, self.service.ingest
        snapshot = snapshot_of(hint.path)
        if snapshot is None:
            tracker.forget(hint.path)
            return
        tracker.touch(hint.path)  # no-op unless already pending
        if tracker.observe(hint.path, snapshot):  # only with settle_seconds = 0
            self._spawn(ingest.ready.put((hint.path, hint.root)))
        ingest.wake_settle.set()

    def moved(self, hint: Hint) -> None:
        if hint.path in self.service.tracker:
            self.service.tracker.rename(hint.path, hint.destination)
            return
        self._spawn(self.service.ingest.apply_move(hint.root, hint.path, hint.destination))

    def deleted(self, hint: Hint) -> None:
        self.service.tracker.forget(hint.path)
        self._spawn(self.service.ingest.apply_delete(hint.root, hint.path, directory=False))

    def dir_deleted(self, hint: Hint) -> None:
        self.service.tracker.forget_under(hint.path)
        self._spawn(self.service.ingest.apply_delete(hint.root, hint.path, directory=True))

    def overflow(self, hint: Hint) -> None:
        self.service.stats.overflows += 1
        log.warning("event=overflow root=%r action=reconcile", hint.root)
        self.service.ingest.reconcile_in_background([hint.root], "inotify overflow")

    def watch_limit(self, hint: Hint) -> None:
        log_watch_limit(hint.path)
        if self.service.root_watch.use_polling(hint.root):
            self.service.ingest.reconcile_in_background([hint.root], "watch limit")
