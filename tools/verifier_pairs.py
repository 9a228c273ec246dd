"""Labelled pairs for the learned verifier, made from photos that Python packages ship, and their features.

Used by tools/train_verifier.py (training and validation pairs) and tests/test_verdicts.py (pairs from
photos held out of training). Only photos from scikit-image, scikit-learn, matplotlib and Pillow's
`Tests/images` (fetched by the training tool, never at run time) are used; every edit is made here.

A pair is (kind, label, picture A, picture B, how B is saved): `duplicate` for the claimed and realistic
edits, `similar` for another shot of the same scene (overlapping crops sharing < 50 %, synthetic bursts,
consecutive frames, stereo pairs of Pillow's MPO files), `different` for other photos (the hardest by hash
among them) and dark or flat pictures that share only the same frame.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

WORK_SIDE = 640  # photos are reduced to this long side: the features do not need more, time does
# scikit-image photos the training tool never uses: tests judge pairs made from them
TEST_PHOTOS = ("ski_coffee", "ski_rocket", "ski_clock", "ski_moon")
SKIMAGE_PHOTOS = (
    "astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "moon", "page", "text", "coins", "brick", "grass", "gravel", "cell", "clock", "retina",
)  # fmt: skip
# Pillow's Tests/images: the distinct photographs (the rest are drawings, test patterns or copies of these)
PILLOW_PHOTOS = (
    "flower.jpg", "flower2.jpg", "frozenpond.mpo", "fujifilm.mpo", "sugarshack.mpo",
    "exif_gps_typeerror.jpg", "junk_jpeg_header.jpg", "iptc.jpg", "xmp_test.jpg", "icc_profile_big.jpg",
    "exif-72dpi-int.jpg", "app13-multiple.jpg",
)  # fmt: skip

DUPLICATE_EDITS = (
    "resize_half", "resize_small", "jpeg_50", "webp", "brightness_up", "brightness_down", "contrast",
    "gamma", "grayscale", "flip_h", "flip_v", "rot90", "rot180", "rot270", "crop_5", "crop_10",
    "crop_one_side", "border", "caption", "watermark", "combined",
    # realistic edits beyond the claimed ones
    "square_crop", "straighten", "perspective", "screenshot", "sticker", "meme", "dark_white_frame",
    "flat_black_frame",
)  # fmt: skip
SIMILAR_EDITS = ("overlap_crops", "burst", "burst_zoom", "next_frame", "stereo")
DIFFERENT_KINDS = ("other_photo", "nearest_photo", "dark_framed_pair", "flat_framed_pair", "quadrants")
HARD_KINDS = ("framed_copy",)  # plus more bursts, frames and framed pairs of different pictures


@dataclass(frozen=True, slots=True)
class PairPictures:
    """Two pictures and what relates them; B is saved as `b_format` (with `b_quality` for JPEG/WebP)."""

    source: str  # the photo they come from (the first one, for different photos): splits go by this
    kind: str
    label: str  # duplicate | similar | different
    a: Image.Image
    b: Image.Image
    b_format: str = "PNG"
    b_quality: int = 90


def _rgb(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = (255 * (array - low) / max(1e-9, high - low)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, -1)
    return Image.fromarray(array[..., :3])


def _reduced(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image).convert("RGB")
    if max(image.size) > WORK_SIDE:
        scale = WORK_SIDE / max(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
    return image


def load_photos(pillow_images: str | Path | None) -> dict[str, list[Image.Image]]:
    """Given the folder of Pillow's Tests/images (or None to leave them out), return {photo name: [frames]}
    (one frame, two for a stereo MPO file), each reduced to WORK_SIDE. Raise FileNotFoundError when a
    listed Pillow photo is missing."""
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    photos = {f"ski_{name}": [_reduced(_rgb(getattr(data, name)()))] for name in SKIMAGE_PHOTOS}
    samples = load_sample_images()
    for filename, array in zip(samples.filenames, samples.images, strict=True):
        photos["skl_" + Path(filename).stem] = [_reduced(_rgb(array))]
    import matplotlib

    hopper = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    photos["mpl_grace_hopper"] = [_reduced(Image.open(hopper))]
    if pillow_images is not None:
        for filename in PILLOW_PHOTOS:
            with Image.open(Path(pillow_images, filename)) as image:
                frames = []
                for frame in range(getattr(image, "n_frames", 1)):
                    image.seek(frame)
                    frames.append(_reduced(image.copy()))
            photos["pil_" + Path(filename).stem] = frames
    return photos


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    return ImageFont.truetype(path, max(8, size))


def _crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    size = (max(16, round(image.width * factor)), max(16, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _caption(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    bar = max(12, round(image.height * rng.uniform(0.08, 0.14)))
    canvas = Image.new("RGB", (image.width, image.height + bar), (255, 255, 255))
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((6, image.height + bar // 6), "Holiday 2019, day 3", font=_font(bar * 2 // 3),
                                fill=(0, 0, 0))  # fmt: skip
    return canvas


def _watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(10, base.width // 8)
    x, y = rng.uniform(0.05, 0.4) * base.width, rng.uniform(0.2, 0.7) * base.height
    draw.text((x, y), "PREVIEW", font=_font(size), fill=(255, 255, 255, 120), stroke_width=2,
              stroke_fill=(0, 0, 0, 120))  # fmt: skip
    return Image.alpha_composite(base, layer).convert("RGB")


def _straighten(image: Image.Image, degrees: float) -> Image.Image:
    turned = image.rotate(degrees, Image.Resampling.BICUBIC, expand=False)
    radians = np.radians(abs(degrees))
    w, h = image.size  # the largest centred box without the corners the turn brought in
    keep = 1.0 / (np.cos(radians) + np.sin(radians) * max(w / h, h / w))
    return _crop(turned, *(0.5 * (1 - keep),) * 4)


def _perspective(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    tilt = rng.uniform(0.05, 0.12)
    if rng.random() < 0.5:  # the top further away: its corners come closer together
        corners = [(tilt * w, 0), (w - tilt * w, 0), (w, h), (0, h)]
    else:
        corners = [(0, tilt * h), (w, 0), (w, h), (0, h - tilt * h)]
    target = [(0, 0), (w, 0), (w, h), (0, h)]
    coefficients = _perspective_coefficients(target, corners)
    return image.transform((w, h), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)


def _perspective_coefficients(target: list, source: list) -> list[float]:
    # the 8 coefficients mapping output (target) corners to input (source) corners
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(values, float)).tolist()


def _screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    shown = _scaled(image, rng.uniform(0.6, 0.9))
    bar, side = 28, round(shown.width * rng.uniform(0.08, 0.25))
    canvas = Image.new("RGB", (shown.width + side + 12, shown.height + bar + 40), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, bar), fill=(60, 63, 70))
    draw.text((10, 6), "IMG_2041.JPG - Photos", font=_font(13), fill=(255, 255, 255))
    for k in range(3):
        draw.ellipse((canvas.width - 22 - 20 * k, 8, canvas.width - 10 - 20 * k, 20), fill=(200, 90, 80))
    draw.rectangle((0, bar, side, canvas.height), fill=(250, 250, 250))
    for k in range(6):
        draw.text((8, bar + 12 + 22 * k), f"Album {k + 1}", font=_font(11), fill=(40, 40, 40))
    canvas.paste(shown, (side + 6, bar + 6))
    draw.text((side + 10, bar + shown.height + 14), "1 of 12   zoom 100%", font=_font(12), fill=(90, 90, 90))
    return canvas


def _sticker(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for _ in range(int(rng.integers(1, 3))):
        radius = round(min(image.size) * rng.uniform(0.08, 0.14))
        x, y = rng.uniform(radius, image.width - radius), rng.uniform(radius, image.height - radius)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=(255, 204, 0), outline=(0, 0, 0), width=3
        )
        eye = radius // 4
        draw.ellipse((x - 2 * eye, y - 2 * eye, x - eye, y - eye), fill=(0, 0, 0))
        draw.ellipse((x + eye, y - 2 * eye, x + 2 * eye, y - eye), fill=(0, 0, 0))
        draw.arc((x - 2 * eye, y - eye, x + 2 * eye, y + 2 * eye), 20, 160, fill=(0, 0, 0), width=3)
    return out


def _meme(image: Image.Image) -> Image.Image:
    out = image.copy()
    draw = ImageDraw.Draw(out)
    font = _font(image.height // 9)
    for text, y in (("WHEN THE SCAN", image.height * 0.03), ("FINDS EVERY COPY", image.height * 0.84)):
        width = draw.textlength(text, font=font)
        draw.text(((image.width - width) / 2, y), text, font=font, fill=(255, 255, 255), stroke_width=3,
                  stroke_fill=(0, 0, 0))  # fmt: skip
    return out


def dark(image: Image.Image) -> Image.Image:
    """Given a photo, return a dark, nearly flat version of it (a night shot, an underexposed scan)."""
    return image.filter(ImageFilter.GaussianBlur(1.5)).point(lambda value: round(value * 0.16))


def flat(image: Image.Image) -> Image.Image:
    """Given a photo, return a flat, low-detail version of it (fog, a blurred background, flat art)."""
    return ImageEnhance.Contrast(image.filter(ImageFilter.GaussianBlur(6))).enhance(0.35)


def _frame(image: Image.Image, colour: tuple[int, int, int], fraction: float = 0.05) -> Image.Image:
    return ImageOps.expand(image, border=max(2, round(min(image.size) * fraction)), fill=colour)


def _shot(image: Image.Image, box: tuple[float, float, float, float], exposure: float,
          rng: np.random.Generator, moved: bool) -> Image.Image:  # fmt: skip
    """One synthetic shot of the scene: the box (fractions) of the photo, an exposure, sensor noise, and
    (when `moved`) a subject that moved: a patch shifted within the frame."""
    w, h = image.size
    shot = image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))
    shot = ImageEnhance.Brightness(shot).enhance(exposure)
    if moved:
        pw, ph = shot.width // 4, shot.height // 4
        x, y = int(rng.integers(0, shot.width - pw)), int(rng.integers(0, shot.height - ph))
        patch = shot.crop((x, y, x + pw, y + ph))
        dx, dy = int(rng.integers(-pw // 3, pw // 3 + 1)), int(rng.integers(-ph // 3, ph // 3 + 1))
        shot.paste(
            patch, (int(np.clip(x + dx, 0, shot.width - pw)), int(np.clip(y + dy, 0, shot.height - ph)))
        )
    noisy = np.asarray(shot, dtype=np.float32) + rng.normal(0, 3.0, (shot.height, shot.width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def duplicate_pair(name: str, image: Image.Image, edit: str, rng: np.random.Generator) -> PairPictures:
    """Given a photo's name, the photo, one of DUPLICATE_EDITS and a random generator, return the pair
    (the photo, its edited copy); for the framed edits the dark or flat photo and its framed copy."""
    a, b_format, quality = image, "PNG", 90
    u = rng.uniform
    edits = {
        "resize_half": lambda: _scaled(a, 0.5),
        "resize_small": lambda: _scaled(a, u(0.2, 0.35)),
        "jpeg_50": lambda: a,
        "webp": lambda: _scaled(a, u(0.6, 0.9)),
        "brightness_up": lambda: ImageEnhance.Brightness(a).enhance(u(1.12, 1.2)),
        "brightness_down": lambda: ImageEnhance.Brightness(a).enhance(u(0.8, 0.88)),
        "contrast": lambda: ImageEnhance.Contrast(a).enhance(u(0.7, 1.4)),
        "gamma": lambda: _gamma(a, u(0.6, 1.6)),
        "grayscale": lambda: a.convert("L"),
        "flip_h": lambda: a.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "flip_v": lambda: a.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        "rot90": lambda: a.transpose(Image.Transpose.ROTATE_90),
        "rot180": lambda: a.transpose(Image.Transpose.ROTATE_180),
        "rot270": lambda: a.transpose(Image.Transpose.ROTATE_270),
        "crop_5": lambda: _crop(a, *u(0.0, 0.05, 4)),
        "crop_10": lambda: _crop(a, *u(0.03, 0.10, 4)),
        "crop_one_side": lambda: _crop(a, *np.roll([u(0.05, 0.10), 0, 0, 0], int(rng.integers(4)))),
        "border": lambda: _frame(a, tuple(int(c) for c in rng.integers(0, 256, 3)), u(0.03, 0.08)),
        "caption": lambda: _caption(a, rng),
        "watermark": lambda: _watermark(a, rng),
        "combined": lambda: ImageEnhance.Brightness(_scaled(_crop(a, *u(0, 0.06, 4)), u(0.5, 0.8))).enhance(
            u(0.85, 1.15)
        ),
        "square_crop": lambda: _square(a, rng),
        "straighten": lambda: _straighten(a, float(u(2.0, 3.0) * rng.choice([-1, 1]))),
        "perspective": lambda: _perspective(a, rng),
        "screenshot": lambda: _screenshot(a, rng),
        "sticker": lambda: _sticker(a, rng),
        "meme": lambda: _meme(a),
    }
    if edit == "dark_white_frame":
        a = dark(image)
        return PairPictures(name, edit, "duplicate", a, _frame(a, (255, 255, 255)))
    if edit == "flat_black_frame":
        a = flat(image)
        return PairPictures(name, edit, "duplicate", a, _frame(a, (0, 0, 0)))
    b = edits[edit]()
    if edit in ("jpeg_50", "combined"):
        b_format, quality = "JPEG", 50 if edit == "jpeg_50" else int(rng.integers(60, 85))
    elif edit == "webp":
        b_format, quality = "WEBP", int(rng.integers(60, 90))
    elif edit in ("screenshot", "meme", "sticker"):
        b_format, quality = "JPEG", 85
    return PairPictures(name, edit, "duplicate", a, b, b_format, quality)


def _gamma(image: Image.Image, gamma: float) -> Image.Image:
    return image.point(lambda value: round(255 * (value / 255) ** gamma))


def _square(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = min(image.size)
    x = round(rng.uniform(0.3, 0.7) * (image.width - side))
    y = round(rng.uniform(0.3, 0.7) * (image.height - side))
    return image.crop((x, y, x + side, y + side))


def similar_pairs(name: str, frames: list[Image.Image], rng: np.random.Generator) -> Iterator[PairPictures]:
    """Given a photo's name, its frames and a random generator, yield pairs of one scene, another shot."""
    image = frames[0]
    u = rng.uniform
    share = u(0.55, 0.7)  # each crop keeps this share of the width: they share 2 * share - 1 < 50 % of it
    if image.width >= image.height:
        first, second = (0, 0, 1 - share, 0), (1 - share, 0, 0, 0)
    else:
        first, second = (0, 0, 0, 1 - share), (0, 1 - share, 0, 0)
    yield PairPictures(name, "overlap_crops", "similar", _crop(image, *first), _crop(image, *second))
    for kind, shift, zoom in (("burst", 0.03, 0.0), ("burst_zoom", 0.02, 0.06), ("next_frame", 0.07, 0.0)):
        margin = shift + zoom + 0.02
        boxes = []
        for step in (0, 1):
            inset = margin - (zoom if step else 0.0)
            dx, dy = (u(-shift, shift), u(-shift, shift)) if step else (0.0, 0.0)
            boxes.append((inset + dx, inset + dy, 1 - inset + dx, 1 - inset + dy))
        boxes = [tuple(float(np.clip(v, 0, 1)) for v in box) for box in boxes]
        a = _shot(image, boxes[0], u(0.9, 1.1), rng, moved=False)
        b = _shot(image, boxes[1], u(0.8, 1.2), rng, moved=True)
        yield PairPictures(name, kind, "similar", a, b, "JPEG", 90)
    if len(frames) > 1:
        yield PairPictures(name, "stereo", "similar", frames[0], frames[1], "JPEG", 92)


