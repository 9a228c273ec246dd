"""Pair features: what the learned verifier sees of a candidate pair (pure: values in, a vector out).

From the two files' fingerprints (always), the embedding cosine (when both files have an embedding) and the
pixel check's `model.Verdict` (only when it was run: it costs ~20 ms a pair, so the caller runs it only when
the cheaper features cannot decide), `pair_features` returns one float vector laid out as FEATURE_NAMES.
Evidence that was not computed is a fixed neutral value plus a flag saying so, so one model judges every
stage.

The hash features are the ones the matching room finds candidates with, computed by its own functions
(`matching.window_orientations`, `matching.SLOT_AFTER_TURN`): the global hash in its best orientation,
every window rule, and how many window slots agree in that orientation.

The orientation convention is the matching room's: orientation k turns the first file (A) into the second
(B). The cosine the caller passes is meant to be the one of A turned by the hashes' best orientation
(`best_orientation`) against B, which for an upright pair is the cosine of the two stored embeddings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from comparimg import matching
from comparimg.model import ABSENT, CONTENT_SLOT, ORIENTATION_STEPS, Fingerprint
from comparimg.model import Verdict as PixelVerdict

HASH_BITS = 64
WINDOW_AGREE = 10  # bits: a window slot "agrees" within this distance (the default matching threshold)
FINE_SIDE = 256  # the pixel check compares at this long side at most (hashing.verification.FINE_SIDE)
MIN_FINE_SIDE = 96

FEATURE_NAMES: tuple[str, ...] = (
    "global_distance",  # best Hamming distance of the global hashes over the 8 orientations (0-64)
    "upright_distance",  # the same without turning (0-64)
    "turned",  # 1 when the best orientation is not the identity
    "window_distance",  # best distance of any window rule (crop either way, both trimmed), 64 if none
    "window_agreeing",  # share of window slots present in both that agree in the best orientation
    "border_a",  # 1 when A has a uniform border (its content slot is filled)
    "border_b",
    "aspect_change",  # |log(aspect A turned / aspect B)|
    "area_change",  # |log(pixels A / pixels B)|
    "small_side",  # log2 of the smaller picture's short side
    "cosine",  # embedding cosine (0 when not computed)
    "cosine_missing",
    "pixel_score",  # share of agreeing detail blocks (0 when not computed)
    "pixel_matched",  # the pixel check's own decision (score >= its threshold)
    "pixel_same_frame",  # it matched with B stretched onto A's frame (no crop, no shift)
    "pixel_scale_change",  # |log(scale of B onto A)|, both at the same long side: 0 for a plain resize
    "pixel_cover_min",  # share of the less covered picture that the other covers once aligned
    "pixel_cover_max",  # ... of the more covered one (1 for a crop: it lies wholly in its original)
    "pixel_missing",
)
FEATURE_COUNT = len(FEATURE_NAMES)
INDEX = {name: position for position, name in enumerate(FEATURE_NAMES)}
CHEAP_FEATURES = FEATURE_NAMES[: INDEX["cosine"]]
EMBEDDING_FEATURES = ("cosine", "cosine_missing")
PIXEL_FEATURES = FEATURE_NAMES[INDEX["pixel_score"] :]


def _distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.asarray(first, dtype=np.uint64) ^ np.asarray(second, dtype=np.uint64))


def global_distances(a: Fingerprint, b: Fingerprint) -> np.ndarray:
    """Given two fingerprints, return the Hamming distance of A's global hash turned by each orientation it
    has (all 8, or only the identity for an old fingerprint) to B's upright global hash."""
    return _distances(np.array(a.phash, dtype=np.uint64), np.uint64(b.phash[0])).astype(np.int64)


def best_orientation(a: Fingerprint, b: Fingerprint) -> int:
    """Given two fingerprints, return the orientation that turns A into the closest hash of B (the first
    one on ties, so the identity wins over a symmetric picture's turns)."""
    return int(np.argmin(global_distances(a, b)))


def window_evidence(a: Fingerprint, b: Fingerprint, orientation: int) -> tuple[int, float]:
    """Given two fingerprints and the orientation turning A into B, return (the best distance of any
    window rule over all orientations, as the matching room compares them; the share of window slots
    present in both that agree within WINDOW_AGREE bits in `orientation`). Without windows: (64, 0.0)."""
    if not a.windows or not b.windows:
        return HASH_BITS, 0.0
    turned_a = matching.window_orientations(a.windows)
    upright_b = matching.window_orientations(b.windows)[0]
    present_b = upright_b != ABSENT
    best = HASH_BITS
    for k, windows_a in turned_a.items():
        present_a = windows_a != ABSENT
        if not (k < len(a.phash)):
            continue
        # A whole in a window of B (A is a crop of B) and a window of A whole in B (B a crop of A)
        candidates = [
            _distances(np.uint64(a.phash[k]), upright_b[present_b]),
            _distances(windows_a[present_a], np.uint64(b.phash[0])),
        ]
        slots = np.array(matching.SLOT_AFTER_TURN[k])
        both = present_a & present_b[slots]
        candidates.append(_distances(windows_a[both], upright_b[slots[both]]))
        best = min([best, *(int(c.min()) for c in candidates if c.size)])
    agreeing = 0.0
    if orientation in turned_a:
        windows_a = turned_a[orientation]
        slots = np.array(matching.SLOT_AFTER_TURN[orientation])
        both = (windows_a != ABSENT) & present_b[slots]
        if both.any():
            agreeing = float(np.mean(_distances(windows_a[both], upright_b[slots[both]]) <= WINDOW_AGREE))
    return best, agreeing


