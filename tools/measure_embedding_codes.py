#!/usr/bin/env python3
"""Measure how compact codes of the shipped embedder's vectors estimate cosines (offline; what decided the
method of comparimg.embedding.neighbours, docs/model.md "Searching embeddings").

Usage:  python tools/measure_embedding_codes.py [--pillow-images DIR] [--views N] [--processes N]
                                               [--cache FILE]

1. Training views: each photo tools/verifier_pairs.load_photos gives (scikit-image, scikit-learn,
   matplotlib and the photographs among Pillow's `Tests/images`, from tests/fetch_pillow_images.py's cache),
   without verifier_pairs.TEST_PHOTOS, whole and as --views random views (a crop of 10-100 % of its area,
   flipped or not, other brightness, contrast and colour, sometimes gray or blurred), embedded by the shipped
   model (--cache keeps them).
2. Test pictures: the held-out photos (TEST_PHOTOS) and the training photos, each whole and as 11 copies
   (resized, JPEG q50, cropped 10 %, turned 2.5°, perspective, square crop, white frame, screenshot,
   sticker, meme, caption), plus 300 of Pillow's other test pictures as unrelated ones.
3. Printed: for a PCA projection learned from the views (uncentred, K = 32..256, the cosine taken after
   the projection), the share of each vector's energy kept (training photos against held-out ones) and the
   estimate's error on copies and on unrelated pairs; the same errors for sign codes (SimHash) of 256..1024
   bits; and which copies EmbeddingIndex returns at floors 0.75, 0.7 and 0.65.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(REPO / "tests"))
import verifier_pairs  # noqa: E402

SEED = 12


def training_photos(pillow_images: Path) -> dict[str, Image.Image]:
    """Return {name: picture} of every photo the tools may learn from (first frames; no test photo)."""
    photos = verifier_pairs.load_photos(pillow_images)
    return {name: frames[0] for name, frames in photos.items() if name not in verifier_pairs.TEST_PHOTOS}


def random_view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Given a photo, return a random view of it: a crop of 10-100 % of its area, perhaps flipped, with
    other brightness, contrast and colour, sometimes gray or blurred."""
    width, height = image.size
    area = rng.uniform(0.1, 1.0) * width * height
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    crop_w = int(min(width, max(16, round(np.sqrt(area * aspect)))))
    crop_h = int(min(height, max(16, round(np.sqrt(area / aspect)))))
    left, top = int(rng.integers(0, width - crop_w + 1)), int(rng.integers(0, height - crop_h + 1))
    view = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        view = ImageOps.mirror(view)
    view = ImageEnhance.Brightness(view).enhance(rng.uniform(0.6, 1.4))
    view = ImageEnhance.Contrast(view).enhance(rng.uniform(0.6, 1.4))
    view = ImageEnhance.Color(view).enhance(rng.uniform(0.0, 1.6))
    if rng.random() < 0.1:
        view = view.convert("L").convert("RGB")
    if rng.random() < 0.15:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    return view


def views_of(photos: dict[str, Image.Image], count: int) -> list[np.ndarray]:
    """Given the photos and a number of random views each, return RGB arrays: each photo whole, then its
    views (drawn from SEED)."""
    rng = np.random.default_rng(SEED)
    pictures = []
    for image in photos.values():
        pictures.append(np.asarray(image.convert("RGB")))
        pictures.extend(np.asarray(random_view(image, rng)) for _ in range(count))
    return pictures


_WORKER: dict = {}


def _start_worker() -> None:
    from comparimg.embedding import Embedder

    _WORKER["embedder"] = Embedder.load()


def _embed(pixels: np.ndarray) -> np.ndarray:
    from comparimg.hashing.embedder_input import embed_picture

    return embed_picture(_WORKER["embedder"], pixels)


def embed_all(pictures: list[np.ndarray], processes: int) -> np.ndarray:
    """Given RGB arrays, return their embeddings by the shipped model (n, 1280) float32."""
    with multiprocessing.get_context("spawn").Pool(processes, _start_worker) as pool:
        return np.array(pool.map(_embed, pictures, chunksize=16), dtype=np.float32)