def different_pairs(name: str, image: Image.Image, others: dict[str, Image.Image], nearest: list[str],
                    rng: np.random.Generator) -> Iterator[PairPictures]:  # fmt: skip
    """Given a photo, the other photos of its split (by name), the names of those nearest to it by hash,
    and a random generator, yield pairs of different pictures."""
    names = sorted(others)
    for other in rng.choice(names, size=min(2, len(names)), replace=False):
        yield PairPictures(name, "other_photo", "different", image, others[other])
    for other in nearest[:2]:
        yield PairPictures(name, "nearest_photo", "different", image, others[other])
    for other in rng.choice(names, size=min(2, len(names)), replace=False):
        white = _frame(dark(image), (255, 255, 255)), _frame(dark(others[other]), (255, 255, 255))
        yield PairPictures(name, "dark_framed_pair", "different", *white)
        black = _frame(flat(image), (0, 0, 0)), _frame(flat(others[other]), (0, 0, 0))
        yield PairPictures(name, "flat_framed_pair", "different", *black)
    if min(image.size) >= 300:
        yield PairPictures(
            name, "quadrants", "different", _crop(image, 0, 0, 0.5, 0.5), _crop(image, 0.5, 0.5, 0, 0)
        )


def photo_pairs(name: str, frames: list[Image.Image], others: dict[str, Image.Image], nearest: list[str],
                seed: int) -> list[PairPictures]:  # fmt: skip
    """Given a photo's name and frames, the other photos of its split, those nearest by hash and a seed,
    return every labelled pair made from it (deterministic for a seed)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    pairs = [duplicate_pair(name, frames[0], edit, rng) for edit in DUPLICATE_EDITS]
    pairs += similar_pairs(name, frames, rng)
    pairs += different_pairs(name, frames[0], others, nearest, rng)
    return pairs


def hard_pairs(
    name: str, frames: list[Image.Image], others: dict[str, Image.Image], seed: int
) -> list[PairPictures]:
    """Given a photo's name and frames, the other photos of its split and a seed, return more of the pairs
    that are hard to tell apart: other shots of the scene, dark or flat pictures that share only a frame
    (white or black: different), and copies of a framed dark or flat picture (duplicate), so that sharing
    a frame decides nothing either way."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 1])
    pairs = [p for p in similar_pairs(name, frames, rng) if p.kind in ("burst", "burst_zoom", "next_frame")]
    image = frames[0]
    for other in rng.choice(sorted(others), size=min(2, len(others)), replace=False):
        for make, colour in ((dark, (0, 0, 0)), (flat, (255, 255, 255))):
            kind = "dark_framed_pair" if make is dark else "flat_framed_pair"
            pair = _frame(make(image), colour, 0.04), _frame(make(others[other]), colour, 0.04)
            pairs.append(PairPictures(name, kind, "different", *pair))
    for make, colour in ((dark, (255, 255, 255)), (flat, (0, 0, 0))):
        framed = _frame(make(image), colour, rng.uniform(0.03, 0.07))
        copy = _scaled(framed, rng.uniform(0.5, 0.9))
        pairs.append(
            PairPictures(name, "framed_copy", "duplicate", framed, copy, "JPEG", int(rng.integers(60, 90)))
        )
    return pairs


