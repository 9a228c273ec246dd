"""A generated library of small JPEGs in nested folders, a share of them near copies of others.

    python tests/benchmarks/big_tree.py FOLDER COUNT [SEED]     # builds FOLDER/tree (once; cached)

File i is `dNN/dNN/img{i:06d}.jpg` (FILES_PER_FOLDER files per leaf folder, FOLDERS_PER_PARENT leaf folders
per top folder: 100 000 files are 10 × 100 folders of 100). Its picture depends only on (SEED, i): a smooth
colour field, a few random shapes and noise, 160 × 120, JPEG q85, so every perceptual hash differs. Every
`1 / DUPLICATE_SHARE`-th file is instead a near copy of an earlier file (resized to 3/4 and re-encoded at
q75), a pair the daemon must find by its perceptual hash and confirm by its pixel check.

Pictures are made in a process pool; a finished tree holds a `complete` marker with its count and seed,
so an interrupted build is redone and a finished one is reused.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 160, 120
FILES_PER_FOLDER = 100
FOLDERS_PER_PARENT = 100
DUPLICATE_EVERY = 20  # 5 %
CHUNK = 500


def relative_path(i: int) -> str:
    """Given a file number, return its path below the tree (three levels: top/leaf/file)."""
    leaf = i // FILES_PER_FOLDER
    return f"d{leaf // FOLDERS_PER_PARENT:02d}/d{leaf % FOLDERS_PER_PARENT:02d}/img{i:06d}.jpg"


def original_of(i: int) -> int | None:
    """Given a file number, return the number of the file it is a near copy of, or None for an original."""
    if i % DUPLICATE_EVERY != DUPLICATE_EVERY - 1:
        return None
    return int(np.random.default_rng((i, 7)).integers(0, i)) // DUPLICATE_EVERY * DUPLICATE_EVERY


def picture(seed: int, i: int) -> Image.Image:
    """Given a seed and a file number, return its original picture (the same for the same pair)."""
    rng = np.random.default_rng((seed, i))
    field = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize(
        (WIDTH, HEIGHT), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(-20, WIDTH)), int(rng.integers(-20, HEIGHT))
        box = (x0, y0, x0 + int(rng.integers(15, 90)), y0 + int(rng.integers(15, 70)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(field, dtype=np.int16) + rng.normal(0, 6, (HEIGHT, WIDTH, 3)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg_bytes(seed: int, i: int) -> bytes:
    """Given a seed and a file number, return the JPEG file i holds (a near copy for a duplicate)."""
    out = io.BytesIO()
    original = original_of(i)
    if original is None:
        picture(seed, i).save(out, format="JPEG", quality=85)
    else:
        copy = picture(seed, original).resize((WIDTH * 3 // 4, HEIGHT * 3 // 4), Image.Resampling.LANCZOS)
        copy.save(out, format="JPEG", quality=75)
    return out.getvalue()


def _write_chunk(job: tuple[str, int, int, int]) -> int:
    folder, seed, start, stop = job
    for i in range(start, stop):
        path = Path(folder, relative_path(i))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(seed, i))
    return stop - start


def build_tree(folder: Path, count: int, seed: int = 0, processes: int | None = None) -> Path:
    """Given a folder, a file count and a seed, make sure `folder/tree` holds that library; return it."""
    tree, marker = folder / "tree", folder / "complete"
    expected = f"{count} {seed}\n"
    if marker.is_file() and marker.read_text() == expected:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    marker.unlink(missing_ok=True)
    tree.mkdir(parents=True)
    jobs = [(str(tree), seed, start, min(start + CHUNK, count)) for start in range(0, count, CHUNK)]
    with multiprocessing.get_context("spawn").Pool(processes or os.cpu_count()) as pool:
        written = sum(pool.imap_unordered(_write_chunk, jobs))
    assert written == count, (written, count)
    marker.write_text(expected)
    return tree


def jpeg_paths(tree: Path) -> list[Path]:
    """Given a built tree, return its JPEG paths in file-number order."""
    return sorted(tree.rglob("*.jpg"), key=lambda p: p.name)


if __name__ == "__main__":
    built = build_tree(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    print(built)
