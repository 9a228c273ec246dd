"""A small per-process cache of decoded verification pictures, so a file is not decoded again for each check.

In a scan a worker fingerprints a file and, moments later, often verifies that same file against its
candidates (and one indexed file against several new ones). `verification_picture(path)` returns the
grayscale picture `verify_pair` compares (decoded with at least VERIFY_SIDE pixels on the short side), from
the cache when the file still has the size and modification time it had when it was decoded, else by
decoding it. `fingerprint_file` keeps the picture it decoded anyway (`remember`) when the same decode gives
it at the verification size; a check brings the previews another worker decoded (`offer`). A picture is
only ever found under the key of the file's current stat, so one of an older version is never used. Least
recently used pictures leave first, beyond MAX_BYTES in all.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from comparimg.hashing.decoding import Picture, open_picture

VERIFY_SIDE = 256  # short side of the pictures verification decodes (its fine side)
MAX_BYTES = 64 << 20

FileKey = tuple[str, int, int]  # (path, size, mtime_ns)
Preview = tuple[FileKey, np.ndarray]  # a picture at the verification size and the file it was decoded from


class PictureCache:
    """Decoded pictures (read-only uint8 arrays) by FileKey, least recently used first, `max_bytes` in all."""

    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._pictures: OrderedDict[FileKey, np.ndarray] = OrderedDict()
        self._key_of_path: dict[str, FileKey] = {}  # one picture per path: the latest put

    def __len__(self) -> int:
        return len(self._pictures)

    def __contains__(self, key: object) -> bool:
        return key in self._pictures

    def get(self, key: FileKey) -> np.ndarray | None:
        """Given a FileKey, return its picture (now the most recently used), or None."""
        pixels = self._pictures.get(key)
        if pixels is not None:
            self._pictures.move_to_end(key)
        return pixels

    def put(self, key: FileKey, pixels: np.ndarray) -> None:
        """Given a FileKey and its picture, keep it (dropping older pictures of the same path and the least
        recently used ones beyond max_bytes); a picture bigger than max_bytes is not kept."""
        old = self._key_of_path.pop(key[0], None)
        if old is not None:
            self.nbytes -= self._pictures.pop(old).nbytes
        if pixels.nbytes > self.max_bytes:
            return
        pixels = np.asarray(pixels, dtype=np.uint8)
        pixels.setflags(write=False)
        self._pictures[key] = pixels
        self._key_of_path[key[0]] = key
        self.nbytes += pixels.nbytes
        while self.nbytes > self.max_bytes:
            (path, _, _), dropped = self._pictures.popitem(last=False)
            del self._key_of_path[path]
            self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        """Forget every picture."""
        self._pictures.clear()
        self._key_of_path.clear()
        self.nbytes = 0


CACHE = PictureCache()


def file_key(path: str) -> FileKey | None:
    """Given a path, return its FileKey from a fresh stat, or None when it cannot be stat'ed."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), status.st_size, status.st_mtime_ns)


def remember(key: FileKey | None, path: str, picture: Picture) -> Preview | None:
    """Given the FileKey taken before decoding `path` and its picture at the verification size, keep it
    when the file did not change meanwhile, and return it as a Preview (else None)."""
    if key is None or file_key(path) != key:
        return None
    CACHE.put(key, np.asarray(picture.image, dtype=np.uint8))
    pixels = CACHE.get(key)
    return None if pixels is None else (key, pixels)


def offer(previews: Iterable[Preview]) -> None:
    """Given previews decoded by another process (sent along with a task), keep those not already kept."""
    for key, pixels in previews:
        if key not in CACHE:
            CACHE.put(key, pixels)


def verification_picture(path: str) -> np.ndarray:
    """Given a path, return its grayscale picture at the verification size as a read-only uint8 array,
    decoded again only when the cache has none for the file's current size and modification time.
    Raise ImageError when it cannot be decoded."""
    key = file_key(path)
    if key is not None:
        pixels = CACHE.get(key)
        if pixels is not None:
            return pixels
    pixels = np.asarray(open_picture(path, min_side=VERIFY_SIDE).image, dtype=np.uint8)
    if key is not None and file_key(path) == key:
        CACHE.put(key, pixels)
    return pixels
