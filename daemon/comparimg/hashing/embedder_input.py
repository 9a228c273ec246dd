"""Pictures made ready for the image embedder (the embedding room runs the model; this room owns PIL).

The embedder sees the whole picture squashed to its square input (no centre crop): a crop would drop the
borders, and a frame around a picture is exactly what must not make two pictures look alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from comparimg.model import ModelError

if TYPE_CHECKING:
    from comparimg.embedding import Embedder, EmbedderSpec

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
# Modes resized before they are made RGB (fewer pixels to convert): their conversion to RGB is per pixel and
# affine, so it commutes with the resize but for rounding. Others (alpha, palettes) are made RGB first.
_RESIZED_AS_THEY_ARE = ("RGB", "YCbCr", "L")
# A picture at least twice the encoder's side is first reduced by the whole factor (a box filter), then
# resized: on a camera JPEG's 500×375 colour decode, 0.6 ms instead of 1.0 ms for the bilinear resize alone
# (the shipped model was calibrated and the verifier trained with pictures made so).
REDUCING_GAP = 1.0
# The encoders this process loaded, or why one could not be loaded: one per spec, loaded on first use (a
# hashing worker loads its model once, not per picture, and does not retry one that failed).
_LOADED: dict[EmbedderSpec, Embedder | ModelError] = {}


def keep_loaded(spec: EmbedderSpec, embedder: Embedder) -> None:
    """Given a spec and the Embedder already loaded for the same file, let `loaded_embedder(spec)` return
    it (a spec pinned to the sha256 of a file this process loaded)."""
    _LOADED[spec] = embedder


def loaded_embedder(spec: EmbedderSpec) -> Embedder:
    """Given an EmbedderSpec, return this process's Embedder for it, loading it on the first call. Raise
    the ModelError of the load (naming the file) on this and every later call when it could not load."""
    if spec not in _LOADED:
        try:
            _LOADED[spec] = spec.load()
        except ModelError as error:
            _LOADED[spec] = error
    found = _LOADED[spec]
    if isinstance(found, ModelError):
        raise found
    return found


def embedder_pixels(picture: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """Given a decoded picture (a PIL image in any mode, or a uint8 array: gray (H, W), RGB (H, W, 3) or
    RGBA (H, W, 4)), return it as RGB uint8 pixels of shape (size, size, 3), the whole picture resized
    (bilinear, antialiased when reducing, after a box reduction by the whole factor when it is 2 or more:
    REDUCING_GAP). Raise ValueError for an array of another shape or type."""
    image = picture if isinstance(picture, Image.Image) else _from_array(picture)
    if image.mode not in _RESIZED_AS_THEY_ARE:
        image = as_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP)
    return np.asarray(as_rgb(image), dtype=np.uint8)


def embed_picture(embedder: Embedder, picture: Image.Image | np.ndarray) -> np.ndarray:
    """Given a loaded Embedder and a decoded picture (as embedder_pixels takes), return its embedding (a unit
    float32 vector). Raise ModelError when the encoder fails on it."""
    return embedder.embed(embedder_pixels(picture, embedder.input_size))


def _from_array(pixels: np.ndarray) -> Image.Image:
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise ValueError(
            f"expected uint8 pixels (H, W), (H, W, 3) or (H, W, 4), got {pixels.dtype} {pixels.shape}"
        )
    return Image.fromarray(np.ascontiguousarray(pixels))


def as_rgb(image: Image.Image) -> Image.Image:
    """Given a PIL image in any mode, return it in RGB (16-bit values scaled, transparent palettes flattened
    as RGBA would be)."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:  # convert() would clip 16-bit values to white
        return image.point(lambda value: value / 256).convert("L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")
