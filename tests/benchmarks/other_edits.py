#!/usr/bin/env python3
"""Build a second accuracy corpus with photos and edits the public benchmark does not use.

Usage:  python tests/benchmarks/other_edits.py OUT_DIR

A guard against tuning the method to ../shared/bench/make_corpus.py: other source pictures (separate regions
of the packaged photos, plus photos that corpus leaves out) and other edits of the same kinds — one-side and
corner crops, borders and letterboxing, caption bars, corner watermarks, gamma, low JPEG quality, WebP,
combined edits. Writes OUT_DIR/manifest.tsv in the same format (path, group, transform, role), so
../shared/bench/score.py scores it. Deterministic.
"""

import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps


def _rgb(array):
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, -1)
    return Image.fromarray(array[..., :3].astype(np.uint8))


def originals():
    """Yield (name, image): distinct pictures, none a region of another."""
    import matplotlib
    import skimage.data as data

    yield "cat", _rgb(data.cat())
    sample = os.path.join(matplotlib.get_data_path(), "sample_data")
    yield "minduka", Image.open(os.path.join(sample, "Minduka_Present_Blue_Pack.png")).convert("RGB")
    regions = {  # (photo, box as fractions): halves and thirds that do not overlap within a photo
        "astronaut_left": ("astronaut", (0.0, 0.0, 0.5, 1.0)),
        "astronaut_right": ("astronaut", (0.5, 0.0, 1.0, 1.0)),
        "coffee_right": ("coffee", (0.45, 0.0, 1.0, 1.0)),
        "chelsea_top": ("chelsea", (0.0, 0.0, 1.0, 0.55)),
        "hubble_a": ("hubble_deep_field", (0.0, 0.0, 0.5, 0.5)),
        "hubble_b": ("hubble_deep_field", (0.5, 0.5, 1.0, 1.0)),
        "ihc_a": ("immunohistochemistry", (0.0, 0.0, 0.6, 0.6)),
        "rocket_top": ("rocket", (0.0, 0.0, 1.0, 0.5)),
        "retina_a": ("retina", (0.1, 0.1, 0.6, 0.6)),
        "coins_left": ("coins", (0.0, 0.0, 0.5, 1.0)),
        "gravel_a": ("gravel", (0.0, 0.0, 0.5, 0.5)),
        "grass_b": ("grass", (0.5, 0.5, 1.0, 1.0)),
    }
    for name, (photo, (x0, y0, x1, y1)) in regions.items():
        image = _rgb(getattr(data, photo)())
        w, h = image.size
        yield name, image.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))


def _font(size):
    import matplotlib

    return ImageFont.truetype(
        os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size
    )


def _crop_box(image, left=0.0, top=0.0, right=0.0, bottom=0.0):
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _border(image, fraction, colour):
    pad = max(2, round(min(image.size) * fraction))
    return ImageOps.expand(image, border=pad, fill=colour)


def _letterbox(image):
    w, h = image.size
    height = round(w * 9 / 16) if w / h < 16 / 9 else h
    width = max(w, round(height * 16 / 9))
    height = max(height, h) + round(0.12 * h)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(image, ((width - w) // 2, (height - h) // 2))
    return canvas


def _caption_bar(image, text="Holiday 2023 - Lake Como"):
    w, h = image.size
    bar = max(12, round(h * 0.09))
    canvas = Image.new("RGB", (w, h + bar), (255, 255, 255))
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((8, h + bar * 0.15), text, fill=(30, 30, 30), font=_font(round(bar * 0.6)))
    return canvas


def _caption_overlay(image):
    out = image.copy()
    w, h = out.size
    bar = round(h * 0.08)
    draw = ImageDraw.Draw(out, "RGBA")
    draw.rectangle((0, 0, w, bar), fill=(0, 0, 0, 170))
    draw.text((6, bar * 0.15), "photo by someone", fill=(255, 255, 255, 255), font=_font(round(bar * 0.6)))
    return out


def _corner_mark(image):
    out = image.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    w, h = out.size
    size = max(10, w // 14)
    ImageDraw.Draw(layer).text((w * 0.62, h * 0.84), "© studio", fill=(255, 255, 255, 200), font=_font(size))
    return Image.alpha_composite(out, layer).convert("RGB")


def _gamma(image, gamma):
    table = [round(255 * (value / 255) ** gamma) for value in range(256)] * 3
    return image.point(table)


def _resize(image, factor):
    return image.resize(
        (max(8, round(image.width * factor)), max(8, round(image.height * factor))), Image.LANCZOS
    )


EDITS = {
    "crop_left8": (lambda im: _crop_box(im, left=0.08), "png"),
    "crop_bottom10": (lambda im: _crop_box(im, bottom=0.10), "png"),
    "crop_corner7": (lambda im: _crop_box(im, right=0.07, bottom=0.07), "png"),
    "crop_uneven": (lambda im: _crop_box(im, left=0.03, top=0.09, right=0.06, bottom=0.02), "jpg"),
    "border_white4": (lambda im: _border(im, 0.04, (255, 255, 255)), "png"),
    "border_black2": (lambda im: _border(im, 0.02, (0, 0, 0)), "jpg"),
    "letterbox": (_letterbox, "png"),
    "caption_bar": (_caption_bar, "jpg"),
    "caption_overlay": (_caption_overlay, "png"),
    "corner_mark": (_corner_mark, "png"),
    "gamma07": (lambda im: _gamma(im, 0.7), "png"),
    "gamma14": (lambda im: _gamma(im, 1.4), "png"),
    "jpeg50": (lambda im: im, "jpg50"),
    "resize30": (lambda im: _resize(im, 0.3), "png"),
    "resize150_webp": (lambda im: _resize(im, 1.5), "webp"),
    "contrast80_gray": (lambda im: ImageEnhance.Contrast(im).enhance(0.8).convert("L"), "png"),
    "rot90_jpeg": (lambda im: im.transpose(Image.ROTATE_90), "jpg"),
    "transpose_bright": (
        lambda im: ImageEnhance.Brightness(im.transpose(Image.TRANSPOSE)).enhance(1.15),
        "png",
    ),
    "flip_crop5": (lambda im: _crop_box(im.transpose(Image.FLIP_LEFT_RIGHT), 0.05, 0.05, 0.0, 0.0), "png"),
}


def _save(image, path, kind):
    if kind.startswith("jpg"):
        image.convert("RGB").save(path, quality=int(kind[3:] or 80))
    elif kind == "webp":
        image.save(path, quality=85)
    else:
        image.save(path)


def main(out_dir):
    rows = []
    os.makedirs(os.path.join(out_dir, "orig"), exist_ok=True)
    for name, image in originals():
        relative = f"orig/{name}.png"
        image.save(os.path.join(out_dir, relative))
        rows.append((relative, name, "orig", ""))
        for edit, (function, kind) in EDITS.items():
            os.makedirs(os.path.join(out_dir, edit), exist_ok=True)
            relative = f"{edit}/{name}.{kind[:3] if kind.startswith('jpg') else kind}"
            _save(function(image), os.path.join(out_dir, relative), kind)
            rows.append((relative, name, edit, ""))
    with open(os.path.join(out_dir, "manifest.tsv"), "w") as manifest:
        manifest.write("path\tgroup\ttransform\trole\n")
        manifest.writelines("\t".join(row) + "\n" for row in rows)
    print(f"{len(rows)} files in {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
