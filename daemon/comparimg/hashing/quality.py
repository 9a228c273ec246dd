"""How well a picture is taken, from the grayscale picture the fingerprint decoded (numpy only).

Meant for choosing a keeper among shots of one scene (a burst): the sharpest, best exposed one. Both figures
are measured on the fingerprint's decode (short side about 128-500 pixels), so they compare pictures of the
same scene at the same size, not pictures of any size.
"""

from __future__ import annotations

import numpy as np

from comparimg.model import Quality

DARK_LEVEL = 4  # at or below: crushed shadows
BRIGHT_LEVEL = 251  # at or above: blown highlights


def picture_quality(gray: np.ndarray) -> Quality:
    """Given a grayscale uint8 picture (H, W), return its Quality: `sharpness`, the variance of its
    4-neighbour Laplacian (0 for a picture smaller than 3×3), and `exposure` in [0, 1], the share of pixels
    neither crushed (≤ DARK_LEVEL) nor blown (≥ BRIGHT_LEVEL) times 1 - (2·|mean/255 - 0.5|)², so 1 for a
    picture without clipping and a mid-tone mean, 0 for an all-black or all-white one."""
    pixels = np.asarray(gray, dtype=np.float32)
    return Quality(sharpness=_laplacian_variance(pixels), exposure=_exposure(pixels))


def _laplacian_variance(pixels: np.ndarray) -> float:
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    centre = pixels[1:-1, 1:-1]
    laplacian = pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:] - 4 * centre
    values = laplacian.ravel()
    mean = float(values.mean(dtype=np.float64))
    # E[x²] - E[x]² through a dot product: a third of the time of ndarray.var on the fingerprint's picture.
    return max(0.0, float(np.dot(values, values)) / values.size - mean * mean)


def _exposure(pixels: np.ndarray) -> float:
    if pixels.size == 0:
        return 0.0
    clipped = float(np.count_nonzero((pixels <= DARK_LEVEL) | (pixels >= BRIGHT_LEVEL))) / pixels.size
    balance = 1.0 - (2.0 * abs(float(pixels.mean()) / 255.0 - 0.5)) ** 2
    return max(0.0, min(1.0, (1.0 - clipped) * balance))
