#!/usr/bin/env python3
"""Build the stretch-edits benchmark: realistic edits beyond the claimed ones, and "same scene" negatives.

Usage:  python tests/benchmarks/stretch_edits.py OUT_DIR

Writes pictures and OUT_DIR/manifest.tsv with the columns of ../shared/bench/make_corpus.py (path, group,
transform, role), so ../shared/bench/score.py scores it, and three more that score.py ignores:
  subset  `unseen` or `trained` (below);
  scene   the region of a photo the picture was made from: two files of different groups and the same
          scene are a "same scene" pair (another shot of it), of different scenes an unrelated pair;
  kind    what the file is: `orig`, the edit's name, `dark`/`flat` (a dark or flat original), or the kind of
          shot (`overlap_crop`, `burst`, `next_frame`, `stereo`).
Deterministic: same packages, same bytes.

Edits (copies, same group as their original): `square_crop` (1:1, resized, JPEG), `rotate2` and
`rotate3` (2° and 3° the other way, cropped to the turned picture, JPEG), `perspective_v` and
`perspective_h` (keystone tilts), `screenshot` (the picture shown in an image-viewer window, PNG),
`sticker` (two stars and a label stuck on it), `meme` (top and bottom captions), and around dark or flat
pictures (originals of their own, made from a photo region: blurred and darkened to ~8 %, or blurred
and flattened) `dark_white_frame`, `dark_black_frame`, `flat_white_frame`, `flat_black_frame`.
Dark or flat pictures of different regions share the same frames: grouping them is an unrelated pair.

Same-scene negatives (role `negative`, each a group of its own): from a scene region that is not itself
in the corpus, two overlapping crops that share < 50 % of either's area, a burst of three shots (small
shift, exposure change, sensor noise, a patch that moved) and a next frame (a larger pan); and the
other view of scikit-image's stereo motorcycle, a same-scene shot of a duplicate original.

Originals. Subset `unseen`: scikit-image's coffee, rocket, clock and moon (the four photos
tools/verifier_pairs.py holds out of the verifier's training) and its stereo motorcycle (which
tools/verifier_pairs.py never loads), whole or cut into non-overlapping regions. Subset `trained`:
non-overlapping regions of other photos that scikit-image, scikit-learn and matplotlib ship. NOTE: the
learned verifier was trained on edits of these very photos (whole, at 640 px; tools/verifier_pairs.py),
edits of the same kinds as here (made by other code, with other parameters), so its figures on this
subset are optimistic; the test reports the two subsets apart. No wallpapers, documentation packages
or other projects' test images.
"""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the photo


@dataclass(frozen=True)
class Region:
    """A non-overlapping region of a packaged photo and what the corpus makes of it."""

    name: str
    photo: str
    box: Box
    use: str  # "copies": an original with every edit | "scene": shots only | "dark" | "flat"
    subset: str


WHOLE: Box = (0.0, 0.0, 1.0, 1.0)
TOP, BOTTOM = (0.0, 0.0, 1.0, 0.62), (0.0, 0.62, 1.0, 1.0)
UNSEEN_PHOTOS = ("coffee", "motorcycle", "clock", "moon", "rocket")
# photo -> its regions: (suffix, box, use). Copies originals mostly landscape (so that a 1:1 crop cuts);
# the regions of a photo do not overlap, and a scene region is never an original itself.
PLAN: dict[str, list[tuple[str, Box, str]]] = {
    "coffee": [("a", WHOLE, "copies")],
    "motorcycle": [("a", WHOLE, "copies")],  # its other view: a "stereo" shot
    "clock": [("a", WHOLE, "copies")],
    "moon": [
        ("a", (0, 0, 1, 0.6), "copies"),
        ("d", (0, 0.6, 0.5, 1), "dark"),
        ("f", (0.5, 0.6, 1, 1), "flat"),
    ],
    "rocket": [("s", WHOLE, "scene")],
    "astronaut": [("a", TOP, "copies"), ("d", BOTTOM, "dark")],
    "chelsea": [("a", WHOLE, "copies")],
    "hubble_deep_field": [
        ("a", (0, 0, 0.6, 0.5), "copies"), ("d", (0.6, 0, 1, 0.5), "dark"), ("s", (0, 0.5, 1, 1), "scene")
    ],
    "immunohistochemistry": [("a", TOP, "copies"), ("f", BOTTOM, "flat")],
    "china": [("a", WHOLE, "copies")],
    "flower": [("s", WHOLE, "scene")],
    "grace_hopper": [("a", (0, 0, 1, 0.55), "copies"), ("f", (0, 0.55, 1, 1), "flat")],
    "camera": [("a", TOP, "copies"), ("d", BOTTOM, "dark")],
    "coins": [("a", WHOLE, "copies")],
}  # fmt: skip
REGIONS = [
    Region(f"{photo}_{suffix}", photo, box, use, "unseen" if photo in UNSEEN_PHOTOS else "trained")
    for photo, parts in PLAN.items()
    for suffix, box, use in parts
]


