"""Thumbnails for the review page: decode an image (hostile input: run this in a worker process) and write
a small JPEG atomically into a cache keyed by content hash. Part of the hashing room, the one place that
decodes pictures."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from comparimg.atomic_files import open_atomically
from comparimg.hashing.decoding import ACCEPTED_FORMATS
from comparimg.model import ImageError


def cache_path(cache_dir: Path, content_hash: str, size: int) -> Path:
    """Return where the thumbnail of the given content at the given size is kept."""
    return cache_dir / content_hash[:2] / f"{content_hash}-{size}.jpg"


def make_thumbnail(source: str, dest: str, size: int) -> str:
    """Given an image path, write a JPEG thumbnail no larger than size×size at `dest` (atomically, parents
    created); return `dest`. Raise ImageError when the image cannot be decoded."""
    try:
        with Image.open(source, formats=ACCEPTED_FORMATS) as image:  # as the index accepted it
            image.draft("RGB", (size, size))
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((size, size))
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        raise ImageError(f"cannot make a thumbnail: {error}") from error
    with open_atomically(dest) as handle:
        picture.save(handle, format="JPEG", quality=80)
    return dest
