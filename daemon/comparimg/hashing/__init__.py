"""The hashing room: everything that reads image files (the only room that imports PIL).

Pure functions over paths, meant to run in worker processes:

- `fingerprint_file(path)`: content hash, size, format, the 64-bit DCT perceptual hash in its 8 orientation
  variants, and window hashes (`Fingerprint.windows`, see `model.WINDOW_TRIMS`: slot k holds the hash
  of window k; an extra last slot `model.CONTENT_SLOT` holds the hash of the content inside a uniform
  border, only when there is one).
- `fingerprint_with_preview(path)`: the same and the picture decoded at the verification size, for the
  parent to send along with later checks of the file (`verify_pair(..., previews)`), which another worker
  than the one that decoded it may run.
- `content_hash_file(path)`: SHA-256 of the bytes, streamed.
- `verify_pair(path_a, path_b, candidate, previews)`: the precise check behind a hash match (decoded
  pictures, and the previews a check brings, are reused within a process through `pictures.CACHE`, keyed
  by path, size and mtime_ns).
"""

from __future__ import annotations

from collections.abc import Sequence

from comparimg.hashing import pictures
from comparimg.hashing.decoding import (
    ACCEPTED_FORMATS,
    SUPPORTED_EXTENSIONS,
    content_hash_bytes,
    content_hash_file,
    open_pictures,
    read_small_file,
)
from comparimg.hashing.perceptual import hash_pixels, orientation_variants, window_hashes
from comparimg.hashing.pictures import Preview
from comparimg.hashing.verification import verify_pair as verify_pictures
from comparimg.model import Candidate, Fingerprint, Verdict

__all__ = [
    "ACCEPTED_FORMATS",
    "SUPPORTED_EXTENSIONS",
    "content_hash_file",
    "fingerprint_file",
    "fingerprint_with_preview",
    "verify_pair",
]
# Short side the picture is decoded at for hashing: enough for 32×32 windows of 80 % of it.
FINGERPRINT_SIDE = 128


def fingerprint_file(path: str, windows: bool = True) -> Fingerprint:
    """Given a path, return its Fingerprint (content hash, oriented width and height, format, perceptual
    hash variants, and window hashes unless `windows` is false). Raise ImageError with a short reason when
    it cannot be decoded. The picture at the verification size, when the same decode gives it, is kept in
    this process's `pictures.CACHE` for the checks that usually follow."""
    return _fingerprint(path, windows)[0]


def fingerprint_with_preview(path: str, send_preview: bool = True) -> tuple[Fingerprint, Preview | None]:
    """Given a path, return (its Fingerprint as fingerprint_file does, the Preview kept in this process's
    cache, or None when there is none or `send_preview` is false): a parent with several workers passes
    the preview on with the checks of this file, which another worker may run; with one worker it need
    not travel."""
    fingerprint, preview = _fingerprint(path)
    return fingerprint, preview if send_preview else None


def _fingerprint(path: str, windows: bool = True) -> tuple[Fingerprint, Preview | None]:
    key = pictures.file_key(path)
    data = read_small_file(path)  # None for a big file: it is read twice, streamed
    content_hash = content_hash_file(path) if data is None else content_hash_bytes(data)
    picture, spare = open_pictures(path, FINGERPRINT_SIDE, pictures.VERIFY_SIDE, data)
    preview = None if spare is None else pictures.remember(key, path, spare)
    fingerprint = Fingerprint(
        content_hash=content_hash,
        width=picture.width,
        height=picture.height,
        format=picture.format,
        phash=orientation_variants(hash_pixels(picture.image)),
        windows=window_hashes(picture.image) if windows else (),
    )
    return fingerprint, preview


def verify_pair(path_a: str, path_b: str, candidate: Candidate, previews: Sequence[Preview] = ()) -> Verdict:
    """Given the queried file, an indexed file, the Candidate linking them and optionally previews of
    either file decoded elsewhere, return the Verdict of `verification.verify_pair`. Raise ImageError when
    either cannot be decoded."""
    pictures.offer(previews)
    return verify_pictures(path_a, path_b, candidate)
