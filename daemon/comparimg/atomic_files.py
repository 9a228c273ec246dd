"""Write a file so that readers see the old content or the new, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike, mode: int | None = None) -> Iterator[BinaryIO]:
    """Given a path and an optional file mode, yield a binary handle on a temp file beside the target; when
    the block ends without error, fsync it, set the mode and rename it over the target (parents are
    created), else remove it. Raise OSError."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str, mode: int | None = None) -> None:
    """Given a path, text and an optional file mode, write the text as UTF-8 with `open_atomically`."""
    with open_atomically(path, mode) as handle:
        handle.write(text.encode("utf-8"))


def create_private_folder(path: str | os.PathLike) -> None:
    """Given a folder path, create it (and missing parents) if absent, the folder itself private (0700 before
    the umask): index, export, token and state folders hold what other users must not read. An existing
    folder keeps the mode its owner gave it."""
    Path(path).mkdir(parents=True, exist_ok=True, mode=0o700)
