"""Many small distinct pictures for the bulk-decision tests: exact pairs (bytes copied) and near pairs
(resized and re-encoded), plus a way to hash every file of a tree."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image


def noise_picture(rng: np.random.Generator, side: int = 64) -> Image.Image:
    """Return a picture of 16×16 random grey blocks. (Coarser grids of colour blocks look alike to the
    window hashes: among 20 000 of 8×8 colour blocks a quarter found a "near" twin.)"""
    blocks = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    return Image.fromarray(blocks).resize((side, side), Image.Resampling.NEAREST)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_pairs(folder: Path, exact: int, near: int, seed: int = 1) -> dict[str, list[tuple[Path, Path]]]:
    """Given a folder, write `exact` pairs of byte-identical PNGs and `near` pairs (a 64×64 PNG and a 48×48
    resized copy); return {"exact": [(keeper-to-be, copy)...], "near": [(original, smaller copy)...]}.

    In a near pair the original has more pixels, so it is the suggested keeper; in an exact pair either may
    be kept (same size, same pixels).
    """
    rng = np.random.default_rng(seed)
    pairs: dict[str, list[tuple[Path, Path]]] = {"exact": [], "near": []}
    for kind, count in (("exact", exact), ("near", near)):
        for number in range(count):
            place = folder / kind / f"{number // 200:03d}" / f"{number:05d}"
            place.mkdir(parents=True, exist_ok=True)
            picture = noise_picture(rng)
            first, second = place / "a.png", place / "b.png"
            first.write_bytes(png(picture))
            if kind == "exact":
                second.write_bytes(first.read_bytes())
            else:
                second.write_bytes(png(picture.resize((48, 48), Image.Resampling.BILINEAR)))
            pairs[kind].append((first, second))
    return pairs


def tree_hashes(*folders: Path) -> dict[Path, str]:
    """Return {path: sha256} of every regular file under the folders."""
    found = {}
    for folder in folders:
        if folder.exists():
            for path in folder.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


async def wait_batch(live, batch_id: int, states: tuple[str, ...], timeout: float = 900) -> dict:
    """Given the live app, a batch id and the states to wait for, return the batch once it is in one of
    them and no longer running. Raise AssertionError after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        batch = await live.json("GET", f"/api/decisions/bulk/{batch_id}")
        if batch["state"] in states and not batch["running"]:
            return batch
        assert asyncio.get_running_loop().time() < deadline, batch
        await asyncio.sleep(0.05)