def _rgb(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        array = (255 * (array - low) / max(1e-9, high - low)).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack([array] * 3, -1)
    return Image.fromarray(np.ascontiguousarray(array[..., :3]))


def load_photo(photo: str, view: int = 0) -> Image.Image:
    """Given a photo's name (and for the stereo motorcycle its view, 0 or 1), return it as RGB."""
    import skimage.data as data

    if photo == "motorcycle":
        return _rgb(data.stereo_motorcycle()[view])
    if photo in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return _rgb(load_sample_image(f"{photo}.jpg"))
    if photo == "grace_hopper":
        import matplotlib

        return Image.open(
            os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
        ).convert("RGB")
    return _rgb(getattr(data, photo)())


def crop_fraction(image: Image.Image, box: Box) -> Image.Image:
    """Given a picture and a box in fractions of its size, return that part of it."""
    w, h = image.size
    return image.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    return ImageFont.truetype(path, max(8, size))


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    size = (max(16, round(image.width * factor)), max(16, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


# ---- the edits -------------------------------------------------------------------------------------------


def square_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 1:1 crop (placed off centre), resized as a sharing app would."""
    side = min(image.size)
    x = round(rng.uniform(0.2, 0.8) * (image.width - side))
    y = round(rng.uniform(0.2, 0.8) * (image.height - side))
    return _scaled(image.crop((x, y, x + side, y + side)), rng.uniform(0.8, 1.2))


def rotated(image: Image.Image, degrees: float) -> Image.Image:
    """The picture turned by `degrees` and cropped to the largest centred box without the new corners."""
    turned = image.rotate(degrees, Image.Resampling.BICUBIC)
    w, h = image.size
    radians = np.radians(abs(degrees))
    keep = 1.0 / (np.cos(radians) + np.sin(radians) * max(w / h, h / w))
    margin = 0.5 * (1.0 - keep) + 0.005
    return crop_fraction(turned, (margin, margin, 1 - margin, 1 - margin))


def _homography(target: list, source: list) -> list[float]:
    rows, values = [], []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    return np.linalg.solve(np.array(rows, float), np.array(values, float)).tolist()


def keystone(image: Image.Image, tilt: float, vertical: bool) -> Image.Image:
    """A perspective tilt: one side of the picture seen `tilt` (fraction) narrower than the other, as a
    keystone correction or a photo taken at an angle leaves it, cropped to the picture."""
    w, h = image.size
    if vertical:  # the bottom edge drawn from a narrower span of the source: the top looks nearer
        source = [(0, 0), (w, 0), (w * (1 - tilt), h), (w * tilt, h)]
    else:  # the right edge from a shorter span
        source = [(0, 0), (w, h * tilt), (w, h * (1 - tilt)), (0, h)]
    coefficients = _homography([(0, 0), (w, 0), (w, h), (0, h)], source)
    return image.transform((w, h), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC)


def screenshot(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The picture shown in an image viewer on a dark background, with a toolbar and a status line."""
    shown = _scaled(image, rng.uniform(0.65, 0.85))
    toolbar, status, pad = 34, 22, round(shown.width * rng.uniform(0.12, 0.3))
    canvas = Image.new("RGB", (shown.width + 2 * pad, shown.height + toolbar + status + 2 * 16), (32, 33, 36))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, canvas.width, toolbar), fill=(222, 225, 230))
    draw.text((12, 9), "DSC_0417.jpg  -  Image Viewer", font=_font(13), fill=(20, 20, 20))
    for k, colour in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        draw.ellipse((canvas.width - 70 + 20 * k, 11, canvas.width - 58 + 20 * k, 23), fill=colour)
    canvas.paste(shown, (pad, toolbar + 16))
    bottom = canvas.height - status
    draw.rectangle((0, bottom, canvas.width, canvas.height), fill=(45, 46, 50))
    draw.text(
        (10, bottom + 4),
        f"{image.width} x {image.height}   75%   3 / 58",
        font=_font(11),
        fill=(200, 200, 200),
    )
    return canvas


def _star(x: float, y: float, radius: float) -> list[tuple[float, float]]:
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    return [(x + r * np.cos(a), y - r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]


def stickers(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Two stars and a rounded "WOW!" label stuck on the picture."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    w, h = image.size
    for colour in ((255, 64, 129), (0, 200, 255)):
        radius = min(w, h) * rng.uniform(0.08, 0.12)
        x, y = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
        draw.polygon(_star(x, y, radius), fill=colour, outline=(255, 255, 255), width=3)
    label_w, label_h = w * 0.3, h * 0.11
    x, y = rng.uniform(0, w - label_w), rng.uniform(0, h - label_h)
    draw.rounded_rectangle(
        (x, y, x + label_w, y + label_h), radius=label_h / 3, fill=(255, 235, 59), outline=(0, 0, 0), width=2
    )
    draw.text(
        (x + label_w * 0.12, y + label_h * 0.12), "WOW!", font=_font(round(label_h * 0.7)), fill=(0, 0, 0)
    )
    return out


def meme(image: Image.Image) -> Image.Image:
    """Top and bottom captions in white capitals with a black outline."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for text, y in (("NOBODY:", 0.02), ("ME KEEPING 4 COPIES OF IT", 0.86)):
        size = image.height // 10
        while size > 8 and draw.textlength(text, font=_font(size)) > 0.94 * image.width:
            size -= 1
        x = (image.width - draw.textlength(text, font=_font(size))) / 2
        outline = {"stroke_width": max(2, size // 12), "stroke_fill": (0, 0, 0)}
        draw.text((x, y * image.height), text, font=_font(size), fill=(255, 255, 255), **outline)
    return out


def darkened(image: Image.Image) -> Image.Image:
    """A dark, nearly flat picture: blurred, brightness down to ~8 %."""
    return image.filter(ImageFilter.GaussianBlur(2)).point(lambda value: round(value * 0.08))


def flattened(image: Image.Image) -> Image.Image:
    """A flat, low-detail picture: heavily blurred, contrast down to 30 %."""
    return ImageEnhance.Contrast(image.filter(ImageFilter.GaussianBlur(8))).enhance(0.3)


def framed(image: Image.Image, colour: tuple[int, int, int], fraction: float = 0.05) -> Image.Image:
    """The picture with a frame `fraction` of its short side wide."""
    return ImageOps.expand(image, border=max(3, round(min(image.size) * fraction)), fill=colour)


WHITE, BLACK = (255, 255, 255), (0, 0, 0)
# edit name -> (make the copy from the original and a generator, how to save it)
EDITS: dict[str, tuple[Callable[[Image.Image, np.random.Generator], Image.Image], str]] = {
    "square_crop": (square_crop, "jpg"),
    "rotate2": (lambda im, rng: rotated(im, 2.0 * rng.choice([-1, 1])), "jpg"),
    "rotate3": (lambda im, rng: rotated(im, 3.0 * rng.choice([-1, 1])), "jpg"),
    "perspective_v": (lambda im, rng: keystone(im, rng.uniform(0.06, 0.1), vertical=True), "jpg"),
    "perspective_h": (lambda im, rng: keystone(im, rng.uniform(0.06, 0.1), vertical=False), "jpg"),
    "screenshot": (screenshot, "png"),
    "sticker": (stickers, "jpg"),
    "meme": (lambda im, rng: meme(im), "jpg"),
}
FRAME_EDITS = {
    "dark": {"dark_white_frame": WHITE, "dark_black_frame": BLACK},
    "flat": {"flat_white_frame": WHITE, "flat_black_frame": BLACK},
}


# ---- the same-scene shots --------------------------------------------------------------------------------


def shot(scene: Image.Image, box: Box, exposure: float, rng: np.random.Generator, moved: bool) -> Image.Image:
    """One synthetic shot of a scene: the box of it, an exposure, sensor noise and, when `moved`, a
    subject that moved (a patch pasted a third of its size away)."""
    picture = ImageEnhance.Brightness(crop_fraction(scene, box)).enhance(exposure)
    if moved:
        pw, ph = picture.width // 5, picture.height // 5
        x, y = int(rng.integers(pw, picture.width - 2 * pw)), int(rng.integers(ph, picture.height - 2 * ph))
        patch = picture.crop((x, y, x + pw, y + ph))
        picture.paste(patch, (x + int(rng.choice([-1, 1])) * pw // 3, y + int(rng.choice([-1, 1])) * ph // 3))
    noise = rng.normal(0.0, 3.0, (picture.height, picture.width, 3))
    return Image.fromarray(np.clip(np.asarray(picture, np.float32) + noise, 0, 255).astype(np.uint8))


def overlap_share(first: Box, second: Box) -> float:
    """Given two boxes, return the larger of the shares of either's area that the other covers."""
    width = max(0.0, min(first[2], second[2]) - max(first[0], second[0]))
    height = max(0.0, min(first[3], second[3]) - max(first[1], second[1]))
    area = width * height
    return max(area / ((b[2] - b[0]) * (b[3] - b[1])) for b in (first, second))


OVERLAP_CROPS: tuple[Box, Box] = (
    (0.0, 0.0, 0.64, 1.0),
    (0.36, 0.0, 1.0, 1.0),
)  # each shares 44 % of its area


def scene_shots(scene: Image.Image, rng: np.random.Generator) -> Iterator[tuple[str, Image.Image]]:
    """Given a scene and a generator, yield (kind, shot): two overlapping crops, a burst of three, a next
    frame."""
    for box in OVERLAP_CROPS:
        yield "overlap_crop", crop_fraction(scene, box)
    for step in range(3):
        dx, dy = (0.0, 0.0) if step == 0 else (rng.uniform(-0.025, 0.025), rng.uniform(-0.025, 0.025))
        box = (0.05 + dx, 0.05 + dy, 0.95 + dx, 0.95 + dy)
        yield "burst", shot(scene, box, rng.uniform(0.85, 1.15), rng, moved=step > 0)
    pan = 0.08 * rng.choice([-1, 1])
    yield (
        "next_frame",
        shot(scene, (0.05 + pan, 0.05, 0.95 + pan, 0.95), rng.uniform(0.9, 1.1), rng, moved=True),
    )


# ---- writing the corpus ----------------------------------------------------------------------------------


class Corpus:
    """Writes pictures under a folder and keeps the manifest rows."""

    COLUMNS = ("path", "group", "transform", "role", "subset", "scene", "kind")

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.rows: list[tuple[str, ...]] = []

    def add(self, image: Image.Image, folder: str, name: str, kind: str, *, group: str, transform: str,
            role: str, region: Region) -> None:  # fmt: skip
        extension = "jpg" if kind == "jpg" else "png"
        relative = f"{folder}/{name}.{extension}"
        os.makedirs(os.path.join(self.out_dir, folder), exist_ok=True)
        options = {"quality": 88} if extension == "jpg" else {}
        image.convert("RGB").save(os.path.join(self.out_dir, relative), **options)
        self.rows.append((relative, group, transform, role, region.subset, region.name, folder))

    def write_manifest(self) -> None:
        with open(os.path.join(self.out_dir, "manifest.tsv"), "w") as manifest:
            manifest.write("\t".join(self.COLUMNS) + "\n")
            manifest.writelines("\t".join(row) + "\n" for row in self.rows)


def _generator(*names: str) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()) for name in names])