def encoded(image: Image.Image, image_format: str, quality: int) -> bytes:
    """Given a picture and a format (PNG, JPEG, WEBP), return the file's bytes."""
    buffer = io.BytesIO()
    if image_format in ("JPEG", "WEBP"):
        image.save(buffer, image_format, quality=quality)
    else:
        image.save(buffer, image_format)
    return buffer.getvalue()


def turned_rgb(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Given RGB pixels (H, W, 3) and an orientation id (model.ORIENTATIONS), return them turned so."""
    from comparimg.model import ORIENTATION_STEPS

    transpose, reverse_rows, reverse_columns = ORIENTATION_STEPS[orientation]
    turned = pixels.swapaxes(0, 1) if transpose else pixels
    if reverse_rows:
        turned = turned[::-1]
    if reverse_columns:
        turned = turned[:, ::-1]
    return np.ascontiguousarray(turned)


def file_embedding(embedder, path: str, orientation: int = 0) -> np.ndarray:
    """Given a loaded Embedder, an image file and an orientation, return the embedding of the picture
    (EXIF orientation applied) turned by that orientation."""
    from comparimg.hashing.embedder_input import embed_picture

    with Image.open(path) as image:
        image.draft("RGB", (448, 448))
        picture = ImageOps.exif_transpose(image).convert("RGB")
    picture.thumbnail((448, 448), Image.Resampling.BILINEAR)
    return embed_picture(embedder, turned_rgb(np.asarray(picture), orientation))


def measure_pair(pair: PairPictures, folder: str, embedder, swap: bool, tag: str) -> np.ndarray:
    """Given a pair, a scratch folder, a loaded Embedder, whether to present B first and a unique tag,
    write both files, fingerprint them, run the pixel check on the hashes' best orientation and the
    embedding cosine in that orientation, and return verdicts.pair_features of the pair (all computed)."""
    from comparimg import hashing
    from comparimg.model import Candidate
    from comparimg.verdicts.features import global_distances, pair_features

    files = [(pair.a, "PNG", 90, "png"), (pair.b, pair.b_format, pair.b_quality, pair.b_format.lower())]
    if swap:
        files.reverse()
    paths = []
    for k, (image, image_format, quality, extension) in enumerate(files):
        path = os.path.join(folder, f"{tag}_{k}.{extension}")
        Path(path).write_bytes(encoded(image, image_format, quality))
        paths.append(path)
    try:
        first, second = (hashing.fingerprint_file(path) for path in paths)
        distances = global_distances(first, second)
        orientation = int(np.argmin(distances))
        candidate = Candidate(1, int(distances[orientation]), orientation)
        pixels = hashing.verify_pair(paths[0], paths[1], candidate)
        cosine = float(
            np.dot(file_embedding(embedder, paths[0], orientation), file_embedding(embedder, paths[1]))
        )
        return pair_features(first, second, cosine, pixels, orientation)
    finally:
        for path in paths:
            os.unlink(path)


_WORKER: dict = {}


def _start_worker(folder: str) -> None:
    from comparimg.embedding import Embedder

    _WORKER["embedder"] = Embedder.load()
    _WORKER["folder"] = folder


def _measure_task(task: tuple) -> np.ndarray:
    index, pair, swap = task
    return measure_pair(pair, _WORKER["folder"], _WORKER["embedder"], swap, f"p{os.getpid()}_{index}")


def measure_pairs(pairs: list[PairPictures], folder: str, processes: int = 1, seed: int = 0) -> np.ndarray:
    """Given pairs, a scratch folder and a number of processes, return their feature rows (n, features),
    in order; which file of a pair comes first is drawn from `seed` (the verifier must not care)."""
    rng = np.random.default_rng(seed)
    tasks = [(k, pair, bool(rng.random() < 0.5)) for k, pair in enumerate(pairs)]
    if processes <= 1:
        _start_worker(folder)
        return np.array([_measure_task(task) for task in tasks])
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes, _start_worker, (folder,)) as pool:
        return np.array(pool.map(_measure_task, tasks, chunksize=4))
