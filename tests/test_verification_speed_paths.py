"""The fast paths of verification give what the plain computations they replace would give."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from comparimg.hashing import verification
from comparimg.hashing.verification import _fill_outside, _Level, _overlap_products, _Placement, _warp


def texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return (ndimage.gaussian_filter(rng.random(shape), 2.0) * 2000 % 255).astype(np.float32)


def direct_ncc(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> float:
    """The NCC of the overlap of B placed with its origin at (dy, dx) in A, computed pixel by pixel."""
    top, bottom = max(0, dy), min(a.shape[0], dy + b.shape[0])
    left, right = max(0, dx), min(a.shape[1], dx + b.shape[1])
    part_a = a[top:bottom, left:right].astype(np.float64)
    part_b = b[top - dy : bottom - dy, left - dx : right - dx].astype(np.float64)
    part_a -= part_a.mean()
    part_b -= part_b.mean()
    count = part_a.size
    denominator = np.sqrt(max(float((part_a * part_a).sum() * (part_b * part_b).sum()), 1e-6 * count * count))
    return float((part_a * part_b).sum() / denominator)


def best_direct(level: _Level, scale: float, dys: np.ndarray, dxs: np.ndarray) -> tuple[float, int, int]:
    b = verification._scaled(level.b_image, scale * level.factor / level.b_factor)
    dys = dys[verification._cover_ok(dys, level.a.shape[0], b.shape[0])]
    dxs = dxs[verification._cover_ok(dxs, level.a.shape[1], b.shape[1])]
    return max((direct_ncc(level.a, b, int(dy), int(dx)), int(dy), int(dx)) for dy in dys for dx in dxs)


@pytest.fixture(scope="module")
def pictures() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = texture(rng, (150, 200))
    b = np.ascontiguousarray(a[12:140, 20:190]) * 0.8 + 20  # a crop, darker
    return a, b


def test_one_fft_gives_the_overlap_sums_of_products_at_every_searched_offset():
    rng = np.random.default_rng(3)
    a = rng.random((48, 64))
    searches = []
    for height, width in [(34, 50), (48, 64), (60, 80), (40, 88)]:
        b = rng.random((height, width))
        dys = np.arange(1 - height, 48)
        dxs = np.arange(1 - width, 64)
        searches.append(
            (b, dys[verification._cover_ok(dys, 48, height)], dxs[verification._cover_ok(dxs, 64, width)])
        )
    for (b, dys, dxs), products in zip(searches, _overlap_products(a, searches), strict=True):
        direct = [[overlap_sum(a, b, int(dy), int(dx)) for dx in dxs] for dy in dys]
        np.testing.assert_allclose(products, direct, rtol=1e-9, atol=1e-9)


def overlap_sum(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> float:
    top, bottom = max(0, dy), min(a.shape[0], dy + b.shape[0])
    left, right = max(0, dx), min(a.shape[1], dx + b.shape[1])
    return float((a[top:bottom, left:right] * b[top - dy : bottom - dy, left - dx : right - dx]).sum())


def test_coarse_search_finds_the_placements_of_a_pixel_by_pixel_search(pictures):
    a, b = pictures
    level = _Level(a, b, 64)
    scales = verification._scales(a.shape, b.shape)
    found = {placement.scale: placement for placement in level.place_all(scales)}
    assert len(found) == len(scales)
    for scale in scales:
        ncc, dy, dx = best_direct(level, float(scale), np.arange(-80, 80), np.arange(-80, 80))
        placement = found[float(scale)]
        assert placement.ncc == pytest.approx(ncc, abs=1e-9)
        assert (placement.dy * level.factor, placement.dx * level.factor) == pytest.approx((dy, dx))


@pytest.mark.parametrize("near", [(8.0, 13.0), (-20.0, 0.0), (30.0, 40.0)])
def test_refinement_finds_the_placement_of_a_pixel_by_pixel_search_nearby(pictures, near):
    a, b = pictures
    level = _Level(a, b, 128)
    for scale in (0.99, 1.0, 1.01):
        placement = level.place_near(scale, _Placement(1.0, *near, 0.0))
        centre = np.array(near) * level.factor
        dys, dxs = verification._near_offsets(centre[0]), verification._near_offsets(centre[1])
        ncc, dy, dx = best_direct(level, scale, dys, dxs)
        assert placement.ncc == pytest.approx(ncc, abs=1e-9)
        assert (placement.dy * level.factor, placement.dx * level.factor) == pytest.approx((dy, dx))


def test_the_warp_mask_is_the_eroded_footprint_of_b(pictures):
    a, b = pictures
    placement = _Placement(0.93, -6.4, 11.7, 0.0)
    _, mask = _warp(b, a.shape, placement)
    inverse = 1.0 / placement.scale
    data = (inverse, 0.0, -placement.dx * inverse, 0.0, inverse, -placement.dy * inverse)
    ones = Image.fromarray(np.ones_like(b), mode="F")
    cover = ones.transform((a.shape[1], a.shape[0]), Image.Transform.AFFINE, data, Image.Resampling.NEAREST)
    assert np.array_equal(mask, ndimage.binary_erosion(np.asarray(cover) > 0.5, iterations=2))


@pytest.mark.parametrize("box", [(slice(5, 90), slice(0, 200)), (slice(0, 150), slice(33, 120))])
def test_filling_outside_a_rectangle_copies_the_nearest_valid_pixel(pictures, box):
    a, _ = pictures
    mask = np.zeros(a.shape, dtype=bool)
    mask[box] = True
    nearest = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    assert np.array_equal(_fill_outside(a, mask), a[nearest[0], nearest[1]])