def add_copies(corpus: Corpus, region: Region, original: Image.Image) -> None:
    corpus.add(
        original, "orig", region.name, "png", group=region.name, transform="orig", role="", region=region
    )
    for edit, (make, kind) in EDITS.items():
        copy = make(original, _generator(region.name, edit))
        corpus.add(copy, edit, region.name, kind, group=region.name, transform=edit, role="", region=region)


def add_framed(corpus: Corpus, region: Region, picture: Image.Image) -> None:
    role = "negative"  # the same frame around two different pictures must not join them
    corpus.add(
        picture, region.use, region.name, "png", group=region.name, transform="orig", role=role, region=region
    )
    for edit, colour in FRAME_EDITS[region.use].items():
        copy = framed(picture, colour)
        corpus.add(
            copy, edit, region.name, "jpg", group=region.name, transform=edit, role=role, region=region
        )


def add_scene(corpus: Corpus, region: Region, scene: Image.Image) -> None:
    for k, (kind, picture) in enumerate(scene_shots(scene, _generator(region.name, "scene"))):
        name = f"{region.name}_{k}"
        corpus.add(picture, kind, name, "jpg", group=name, transform="orig", role="negative", region=region)


def add_stereo(corpus: Corpus) -> None:
    """The motorcycle's other view (scikit-image's stereo pair): another shot of a duplicate original."""
    other_view = load_photo("motorcycle", view=1)
    for region in REGIONS:
        if region.photo == "motorcycle":
            name = f"{region.name}_right"
            picture = crop_fraction(other_view, region.box)
            corpus.add(
                picture, "stereo", name, "jpg", group=name, transform="orig", role="negative", region=region
            )


def main(out_dir: str) -> None:
    corpus = Corpus(out_dir)
    photos: dict[str, Image.Image] = {}
    for region in REGIONS:
        photo = photos.setdefault(region.photo, load_photo(region.photo))
        picture = crop_fraction(photo, region.box)
        if region.use == "copies":
            add_copies(corpus, region, picture)
        elif region.use == "scene":
            add_scene(corpus, region, picture)
        elif region.use == "dark":
            add_framed(corpus, region, darkened(picture))
        else:
            add_framed(corpus, region, flattened(picture))
    add_stereo(corpus)
    corpus.write_manifest()
    print(f"{len(corpus.rows)} files in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
