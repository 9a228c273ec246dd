"""Watcher: turn watchdog events under the roots into hints for the service.

This is the only module that imports watchdog. Events are hints, never truth: the service re-checks every
path with `stat` and reconciles with a scan after anything that may have lost events (queue overflow, a watch
that could not be added). The watchdog threads call the `sink` given to `Watcher`; they never touch the
index. Roots on network file systems (NFS, SMB/CIFS, FUSE...) are watched by polling, since inotify does not
see changes made by other machines.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from comparimg.config import deepest_root, is_inside

log = logging.getLogger(__name__)

# File-system types whose changes inotify may miss (made by another host or a user-space server).
NETWORK_FS_TYPES = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre", "gpfs"}
    | {"davfs", "sshfs", "fuse", "fuseblk"}
)
OBSERVER_KINDS = ("auto", "inotify", "polling")
EVENT_FILTER = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
    EventsLostEvent,
]
# watchdog names a directory it could not watch (after the root's own watch succeeded) in a warning of this
# logger whose arguments are the path and the OSError; the root's own failure is raised by `schedule`.
WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify"
WATCH_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE})
MOUNTINFO = "/proc/self/mountinfo"


class HintKind(StrEnum):
    """What a hint says happened (equal to its name as a string)."""

    CHANGED = "changed"  # a wanted file was created or written
    DELETED = "deleted"  # a wanted file went away
    MOVED = "moved"  # path → destination, both wanted
    DIR_DELETED = "dir_deleted"  # a directory went away or moved out
    OVERFLOW = "overflow"  # events were lost
    WATCH_LIMIT = "watch_limit"  # a directory could not be watched


@dataclass(frozen=True, slots=True)
class Hint:
    """Something may have happened under `root` (see `HintKind`)."""

    kind: HintKind
    root: str
    path: str = ""
    destination: str = ""


@dataclass(frozen=True, slots=True)
class PathFilter:
    """Which files under a root are images we want: include globs on the name, exclude globs on the path."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    _include_lower: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include_lower", tuple(p.lower() for p in self.include))

    def wants_file(self, root: str, path: str) -> bool:
        """Given a root and a file path below it, return whether the file is to be indexed."""
        name = os.path.basename(path).lower()
        if self._include_lower and not any(fnmatchcase(name, p) for p in self._include_lower):
            return False
        return not self.excludes(root, path)

    def excludes(self, root: str, path: str) -> bool:
        """Given a root and a path below it, return whether an exclude pattern matches its relative path."""
        relative = os.path.relpath(path, root)
        return any(fnmatchcase(relative, p) for p in self.exclude)


