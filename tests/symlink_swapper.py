"""A thread that swaps a real file or folder with a symlink in a tight loop (renameat2 RENAME_EXCHANGE), the
way an attacker races a check against the action that follows it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

AT_FDCWD = -100
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(first: Path, second: Path) -> None:
    """Atomically swap the names `first` and `second` (both must exist). Raise OSError."""
    result = _libc.renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), str(first))


@contextlib.contextmanager
def swapping(real: Path, decoy: Path) -> Iterator[dict[str, int]]:
    """While the block runs, swap `real` with `decoy` (a symlink) as fast as possible; afterwards put them
    back as they were. Yield a dict whose "swaps" counts the exchanges done."""
    stop = threading.Event()
    counts = {"swaps": 0}

    def loop() -> None:
        while not stop.is_set():
            exchange(real, decoy)
            counts["swaps"] += 1

    thread = threading.Thread(target=loop, name="symlink-swapper", daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=10)
        if counts["swaps"] % 2:
            exchange(real, decoy)
