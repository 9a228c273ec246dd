"""Open hostile image files safely: allow-listed formats, the decompression-bomb limit, EXIF orientation.

Every failure becomes `ImageError(reason)` with a short reason meant for people.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from dataclasses import dataclass

from PIL import (  # the plugins of the accepted formats, registered before any open
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from comparimg.hashing.embedder_input import as_rgb
from comparimg.model import ImageError

try:  # HEIC is accepted only when its decoder is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF_FORMATS: tuple[str, ...] = ("HEIF",)
    _HEIF_EXTENSIONS: tuple[str, ...] = (".heic", ".heif")
except ImportError:
    _HEIF_FORMATS = ()
    _HEIF_EXTENSIONS = ()

# Pillow format names we decode. Camera JPEGs that carry a second (preview) picture open as MPO through JPEG.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", *_HEIF_FORMATS)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif"}
    | set(_HEIF_EXTENSIONS)
)
# Formats people rename to an image extension, named in the error so they know what they have.
_KNOWN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"8BPS", "PSD"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
)
_PLUGINS = (
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)
_CHUNK = 1 << 20
IN_MEMORY_LIMIT = 64 << 20  # files up to this size are read once, then hashed and decoded from memory
# EXIF orientation tag value -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, slots=True)
class Picture:
    """A decoded grayscale picture, EXIF orientation applied, with the file's full size and format.

    `image` may be smaller than `width` × `height` (JPEG draft decoding, reduction of big pictures).
    """

    image: Image.Image
    width: int
    height: int
    format: str


def read_small_file(path: str, limit: int | None = None) -> bytes | None:
    """Given a path, return its bytes when it holds at most `limit` (default IN_MEMORY_LIMIT) of them,
    else None (such a file is streamed instead). Raise ImageError if unreadable. Hashing and decoding the
    same bytes reads the file once and cannot see two different contents."""
    limit = IN_MEMORY_LIMIT if limit is None else limit
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size > limit:
                return None
            data = handle.read(limit + 1)
    except OSError as error:
        raise ImageError(f"cannot read file: {error.strerror or error}") from error
    return None if len(data) > limit else data  # grown past the limit since the stat: streamed


def content_hash_bytes(data: bytes) -> str:
    """Given bytes, return their hex SHA-256 (as content_hash_file would of a file holding them)."""
    return hashlib.sha256(data).hexdigest()


def content_hash_file(path: str) -> str:
    """Given a path, return the hex SHA-256 of its bytes, read in chunks. Raise ImageError if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise ImageError(f"cannot read file: {error.strerror or error}") from error
    return digest.hexdigest()


def open_picture(path: str, min_side: int = 256) -> Picture:
    """Given a path, return its picture as grayscale with at least `min_side` pixels on the short side when
    the file has that many (JPEG decoded at reduced scale, big pictures reduced), EXIF orientation applied.
    Raise ImageError with a short reason for anything that cannot be decoded."""
    return open_pictures(path, min_side)[0]


def open_pictures(
    path: str, min_side: int, spare_side: int | None = None, data: bytes | None = None
) -> tuple[Picture, Picture | None]:
    """Given a path, return (its picture as open_picture(path, min_side) does, the picture as
    open_picture(path, spare_side) would return it when the same decode gives it, else None): a picture
    at a second size for the cost of a reduce. Given `data`, the file's bytes already read, decode those.
    Raise ImageError as open_picture."""
    decoded = decode_pictures(path, min_side, spare_side, data)
    return decoded.gray, decoded.spare


@dataclass(frozen=True, slots=True)
class Decoded:
    """What one decode of a file gives: the grayscale picture, the spare grayscale picture at a second size
    (None when the same decode cannot give it) and, when asked for, the picture in colour (its file's
    mode, reduced, upright: YCbCr, RGB, RGBA, L, CMYK...; `embedder_input.embedder_pixels` makes it RGB)."""

    gray: Picture
    spare: Picture | None = None
    colour: Image.Image | None = None


