"""The numpy filters of the hashing room give what scipy.ndimage gives (scipy stays a test reference only)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import fft, ndimage

from comparimg.hashing import filters


@pytest.fixture
def pictures_of_every_shape():
    rng = np.random.default_rng(5)
    shapes = [(256, 192), (64, 85), (97, 128), (9, 14)]
    return [(rng.random(shape) * 255).astype(np.float32) for shape in shapes]


@pytest.mark.parametrize("sigma", [0.7, 1.0, 3.0])
def test_gaussian_equals_scipy_with_reflected_borders(pictures_of_every_shape, sigma):
    for pixels in pictures_of_every_shape:
        filtered = filters.gaussian(pixels, sigma)
        assert filtered.dtype == np.float32 and filtered.shape == pixels.shape
        assert np.abs(filtered - ndimage.gaussian_filter(pixels, sigma)).max() < 1e-4


def test_band_pass_is_the_difference_of_two_gaussians(pictures_of_every_shape):
    for pixels in pictures_of_every_shape:
        expected = ndimage.gaussian_filter(pixels, 1.0) - ndimage.gaussian_filter(pixels, 3.0)
        assert np.abs(filters.band_pass(pixels, 1.0, 3.0) - expected).max() < 1e-4


def test_erode_equals_binary_erosion_with_an_empty_outside():
    rng = np.random.default_rng(6)
    for _ in range(50):
        mask = rng.random(int(rng.integers(1, 40))) > 0.2
        for times in (1, 2, 3):
            assert np.array_equal(filters.erode(mask, times), ndimage.binary_erosion(mask, iterations=times))


def test_fast_fft_length_is_the_next_5_smooth_length():
    for n in [*range(1, 300), 1000, 4097, 10007]:
        assert filters.fast_fft_length(n) == fft.next_fast_len(n, real=True)