def copies_of(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Given a photo, return its 11 copies (COPY_EDITS order)."""
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=50)
    return [
        verifier_pairs._scaled(image, 0.4),
        Image.open(io.BytesIO(encoded.getvalue())).convert("RGB"),
        verifier_pairs._crop(image, 0.1, 0.1, 0.1, 0.1),
        verifier_pairs._straighten(image, 2.5),
        verifier_pairs._perspective(image, rng),
        verifier_pairs._square(image, rng),
        verifier_pairs._frame(image, (255, 255, 255)),
        verifier_pairs._screenshot(image, rng),
        verifier_pairs._sticker(image, rng),
        verifier_pairs._meme(image),
        verifier_pairs._caption(image, rng),
    ]


COPY_EDITS = (
    "resize 40 %", "JPEG q50", "crop 10 %", "turn 2.5°", "perspective", "square crop", "white frame",
    "screenshot", "sticker", "meme", "caption",
)  # fmt: skip


def test_pictures(pillow_images: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Return the names of the photos, [photo, its copies...] arrays for each, and unrelated pictures."""
    photos = {name: frames[0] for name, frames in verifier_pairs.load_photos(pillow_images).items()}
    import skimage.data

    for name in verifier_pairs.TEST_PHOTOS:
        photos[name] = verifier_pairs._reduced(verifier_pairs._rgb(getattr(skimage.data, name[4:])()))
    rng = np.random.default_rng(SEED)
    groups = [
        [np.asarray(p.convert("RGB")) for p in [image, *copies_of(image, rng)]] for image in photos.values()
    ]
    unrelated = []
    for path in sorted(pillow_images.glob("*.png"))[:300]:
        try:
            with Image.open(path) as image:
                unrelated.append(np.asarray(image.convert("RGBA").convert("RGB")))
        except (OSError, ValueError):
            continue  # Pillow's test folder holds broken files on purpose
    return list(photos), groups, unrelated


def projected_cosine(projection: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa, pb = a @ projection, b @ projection
    return np.sum(pa * pb, -1) / np.linalg.norm(pa, axis=-1) / np.linalg.norm(pb, axis=-1)


def sign_code_cosine(hyperplanes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    differ = np.count_nonzero((a @ hyperplanes > 0) != (b @ hyperplanes > 0), axis=-1)
    return np.cos(np.pi * differ / hyperplanes.shape[1])


def pca_figures(views: np.ndarray, originals, copies, pairs, held: np.ndarray) -> None:
    _, _, vt = np.linalg.svd(views.astype(np.float64), full_matrices=False)
    true_copies = np.sum(originals[:, None] * copies, axis=-1)
    first, second, truth = pairs
    for k in (32, 64, 128, 256):
        projection = vt[:k].T
        kept = np.linalg.norm(originals @ projection, axis=1) ** 2
        copy_error = projected_cosine(projection, originals[:, None], copies) - true_copies
        estimate = projected_cosine(projection, first, second)
        print(
            f"PCA {k:3d}: energy kept, training photos {kept[~held].mean():.2f},"
            f" held-out {kept[held].mean():.2f}; copies' error mean {copy_error.mean():+.3f}"
            f" max {copy_error.max():+.3f}; unrelated pairs' error mean {(estimate - truth).mean():+.3f},"
            f" estimate >= 0.75 for {np.mean(estimate >= 0.75):.1%} (true {np.mean(truth >= 0.75):.1%})"
        )


def sign_code_figures(originals, copies, pairs) -> None:
    true_copies = np.sum(originals[:, None] * copies, axis=-1)
    first, second, truth = pairs
    dimensions = originals.shape[1]
    for bits in (256, 512, 640, 1024):
        gaussian = np.random.default_rng(SEED).standard_normal((dimensions, bits))
        blocks = [np.linalg.qr(gaussian[:, s : s + dimensions])[0] for s in range(0, bits, dimensions)]
        hyperplanes = np.concatenate(blocks, axis=1)
        copy_error = sign_code_cosine(hyperplanes, originals[:, None], copies) - true_copies
        pair_error = sign_code_cosine(hyperplanes, first, second) - truth
        print(
            f"sign codes {bits:4d} bits: copies' error std {copy_error.std():.3f}"
            f" min {copy_error.min():+.3f} max {copy_error.max():+.3f};"
            f" unrelated pairs' error std {pair_error.std():.3f} max |{np.abs(pair_error).max():.3f}|"
        )


def index_figures(names, originals, copies) -> None:
    from comparimg.embedding.neighbours import EmbeddingIndex

    count, edits = copies.shape[:2]
    index = EmbeddingIndex(originals.shape[1])
    ids = np.arange(count * edits).reshape(count, edits)
    index.add_many(ids.ravel(), copies.reshape(count * edits, -1))
    truth = np.sum(originals[:, None] * copies, axis=-1)
    for floor in (0.75, 0.7, 0.65):
        missed = []
        for photo in range(count):
            answer = dict(index.query(originals[photo], k=64, min_cosine=floor))
            missed += [
                f"{names[photo]} {COPY_EDITS[edit]} ({truth[photo, edit]:.3f})"
                for edit in range(edits)
                if truth[photo, edit] >= 0.75 and ids[photo, edit] not in answer
            ]
        print(
            f"EmbeddingIndex floor {floor}: of {np.count_nonzero(truth >= 0.75)} copies at a true cosine"
            f" >= 0.75, missed {len(missed)}: {', '.join(missed) or 'none'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pillow-images", type=Path, default=None, help="Pillow's Tests/images folder")
    parser.add_argument("--views", type=int, default=150, help="random views of each training photo")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="an .npy file keeping the views' embeddings")
    arguments = parser.parse_args()
    pillow_images = arguments.pillow_images or next((REPO / ".cache" / "pillow-tests").glob("*/images"))
    if arguments.cache is not None and arguments.cache.exists():
        views = np.load(arguments.cache, allow_pickle=False)
    else:
        views = embed_all(views_of(training_photos(pillow_images), arguments.views), arguments.processes)
        if arguments.cache is not None:
            np.save(arguments.cache, views, allow_pickle=False)
    names, groups, unrelated_pictures = test_pictures(pillow_images)
    embedded = embed_all(
        [picture for group in groups for picture in group] + unrelated_pictures, arguments.processes
    )
    per_group = len(groups[0])
    grouped = embedded[: len(groups) * per_group].reshape(len(groups), per_group, -1)
    originals, copies = grouped[:, 0], grouped[:, 1:]
    others = np.concatenate([originals, embedded[len(groups) * per_group :]])
    first, second = np.triu_indices(len(others), 1)
    pairs = (others[first], others[second], np.sum(others[first] * others[second], axis=1))
    held = np.isin(names, verifier_pairs.TEST_PHOTOS)
    print(
        f"{len(views)} training views; {len(names)} photos ({held.sum()} held out) with"
        f" {per_group - 1} copies each; {len(first)} pairs of unrelated pictures"
    )
    pca_figures(views, originals, copies, pairs, held)
    sign_code_figures(originals, copies, pairs)
    index_figures(names, originals, copies)


if __name__ == "__main__":
    main()
