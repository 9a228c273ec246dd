"""Root supervision: which configured roots are there, watched, or paused because they disappeared.

A root that disappears (deleted, unmounted, a mount point left empty) is paused: its watch is dropped, its
pending files are forgotten and none of its indexed files is marked deleted. When it comes back it is
watched again and reconciled. Checks run when `check` is called: the service's root loop calls it every
ROOT_CHECK_SECONDS through its injected `sleep`; tests call it directly, or step that sleep.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from comparimg.config import Settings
from comparimg.stability import StabilityTracker
from comparimg.watcher import PathFilter, Watcher

log = logging.getLogger("comparimg.service")

ROOT_CHECK_SECONDS = 1.0


@dataclass
class RootState:
    """What the service knows about one configured root."""

    path: str
    present: bool = False
    was_mount: bool = False
    observer: str = ""


def root_is_present(state: RootState) -> bool:
    """Given a root's state, return whether it is there now (a directory, and still a mount if it was one)."""
    if not os.path.isdir(state.path):
        return False
    return os.path.ismount(state.path) or not state.was_mount


def absolute(path: str) -> str:
    """Given a path (perhaps with ~), return it absolute."""
    return os.path.abspath(os.path.expanduser(path))


def root_paths(settings: Settings) -> list[str]:
    """Given settings, return the configured roots as absolute path strings."""
    return [absolute(str(r)) for r in settings.root_paths()]


class Roots:
    """The configured roots, their watcher, and the checks that pause and resume them."""

    def __init__(self, tracker: StabilityTracker, on_change: Callable[[], None]):
        self.tracker = tracker
        self.on_change = on_change  # the service's state may have changed
        self.states: dict[str, RootState] = {}
        self.watcher: Watcher | None = None

    def start(self, settings: Settings, sink: Callable) -> None:
        """Given settings and where the watcher's hints go, start watching every present root."""
        watch = settings.watch
        self.watcher = Watcher(
            sink,
            PathFilter(include=tuple(watch.include), exclude=tuple(watch.exclude)),
            observer=watch.observer,
            polling_interval=watch.polling_interval,
        )
        self.watcher.start()
        self.states = {p: RootState(p) for p in root_paths(settings)}
        self.check(initial=True)

    def stop(self) -> None:
        """Stop the watcher (blocking: call it off the loop)."""
        if self.watcher is not None:
            self.watcher.stop()

    def present(self, root: str) -> bool:
        """Given a root, return whether it is configured, not paused and there right now."""
        state = self.states.get(root)
        return state is not None and state.present and root_is_present(state)

    def absent(self) -> list[str]:
        """Return the paused roots."""
        return [r.path for r in self.states.values() if not r.present]

    def check(self, initial: bool = False) -> list[str]:
        """Pause roots that vanished, resume those back; return the roots that came back."""
        back = []
        for state in self.states.values():
            present = root_is_present(state)
            if present and not state.present:
                self._resume(state, initial)
                back.append(state.path)
            elif state.present and not present:
                self._pause(state)
            elif initial and not present:
                log.warning("event=root_paused root=%r reason=%r", state.path, "missing at start-up")
        return back

    def use_polling(self, root: str) -> bool:
        """Given a root whose watches ran out, watch it by polling; return False if it already was."""
        assert self.watcher is not None
        if self.watcher.kind_of(root) == "polling":
            return False
        self.watcher.use_polling(root)
        self.states[root].observer = "polling"
        return True

    def _resume(self, state: RootState, initial: bool) -> None:
        assert self.watcher is not None
        state.was_mount = state.was_mount or os.path.ismount(state.path)
        try:
            state.observer = self.watcher.watch(state.path)
        except OSError as error:
            log.error("event=watch_failed root=%r error=%r", state.path, str(error))
            return
        state.present = True
        event = "root_watched" if initial else "root_resumed"
        log.info("event=%s root=%r observer=%s", event, state.path, state.observer)

    def _pause(self, state: RootState) -> None:
        assert self.watcher is not None
        state.present = False
        self.watcher.unwatch(state.path)
        self.tracker.forget_under(state.path)
        log.warning("event=root_paused root=%r reason=%r", state.path, "root disappeared; files kept")
        self.on_change()
