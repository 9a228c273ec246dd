"""The 64-bit DCT perceptual hash (imagehash.phash compatible), its orientation variants and window hashes.

Bit order is imagehash's: the 8×8 low-frequency block read row by row, first bit most significant, so
`int(str(imagehash.phash(image)), 16)` equals `dct_hash(...)` on the same 32×32 input.

Orientation variants come from ONE decode: turning the 32×32 input turns its DCT coefficients too
(reversing columns multiplies column v by (-1)^v, reversing rows multiplies row u by (-1)^u, transposing
transposes), so each variant is the median threshold of a sign-flipped / transposed coefficient block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from comparimg.model import ABSENT, ORIENTATION_STEPS, TURNED_WINDOWS, WINDOW_TRIMS

HASH_SIDE = 32
LOW = 8
_N = np.arange(HASH_SIDE)
# Unnormalised DCT-II, as scipy.fftpack.dct(type=2): y[k] = 2 * sum x[n] cos(pi k (2n + 1) / 2N).
_DCT_LOW = 2.0 * np.cos(np.pi * np.arange(LOW)[:, None] * (2 * _N[None, :] + 1) / (2 * HASH_SIDE))
_SIGN = (-1.0) ** np.arange(LOW)


def low_frequencies(pixels: np.ndarray) -> np.ndarray:
    """Given a 32×32 grayscale array, return its 8×8 block of lowest DCT-II coefficients (float64)."""
    return _DCT_LOW @ np.asarray(pixels, dtype=np.float64) @ _DCT_LOW.T


def bits_to_int(bits: np.ndarray) -> int:
    """Given a boolean array, return it as an unsigned int, first element most significant."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def threshold_hash(coefficients: np.ndarray) -> int:
    """Given an 8×8 coefficient block, return the 64-bit hash `coefficients > median` as an int."""
    return bits_to_int(coefficients > np.median(coefficients))


def threshold_hashes(blocks: np.ndarray) -> list[int]:
    """Given coefficient blocks (..., 8, 8), return threshold_hash of each, in order, in one pass."""
    flat = blocks.reshape(-1, LOW * LOW)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().tolist()


def turn_coefficients(coefficients: np.ndarray, orientation: int) -> np.ndarray:
    """Given an 8×8 DCT block (or a stack of them, (..., 8, 8)) and an orientation id, return the block
    of the turned picture."""
    transpose, reverse_rows, reverse_columns = ORIENTATION_STEPS[orientation]
    block = coefficients.swapaxes(-1, -2) if transpose else coefficients
    if reverse_rows:
        block = block * _SIGN[:, None]
    if reverse_columns:
        block = block * _SIGN[None, :]
    return block


def turn_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Given a 2-D array and an orientation id, return the array turned the same way PIL would turn it."""
    transpose, reverse_rows, reverse_columns = ORIENTATION_STEPS[orientation]
    block = pixels.T if transpose else pixels
    if reverse_rows:
        block = block[::-1, :]
    if reverse_columns:
        block = block[:, ::-1]
    return block


def orientation_variants(pixels: np.ndarray) -> tuple[int, ...]:
    """Given a 32×32 grayscale array, return the 8 hashes of the picture turned by each orientation."""
    coefficients = low_frequencies(pixels)
    turned = np.stack([turn_coefficients(coefficients, k) for k in range(len(ORIENTATION_STEPS))])
    return tuple(threshold_hashes(turned))


def dct_hash(pixels: np.ndarray) -> int:
    """Given a 32×32 grayscale array, return its 64-bit perceptual hash."""
    return threshold_hash(low_frequencies(pixels))


def hash_pixels(image: Image.Image, box: Sequence[float] | None = None) -> np.ndarray:
    """Given a grayscale image and an optional (left, top, right, bottom) box, return the 32×32 array
    the hash is computed from (Lanczos, as imagehash)."""
    small = image.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS, box=box)
    return np.asarray(small, dtype=np.float64)


WINDOW_BASE_SIDE = 128
_FLAT_STD = 4.0
_FLAT_STEP = 12.0
_MAX_BORDER = 0.25
_MIN_BORDER = 0.01


def window_hashes(image: Image.Image) -> tuple[int, ...]:
    """Given a grayscale image, return its window hashes in the layout described at model.TURNED_WINDOWS:
    hashes of its WINDOW_TRIMS windows and of its content inside a uniform border (ABSENT when it has
    none), then the same windows turned by each of TURNED_WINDOWS. Windows are taken from a copy reduced
    to WINDOW_BASE_SIDE pixels on the short side: it keeps them ~6× cheaper than from the decoded picture
    at the same accuracy."""
    image = _window_base(image)
    width, height = image.size
    boxes = [
        (left * width, top * height, width - right * width, height - bottom * height)
        for left, top, right, bottom in WINDOW_TRIMS
    ]
    content = content_box(np.asarray(image, dtype=np.float32))
    if content is not None:
        boxes.append(content)
    blocks = np.stack([low_frequencies(hash_pixels(image, box)) for box in boxes])
    hashes: list[int] = []
    for orientation in (0, *TURNED_WINDOWS):
        turned = threshold_hashes(turn_coefficients(blocks, orientation))
        hashes += turned if content is not None else [*turned, ABSENT]
    return tuple(hashes)


def _window_base(image: Image.Image) -> Image.Image:
    scale = WINDOW_BASE_SIDE / min(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BOX)


def content_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """Given a grayscale array, return the (left, top, right, bottom) box inside its uniform border (bands
    of nearly constant rows / columns along the edges), or None when it has no such border."""
    height, width = pixels.shape
    top = _flat_run(pixels)
    bottom = _flat_run(pixels[::-1])
    left = _flat_run(pixels.T)
    right = _flat_run(pixels.T[::-1])
    if max(top + bottom, 0) < _MIN_BORDER * height and left + right < _MIN_BORDER * width:
        return None
    if top + bottom > _MAX_BORDER * 2 * height or left + right > _MAX_BORDER * 2 * width:
        return None
    return (left, top, width - right, height - bottom)


def _flat_run(pixels: np.ndarray) -> int:
    # Rows from the first one that are each nearly constant and close to the first row's level.
    limit = int(pixels.shape[0] * _MAX_BORDER)
    rows = pixels[: limit + 1]
    flat = (rows.std(axis=1) < _FLAT_STD) & (np.abs(rows.mean(axis=1) - rows[0].mean()) < _FLAT_STEP)
    return int(np.argmin(flat)) if not flat.all() else len(flat)
