"""The cost of one verification of a crop: the case behind most candidates in a camera folder.

Run: pytest -m benchmark tests/benchmarks/test_verification_speed.py -s
Pairs like the camera corpus's: a photo and a crop of it (78-97 % of each side, anywhere) with its
brightness, contrast and noise changed; and, as negatives, the left and right 60 % of one photo.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from PIL import Image

from comparimg.hashing import verify_pair
from comparimg.model import Candidate

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(600)]

LONG_SIDE = 1600
ROUNDS = 3


def edited_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    share_x, share_y = rng.uniform(0.78, 0.97, size=2)
    left = rng.integers(0, round(width * (1 - share_x)) + 1)
    top = rng.integers(0, round(height * (1 - share_y)) + 1)
    crop = np.asarray(image.crop((left, top, left + round(width * share_x), top + round(height * share_y))))
    changed = crop * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20) + rng.normal(0, 4, crop.shape)
    return Image.fromarray(np.clip(changed, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, photos) -> list[tuple[str, str, bool]]:
    folder = tmp_path_factory.mktemp("verification_speed")
    rng = np.random.default_rng(8)
    found = []
    for name, pixels in photos.items():
        image = Image.fromarray(pixels)
        scale = LONG_SIDE / max(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
        image.save(folder / f"{name}.jpg", quality=90)
        for index in range(3):
            edited_crop(image, rng).save(folder / f"{name}_crop{index}.jpg", quality=85)
            found.append((str(folder / f"{name}.jpg"), str(folder / f"{name}_crop{index}.jpg"), True))
        width = image.width
        image.crop((0, 0, width * 6 // 10, image.height)).save(folder / f"{name}_left.jpg", quality=90)
        image.crop((width * 4 // 10, 0, width, image.height)).save(folder / f"{name}_right.jpg", quality=90)
        found.append((str(folder / f"{name}_left.jpg"), str(folder / f"{name}_right.jpg"), False))
    return found


def test_verifying_a_crop_costs_a_few_milliseconds(pairs):
    times, wrong = [], []
    for path_a, path_b, same in pairs:
        verdict = verify_pair(path_a, path_b, Candidate(0, 8, 0))  # decodes both into pictures.CACHE
        if verdict.matched != same:
            wrong.append((path_a, path_b, verdict))
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.perf_counter()
            verify_pair(path_a, path_b, Candidate(0, 8, 0))
            best = min(best, time.perf_counter() - start)
        times.append((best, same))
    crops = [1000 * seconds for seconds, same in times if same]
    negatives = [1000 * seconds for seconds, same in times if not same]
    print(
        f"\nverify_pair (pictures cached): crops median {statistics.median(crops):.1f} ms"
        f" (max {max(crops):.1f}), negatives median {statistics.median(negatives):.1f} ms"
    )
    assert not wrong
    assert statistics.median(crops) < 35  # it was 45-60 ms before the overlap sums came from integral images