def _has_border(fingerprint: Fingerprint) -> float:
    windows = fingerprint.windows
    return float(len(windows) > CONTENT_SLOT and windows[CONTENT_SLOT] != ABSENT)


def _turned_size(fingerprint: Fingerprint, orientation: int) -> tuple[int, int]:
    transpose = ORIENTATION_STEPS[orientation][0]
    width, height = max(1, fingerprint.width), max(1, fingerprint.height)
    return (height, width) if transpose else (width, height)


def _fine_shape(size: tuple[int, int], side: int) -> tuple[float, float]:
    width, height = size
    scale = side / max(width, height)
    return height * scale, width * scale


def pixel_cover(
    a_size: tuple[int, int], b_size: tuple[int, int], pixels: PixelVerdict
) -> tuple[float, float]:
    """Given A's (width, height) once turned, B's, and the pixel check's Verdict (B's scale and offset in
    A's fine grid), return (the smaller, the larger) share of either picture's area that the other covers.
    The fine grid is rebuilt as the check makes it (both pictures at the same long side); a check that
    matched after removing borders is placed approximately, which only blurs the feature."""
    side = int(np.clip(min(max(a_size), max(b_size), FINE_SIDE), MIN_FINE_SIDE, FINE_SIDE))
    height_a, width_a = _fine_shape(a_size, side)
    height_b, width_b = _fine_shape(b_size, side)
    scale = pixels.scale if pixels.scale > 0 else 1.0
    dy, dx = pixels.offset
    if pixels.reason == "same frame":  # B stretched onto A's frame: each covers the other
        return 1.0, 1.0
    rows = min(height_a, dy + scale * height_b) - max(0.0, dy)
    columns = min(width_a, dx + scale * width_b) - max(0.0, dx)
    overlap = max(0.0, rows) * max(0.0, columns)
    shares = (overlap / (height_a * width_a), overlap / (scale * scale * height_b * width_b))
    low, high = (float(np.clip(share, 0.0, 1.0)) for share in sorted(shares))
    return low, high


def pair_features(
    a: Fingerprint,
    b: Fingerprint,
    cosine: float | None = None,
    pixels: PixelVerdict | None = None,
    orientation: int | None = None,
) -> np.ndarray:
    """Given the fingerprints of files A and B, optionally the cosine of their embeddings and the pixel
    check's Verdict (for A turned by `orientation` against B), and the orientation the candidate was found
    with (default: the best one of the global hashes), return the float64 feature vector laid out as
    FEATURE_NAMES. Raise ValueError for a fingerprint without a perceptual hash or a cosine that is not a
    finite number in [-1, 1] (with a little rounding slack)."""
    if not a.phash or not b.phash:
        raise ValueError("both fingerprints need a perceptual hash")
    distances = global_distances(a, b)
    if orientation is None:
        orientation = int(np.argmin(distances))
    if not 0 <= orientation < len(ORIENTATION_STEPS):
        raise ValueError(f"orientation must be 0-7, got {orientation}")
    window_distance, window_agreeing = window_evidence(a, b, orientation)
    a_size, b_size = _turned_size(a, orientation), _turned_size(b, 0)
    values = {
        "global_distance": float(distances.min()),
        "upright_distance": float(distances[0]),
        "turned": float(orientation != 0),
        "window_distance": float(window_distance),
        "window_agreeing": window_agreeing,
        "border_a": _has_border(a),
        "border_b": _has_border(b),
        "aspect_change": abs(math.log((a_size[0] / a_size[1]) / (b_size[0] / b_size[1]))),
        "area_change": abs(math.log((a_size[0] * a_size[1]) / (b_size[0] * b_size[1]))),
        "small_side": math.log2(min(*a_size, *b_size)),
    }
    values.update(_cosine_features(cosine))
    values.update(_pixel_features(a_size, b_size, pixels))
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)


def _cosine_features(cosine: float | None) -> dict[str, float]:
    if cosine is None:
        return {"cosine": 0.0, "cosine_missing": 1.0}
    if not math.isfinite(cosine) or abs(cosine) > 1.0 + 1e-3:
        raise ValueError(f"an embedding cosine lies in [-1, 1], got {cosine!r}")
    return {"cosine": float(np.clip(cosine, -1.0, 1.0)), "cosine_missing": 0.0}


def _pixel_features(
    a_size: tuple[int, int], b_size: tuple[int, int], pixels: PixelVerdict | None
) -> dict[str, float]:
    if pixels is None:
        return {name: 0.0 for name in PIXEL_FEATURES} | {"pixel_missing": 1.0}
    # The check's scale maps B onto A with both at the same long side: 1 for a plain resize, the crop's
    # share for a crop, anything for pictures that only share some texture.
    scale = pixels.scale if pixels.scale > 0 else 1.0
    aligned = pixels.matched or pixels.score > 0
    cover_min, cover_max = pixel_cover(a_size, b_size, pixels) if aligned else (0.0, 0.0)
    return {
        "pixel_score": float(np.clip(pixels.score, 0.0, 1.0)),
        "pixel_matched": float(pixels.matched),
        "pixel_same_frame": float(pixels.reason == "same frame"),
        "pixel_scale_change": abs(math.log(scale)),
        "pixel_cover_min": cover_min,
        "pixel_cover_max": cover_max,
        "pixel_missing": 0.0,
    }


def mask_features(rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Given feature rows (n, FEATURE_COUNT) and the names of a stage's features (EMBEDDING_FEATURES or
    PIXEL_FEATURES), return a copy with that stage marked "not computed", as pair_features would have
    made it: how one model is judged (and trained) on the cheaper stages."""
    masked = np.array(rows, dtype=np.float64, copy=True)
    for name in names:
        masked[:, INDEX[name]] = 1.0 if name.endswith("_missing") else 0.0
    return masked
