"""The few image filters verification needs, in numpy alone (so a worker need not load scipy for them).

Each gives what `scipy.ndimage` gives for the same call, to float32 rounding: Gaussian filters with
reflected borders (`d c b a | a b c d`) and kernels truncated at 4 σ, and the erosion of a 1-D mask whose
outside counts as empty. Gaussians are applied through one FFT of the reflected picture, which also makes a
band-pass (the difference of two Gaussians) cost one filter.
"""

from __future__ import annotations

import bisect
import functools

import numpy as np

TRUNCATE = 4.0  # kernel radius in σ, as scipy.ndimage


def fast_fft_length(n: int) -> int:
    """Given a length, return the smallest length >= it whose only prime factors are 2, 3 and 5."""
    lengths = _smooth_lengths(max(64, 1 << int(n).bit_length()))
    return lengths[bisect.bisect_left(lengths, n)]


@functools.cache
def _smooth_lengths(limit: int) -> list[int]:
    found = []
    power2 = 1
    while power2 <= limit:
        power3 = power2
        while power3 <= limit:
            power5 = power3
            while power5 <= limit:
                found.append(power5)
                power5 *= 5
            power3 *= 3
        power2 *= 2
    return sorted(found)


def gaussian(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Given a 2-D array and σ, return it Gaussian-filtered (as scipy.ndimage.gaussian_filter), float32."""
    return _filtered(pixels, (sigma,))


def band_pass(pixels: np.ndarray, fine_sigma: float, coarse_sigma: float) -> np.ndarray:
    """Given a 2-D array and two σ, return gaussian(fine) - gaussian(coarse): detail between two scales."""
    return _filtered(pixels, (fine_sigma, coarse_sigma))


def erode(mask: np.ndarray, times: int) -> np.ndarray:
    """Given a 1-D boolean array and `times` >= 1, return it eroded `times` times by a 3-wide element,
    outside counting as False (as scipy.ndimage.binary_erosion(mask, iterations=times), which would erode
    until nothing changes for 0)."""
    eroded = np.asarray(mask, dtype=bool).copy()
    for _ in range(times):
        previous = eroded.copy()
        eroded[1:] &= previous[:-1]
        eroded[:-1] &= previous[1:]
        eroded[[0, -1]] = False
    return eroded


def _filtered(pixels: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    # Reflect the picture by the widest kernel's radius, correlate it with the kernel (the first σ's
    # Gaussian minus the second's) by FFT, keep the part that saw no wrap-around.
    height, width = pixels.shape
    radius = _radius(max(sigmas))
    padded = np.pad(np.asarray(pixels, dtype=np.float64), radius, mode="symmetric")
    shape = (fast_fft_length(padded.shape[0]), fast_fft_length(padded.shape[1]))
    spectrum = np.fft.rfft2(padded, shape) * _transfer(shape, sigmas)
    result = np.fft.irfft2(spectrum, shape)
    return result[2 * radius : 2 * radius + height, 2 * radius : 2 * radius + width].astype(np.float32)


@functools.lru_cache(maxsize=8)  # a check filters a few shapes many times; each spectrum is up to ~0.7 MB
def _transfer(shape: tuple[int, int], sigmas: tuple[float, ...]) -> np.ndarray:
    radius = _radius(max(sigmas))
    kernel = np.zeros(shape)
    for sign, sigma in zip((1.0, -1.0), sigmas, strict=False):
        kernel[: 2 * radius + 1, : 2 * radius + 1] += sign * np.outer(*(2 * [_kernel(sigma, radius)]))
    return np.fft.rfft2(kernel)


def _radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)


def _kernel(sigma: float, radius: int) -> np.ndarray:
    # scipy's kernel for σ (its own radius), centred in 2 * radius + 1 taps.
    own = _radius(sigma)
    offsets = np.arange(-own, own + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * offsets**2)
    kernel = np.zeros(2 * radius + 1)
    kernel[radius - own : radius + own + 1] = weights / weights.sum()
    return kernel