def decode_pictures(
    path: str,
    min_side: int,
    spare_side: int | None = None,
    data: bytes | None = None,
    colour_side: int | None = None,
) -> Decoded:
    """Given a path, return what open_pictures returns and, given `colour_side`, the picture in colour
    with at least that many pixels on its short side (when the file has them), all from one decode: a
    JPEG is then decoded as YCbCr at the scale the larger of `min_side` and `colour_side` needs (its Y
    plane is exactly the grayscale decode), any other format in its own mode. Raise ImageError as
    open_picture."""
    if data is None:
        _check_file(path)
    elif not data:
        raise ImageError("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # decoder chatter about odd EXIF or MPO headers is not an error
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(path, min_side, spare_side, data, colour_side)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError("too many pixels") from error
        except UnidentifiedImageError as error:
            raise ImageError(_unidentified_reason(path, data)) from error
        except MemoryError as error:
            raise ImageError("too big to decode") from error
        except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, TypeError) as error:
            raise ImageError(_decode_reason(error)) from error


def _check_file(path: str) -> None:
    try:
        size = os.stat(path).st_size
    except OSError as error:
        raise ImageError(f"cannot read file: {error.strerror or error}") from error
    if size == 0:
        raise ImageError("empty file")


def _decode(
    path: str, min_side: int, spare_side: int | None, data: bytes | None, colour_side: int | None
) -> Decoded:
    with Image.open(path if data is None else io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
        file_format = "JPEG" if image.format == "MPO" else str(image.format)
        width, height = image.size
        same_decode = spare_side is not None
        if image.format in ("JPEG", "MPO"):
            request = _draft_request(image.size, max(min_side, colour_side or 0))
            # YCbCr keeps the colour for the embedder: its Y plane is the grayscale decode, bit for bit.
            if image.draft("L" if colour_side is None else "YCbCr", request) is not None and spare_side:
                # The spare picture needs the same draft scale (JPEG decodes at 1/1, 1/2, 1/4 or 1/8).
                spare = _draft_scale((width, height), _draft_request((width, height), spare_side))
                same_decode = spare == _draft_scale((width, height), request)
        image.load()
        orientation = _exif_orientation(image)
        gray = _to_gray(image)
        colour = None if colour_side is None else _colour(image, colour_side)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    picture = Picture(_apply_orientation(_reduce(gray, min_side), orientation), width, height, file_format)
    upright = None if colour is None else _apply_orientation(colour, orientation)
    if not same_decode or spare_side is None:
        return Decoded(picture, None, upright)
    spare = Picture(_apply_orientation(_reduce(gray, spare_side), orientation), width, height, file_format)
    return Decoded(picture, spare, upright)


def _colour(image: Image.Image, min_side: int) -> Image.Image:
    """Given the decoded picture, return it reduced to about `min_side` on its short side (not below), in
    a mode the embedder's input takes (YCbCr for a JPEG); palette, bilevel and 16-bit pictures become RGB
    before the reduce, which does not take them."""
    if image.mode == "YCbCr":  # left YCbCr: the embedder's input converts it once resized to its side
        return _reduce(image, min_side)
    if image.mode not in ("L", "LA", "RGB", "RGBA", "CMYK"):
        image = as_rgb(image)
    return _reduce(image, min_side)


def _draft_request(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    # draft() keeps the result at least as large as the request; keep the short side >= min_side.
    scale = min_side / max(1, min(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def _draft_scale(size: tuple[int, int], request: tuple[int, int]) -> int:
    # The reduction JpegImageFile.draft picks for a request: the largest of 8, 4, 2, 1 it allows.
    scale = min(size[0] // request[0], size[1] // request[1])
    return next(s for s in (8, 4, 2, 1) if scale >= s or s == 1)


def _exif_orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF must not hide a good picture
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_gray(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image.copy()
    if image.mode == "YCbCr":  # a JPEG decoded in colour for the embedder: Y is the grayscale decode
        return image.getchannel(0)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        return image.convert("RGBA").convert("L")
    return image.convert("L")


def _reduce(image: Image.Image, min_side: int) -> Image.Image:
    factor = min(image.size) // (2 * min_side)
    return image.reduce(factor) if factor >= 2 else image


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _EXIF_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _unidentified_reason(path: str, data: bytes | None) -> str:
    head = data[:16] if data is not None else _read_head(path)
    for magic, name in _KNOWN_MAGIC:
        if head.startswith(magic):
            return f"format not accepted ({name})"
    return "not an image"


def _read_head(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(16)
    except OSError:
        return b""


def _decode_reason(error: Exception) -> str:
    text = str(error).lower()
    if "truncated" in text or isinstance(error, EOFError):
        return "truncated"
    if "decoder" in text and "not available" in text:
        return "format not accepted (no decoder)"
    return "corrupt image data"
