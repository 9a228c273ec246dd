"""End to end on real photos: fingerprint, query, verify, group. Edited copies meet their original; parts
of a photo and other photos do not. (The full corpora run in tests/benchmarks/test_accuracy_corpus.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from comparimg import hashing
from comparimg.matching import HashIndex, group_matches
from comparimg.model import FileFacts, Match


def find_groups(paths: list[Path]) -> list[set[str]]:
    """Given image paths, return the duplicate groups as sets of file names (the engine's whole flow)."""
    fingerprints = {i: hashing.fingerprint_file(str(path)) for i, path in enumerate(paths)}
    facts = {
        i: FileFacts(
            i, str(paths[i]), paths[i].stat().st_size, fp.width, fp.height, 0, fp.format, fp.content_hash
        )
        for i, fp in fingerprints.items()
    }
    index = HashIndex()
    matches = []
    for i, fp in fingerprints.items():
        for candidate in index.query(fp):
            pair = (min(i, candidate.file_id), max(i, candidate.file_id))
            if fingerprints[candidate.file_id].content_hash == fp.content_hash:
                matches.append(Match(*pair, "exact", 0, 0))
            elif hashing.verify_pair(str(paths[i]), str(paths[candidate.file_id]), candidate).matched:
                matches.append(Match(*pair, "near", candidate.distance, candidate.orientation))
        index.add(i, fp)
    return [{paths[m.file_id].name for m in group.members} for group in group_matches(facts, matches)]


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


def caption(image: Image.Image) -> Image.Image:
    out = image.copy()
    bar = round(0.09 * out.height)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, out.height - bar, out.width, out.height), fill=(10, 10, 10))
    draw.text((8, out.height - bar + 3), "(c) holiday archive 2021", fill=(255, 255, 0))
    return out


def watermark(image: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = image.size
    draw.rectangle((w * 0.3, h * 0.45, w * 0.7, h * 0.55), fill=(255, 255, 255, 110))
    draw.text((w * 0.33, h * 0.47), "PREVIEW ONLY", fill=(0, 0, 0, 160))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


EDITS = {
    "crop_right7": (lambda im: crop(im, 0, 0, 0.07, 0), "png"),
    "crop_corner": (lambda im: crop(im, 0.08, 0.08, 0, 0), "png"),
    "crop_centre4": (lambda im: crop(im, 0.04, 0.04, 0.04, 0.04), "jpg"),
    "border": (lambda im: ImageOps.expand(im, border=10, fill=(0, 0, 0)), "png"),
    "caption": (caption, "png"),
    "watermark": (watermark, "jpg"),
    "small_jpeg50": (
        lambda im: im.resize((im.width * 2 // 5, im.height * 2 // 5), Image.Resampling.LANCZOS),
        "jpg",
    ),
    "darker_gray": (lambda im: ImageEnhance.Brightness(im).enhance(0.82).convert("L"), "webp"),
    "flip": (lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "bmp"),
    "rot270": (lambda im: im.transpose(Image.Transpose.ROTATE_270), "png"),
    # Turned and cropped or captioned: the query's global hash meets a window of the original (a crop),
    # or one of its turned windows meets the original's global hash (a caption).
    "rot90_crop_left8": (lambda im: crop(im, 0.08, 0, 0, 0).transpose(Image.Transpose.ROTATE_90), "jpg"),
    "flip_corner7": (lambda im: crop(im, 0.07, 0.07, 0, 0).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "png"),
    "rot180_caption": (lambda im: caption(im).transpose(Image.Transpose.ROTATE_180), "png"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photos) -> list[Path]:
    folder = tmp_path_factory.mktemp("accuracy")
    paths = []
    for name in ("astronaut", "coffee"):
        original = Image.fromarray(photos[name])
        original = original.resize(
            (original.width * 3 // 4, original.height * 3 // 4), Image.Resampling.LANCZOS
        )
        edits = EDITS if name == "astronaut" else dict(list(EDITS.items())[::3])
        for edit, (function, extension) in {"orig": (lambda im: im, "png"), **edits}.items():
            path = folder / f"{name}-{edit}.{extension}"
            function(original).save(path, **({"quality": 50} if extension == "jpg" else {}))
            paths.append(path)
        w, h = original.size
        for k, box in enumerate([(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2), (0, h // 2, w // 2, h)]):
            path = folder / f"{name}-quadrant{k}.png"
            original.crop(box).save(path)
            paths.append(path)
    for name in ("chelsea", "rocket"):
        path = folder / f"{name}-other.png"
        Image.fromarray(photos[name]).save(path)
        paths.append(path)
    (folder / "astronaut-exact.png").write_bytes((folder / "astronaut-orig.png").read_bytes())
    return [*paths, folder / "astronaut-exact.png"]


def test_edited_copies_meet_their_original_and_nothing_else(corpus):
    groups = find_groups(corpus)
    by_photo = {}
    for group in groups:
        photos_in_group = {name.split("-")[0] for name in group}
        assert len(photos_in_group) == 1, f"different photos grouped: {sorted(group)}"
        assert not any("quadrant" in name or "other" in name for name in group), sorted(group)
        by_photo.setdefault(photos_in_group.pop(), []).append(group)
    for photo, groups_of_photo in by_photo.items():
        with_original = [g for g in groups_of_photo if f"{photo}-orig.png" in g]
        assert len(with_original) == 1
        expected = {p.name for p in corpus if p.name.startswith(photo) and "quadrant" not in p.name}
        assert with_original[0] == expected, sorted(expected - with_original[0])
    assert set(by_photo) == {"astronaut", "coffee"}