def unescape_mountinfo(field_text: str) -> str:
    """Given a mountinfo path field, return the path (octal escapes such as \\040 decoded)."""
    out, i = [], 0
    while i < len(field_text):
        chunk = field_text[i : i + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """Given the text of /proc/self/mountinfo, return (mount point, file-system type) pairs in order."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mounts.append((unescape_mountinfo(fields[4]), right.split()[0]))
    return mounts


def filesystem_type(path: str, mountinfo_text: str) -> str:
    """Given an absolute resolved path and mountinfo text, return the type of the file system holding it."""
    best, best_type = "", ""
    for mount_point, fs_type in parse_mountinfo(mountinfo_text):
        inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
        # A later line for the same mount point is mounted on top of the earlier one.
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def is_network_fs(fs_type: str) -> bool:
    """Given a file-system type from mountinfo, return whether inotify may miss changes on it."""
    return fs_type in NETWORK_FS_TYPES or fs_type.startswith("fuse.") or fs_type.startswith("nfs")


def choose_observer(setting: str, path: str, mountinfo_text: str | None) -> str:
    """Given the `watch.observer` setting, a root and mountinfo text, return "inotify" or "polling".

    Raise ValueError for an unknown setting.
    """
    if setting not in OBSERVER_KINDS:
        raise ValueError(f"unknown observer {setting!r}")
    if setting != "auto":
        return setting
    if mountinfo_text is None:
        return "inotify"
    return "polling" if is_network_fs(filesystem_type(path, mountinfo_text)) else "inotify"


def read_mountinfo() -> str | None:
    """Return the text of /proc/self/mountinfo, or None where there is none."""
    try:
        return Path(MOUNTINFO).read_text(errors="replace")
    except OSError:
        return None


class _WatchLimitListener(logging.Handler):
    """Turns watchdog's "Unable to watch PATH: [Errno 28] ..." warnings into calls of `on_watch_limit(path)`.

    watchdog skips a new subdirectory whose watch fails for want of watches and says so only in this log
    record; without listening, that directory would go unseen.
    """

    def __init__(self, on_watch_limit: Callable[[str], None]):
        super().__init__(level=logging.WARNING)
        self._on_watch_limit = on_watch_limit

    def emit(self, record: logging.LogRecord) -> None:
        path = watch_limit_path(record)
        if path is not None:
            self._on_watch_limit(path)


def watch_limit_path(record: logging.LogRecord) -> str | None:
    """Given a log record of watchdog's inotify observer, return the directory it could not watch for want of
    inotify watches or instances, or None for any other record."""
    args = record.args if isinstance(record.args, tuple) else ()
    error = next((arg for arg in args if isinstance(arg, OSError)), None)
    if error is None or error.errno not in WATCH_LIMIT_ERRNOS or not args:
        return None
    path = args[0]
    return os.fsdecode(path) if isinstance(path, str | bytes) else None


class _HintHandler(FileSystemEventHandler):
    """Translate one root's watchdog events into hints (runs on a watchdog thread)."""

    def __init__(self, root: str, path_filter: PathFilter, sink: Callable[[Hint], None]):
        self.root = root
        self.path_filter = path_filter
        self.sink = sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        for hint in hints_for_event(self.root, self.path_filter, event):
            self.sink(hint)


def hints_for_event(root: str, path_filter: PathFilter, event: FileSystemEvent) -> list[Hint]:
    """Given a root, the filter and one watchdog event, return the hints it stands for (maybe none)."""
    if isinstance(event, EventsLostEvent):
        return [Hint(HintKind.OVERFLOW, root)]
    src = os.fsdecode(event.src_path)
    dest = os.fsdecode(event.dest_path) if event.dest_path else ""
    if event.is_directory:
        return _directory_hints(root, path_filter, event.event_type, src, dest)
    wants_src = bool(src) and path_filter.wants_file(root, src)
    if event.event_type == "moved":
        wants_dest = bool(dest) and is_inside(dest, root) and path_filter.wants_file(root, dest)
        if wants_src and wants_dest:
            return [Hint(HintKind.MOVED, root, src, dest)]
        hints = [Hint(HintKind.DELETED, root, src)] if wants_src else []
        return hints + ([Hint(HintKind.CHANGED, root, dest)] if wants_dest else [])
    if not wants_src:
        return []
    kind = HintKind.DELETED if event.event_type == "deleted" else HintKind.CHANGED
    return [Hint(kind, root, src)]


def _directory_hints(root: str, path_filter: PathFilter, event_type: str, src: str, dest: str) -> list[Hint]:
    if event_type == "deleted":
        return [Hint(HintKind.DIR_DELETED, root, src)]
    if event_type == "moved":
        moved_away = not dest or not is_inside(dest, root) or path_filter.excludes(root, dest)
        return [Hint(HintKind.DIR_DELETED, root, src)] if moved_away else []
    # The files of a directory moved within the tree arrive as their own move events; of a directory moved
    # in, as created events.
    return []


class Watcher:
    """Watches roots with inotify or polling and sends hints to a sink (called on watchdog threads)."""

    def __init__(
        self,
        sink: Callable[[Hint], None],
        path_filter: PathFilter,
        *,
        observer: str = "auto",
        polling_interval: float = 10.0,
        mountinfo: Callable[[], str | None] = read_mountinfo,
    ):
        """Given a thread-safe sink for hints, the path filter and the `watch` settings, return a stopped
        watcher. Raise ValueError for an unknown observer setting."""
        if observer not in OBSERVER_KINDS:
            raise ValueError(f"unknown observer {observer!r}")
        self._sink = sink
        self._filter = path_filter
        self._setting = observer
        self._mountinfo = mountinfo
        self._inotify = InotifyObserver()
        self._polling = PollingObserver(timeout=polling_interval)
        self._watches: dict[str, tuple[str, object]] = {}
        self._watch_limit_listener = _WatchLimitListener(self._on_watch_limit)

    def start(self) -> None:
        """Start the observer threads."""
        logging.getLogger(WATCHDOG_INOTIFY_LOGGER).addHandler(self._watch_limit_listener)
        self._inotify.start()
        self._polling.start()

    def stop(self) -> None:
        """Stop watching everything and join the observer threads."""
        logging.getLogger(WATCHDOG_INOTIFY_LOGGER).removeHandler(self._watch_limit_listener)
        for observer in (self._inotify, self._polling):
            observer.stop()
        for observer in (self._inotify, self._polling):
            if observer.is_alive():
                observer.join(timeout=5)

    def kind_of(self, root: str) -> str | None:
        """Given a root, return "inotify" or "polling" if it is watched, else None."""
        entry = self._watches.get(root)
        return entry[0] if entry else None

    def watch(self, root: str) -> str:
        """Given an existing root directory, start watching it; return the observer kind used.

        When inotify's watch limit stops the root itself, fall back to polling and log it.
        Raise OSError if the root cannot be watched at all.
        """
        self.unwatch(root)
        kind = choose_observer(self._setting, os.path.realpath(root), self._mountinfo())
        if kind == "inotify":
            try:
                return self._schedule(root, "inotify")
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                log_watch_limit(root)
        return self._schedule(root, "polling")

    def use_polling(self, root: str) -> None:
        """Given a watched root, watch it by polling from now on (after the watch limit was hit)."""
        if self.kind_of(root) != "polling":
            self.unwatch(root)
            self._schedule(root, "polling")

    def unwatch(self, root: str) -> None:
        """Given a root, stop watching it (no error if it was not watched)."""
        entry = self._watches.pop(root, None)
        if entry is None:
            return
        kind, watch = entry
        observer = self._inotify if kind == "inotify" else self._polling
        try:
            observer.unschedule(watch)
        except (KeyError, OSError) as error:
            log.debug("event=unwatch_failed root=%r error=%r", root, str(error))

    def _schedule(self, root: str, kind: str) -> str:
        observer = self._inotify if kind == "inotify" else self._polling
        handler = _HintHandler(root, self._filter, self._sink)
        watch = observer.schedule(handler, root, recursive=True, event_filter=EVENT_FILTER)
        self._watches[root] = (kind, watch)
        return kind

    def _on_watch_limit(self, path: str) -> None:
        # Called on a watchdog thread: read a copy of the watches, which the service's thread may change.
        inotify_roots = [root for root, (kind, _) in list(self._watches.items()) if kind == "inotify"]
        root = deepest_root(path, inotify_roots)
        if root is not None:
            self._sink(Hint(HintKind.WATCH_LIMIT, root, path))


def log_watch_limit(path: str) -> None:
    """Given a directory that could not be watched, log the sysctl to raise (once per occurrence)."""
    log.error(
        "event=watch_limit path=%r reason=%r",
        path,
        "inotify watch limit reached; raise fs.inotify.max_user_watches (sysctl) - falling back to polling",
    )
