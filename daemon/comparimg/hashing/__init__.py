"""The hashing room: everything that reads image files (the only room that imports PIL).

Pure functions over paths, meant to run in worker processes:

- `fingerprint_file(path)`: content hash, size, format, the 64-bit DCT perceptual hash in its 8 orientation
  variants, and window hashes (`Fingerprint.windows`, see `model.WINDOW_TRIMS`: slot k holds the hash
  of window k; an extra last slot `model.CONTENT_SLOT` holds the hash of the content inside a uniform
  border, only when there is one).
- `fingerprint_with_preview(path)`: the same and the picture decoded at the verification size, for the
  parent to send along with later checks of the file (`verify_pair(..., previews)`), which another worker
  than the one that decoded it may run.
- `fingerprint_for_index(path, send_preview, embedder)`: what the scanner runs: the same and, given an
  `embedding.EmbedderSpec` (the model stage is on), the picture's embedding and quality from the same
  decode (`Fingerprint.embedding`, `.quality`), with the reason when the encoder could not give one. Each
  worker process loads the encoder once (`embedder_input.loaded_embedder`); without a spec nothing of the
  model is loaded (onnxruntime is never imported).
- `check_embedder(spec)`: load the encoder in this worker and say whether it works (`EmbedderCheck`).
- `content_hash_file(path)`: SHA-256 of the bytes, streamed.
- `verify_pair(path_a, path_b, candidate, previews)`: the precise check behind a hash match (decoded
  pictures, and the previews a check brings, are reused within a process through `pictures.CACHE`, keyed
  by path, size and mtime_ns).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from comparimg.embedding import EmbedderCheck, pack_embedding
from comparimg.hashing import pictures
from comparimg.hashing.decoding import (
    ACCEPTED_FORMATS,
    SUPPORTED_EXTENSIONS,
    Decoded,
    content_hash_bytes,
    content_hash_file,
    decode_pictures,
    read_small_file,
)
from comparimg.hashing.embedder_input import embed_picture, keep_loaded, loaded_embedder
from comparimg.hashing.perceptual import hash_pixels, orientation_variants, window_hashes
from comparimg.hashing.pictures import Preview
from comparimg.hashing.quality import picture_quality
from comparimg.hashing.verification import verify_pair as verify_pictures
from comparimg.model import Candidate, Fingerprint, ModelError, Verdict

if TYPE_CHECKING:
    from comparimg.embedding import EmbedderSpec

__all__ = [
    "ACCEPTED_FORMATS",
    "SUPPORTED_EXTENSIONS",
    "Fingerprinted",
    "check_embedder",
    "content_hash_file",
    "fingerprint_file",
    "fingerprint_for_index",
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


class Fingerprinted(NamedTuple):
    """What `fingerprint_for_index` returns: the Fingerprint, the Preview to send along with the file's
    checks (or None), and why the fingerprint has no embedding although one was asked for ("" otherwise:
    the ModelError's message, naming the model file)."""

    fingerprint: Fingerprint
    preview: Preview | None
    model_problem: str = ""


def fingerprint_for_index(
    path: str, send_preview: bool = True, embedder: EmbedderSpec | None = None
) -> Fingerprinted:
    """Given a path, whether to return the preview (as fingerprint_with_preview) and the encoder to run
    (None: none), return its Fingerprinted. With an encoder, the fingerprint also holds the embedding of
    the upright picture (decoded in colour by the same decode, at the encoder's input size or more) and its
    quality; an encoder that fails on the picture, or cannot be loaded in this process, leaves the
    embedding empty and says why, the rest of the fingerprint being whole. Raise ImageError when the file
    cannot be decoded."""
    if embedder is None:
        fingerprint, preview = _fingerprint(path)
        return Fingerprinted(fingerprint, preview if send_preview else None)
    try:
        encoder = loaded_embedder(embedder)
    except ModelError as error:
        fingerprint, preview = _fingerprint(path)
        return Fingerprinted(fingerprint, preview if send_preview else None, str(error))
    fingerprint, preview, decoded = _decode_and_hash(path, colour_side=encoder.input_size)
    assert decoded.colour is not None
    quality = picture_quality(np.asarray(decoded.gray.image, dtype=np.uint8))
    try:
        vector = embed_picture(encoder, decoded.colour)
    except ModelError as error:
        fingerprint = dataclasses.replace(fingerprint, quality=quality)
        return Fingerprinted(fingerprint, preview if send_preview else None, str(error))
    fingerprint = dataclasses.replace(fingerprint, embedding=pack_embedding(vector), quality=quality)
    return Fingerprinted(fingerprint, preview if send_preview else None)


def check_embedder(spec: EmbedderSpec) -> EmbedderCheck:
    """Given an EmbedderSpec, load it in this process (kept for the pictures that follow) and return an
    EmbedderCheck: the spec pinned to the file's sha256, identity, dimensions and input size, or the
    ModelError's message naming the file."""
    try:
        encoder = loaded_embedder(spec)
    except ModelError as error:
        return EmbedderCheck(error=str(error))
    pinned = spec.pinned(encoder)
    keep_loaded(pinned, encoder)  # the pictures that follow name the pinned spec: not loaded twice here
    return EmbedderCheck(pinned, encoder.identity, encoder.dimensions, encoder.input_size)


def _fingerprint(path: str, windows: bool = True) -> tuple[Fingerprint, Preview | None]:
    fingerprint, preview, _ = _decode_and_hash(path, windows)
    return fingerprint, preview


def _decode_and_hash(
    path: str, windows: bool = True, colour_side: int | None = None
) -> tuple[Fingerprint, Preview | None, Decoded]:
    key = pictures.file_key(path)
    data = read_small_file(path)  # None for a big file: it is read twice, streamed
    content_hash = content_hash_file(path) if data is None else content_hash_bytes(data)
    decoded = decode_pictures(path, FINGERPRINT_SIDE, pictures.VERIFY_SIDE, data, colour_side)
    picture = decoded.gray
    preview = None if decoded.spare is None else pictures.remember(key, path, decoded.spare)
    fingerprint = Fingerprint(
        content_hash=content_hash,
        width=picture.width,
        height=picture.height,
        format=picture.format,
        phash=orientation_variants(hash_pixels(picture.image)),
        windows=window_hashes(picture.image) if windows else (),
    )
    return fingerprint, preview, decoded


def verify_pair(path_a: str, path_b: str, candidate: Candidate, previews: Sequence[Preview] = ()) -> Verdict:
    """Given the queried file, an indexed file, the Candidate linking them and optionally previews of
    either file decoded elsewhere, return the Verdict of `verification.verify_pair`. Raise ImageError when
    either cannot be decoded."""
    pictures.offer(previews)
    return verify_pictures(path_a, path_b, candidate)
