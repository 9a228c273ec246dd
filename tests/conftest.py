"""Shared fixtures: real photos (scikit-image's sample pictures) written as real files in temp dirs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "daemon"

# Before `pip install -e .`, make the package importable from the tree (and in subprocesses).
if importlib.util.find_spec("comparimg") is None:
    sys.path.insert(0, str(PACKAGE_DIR))

from comparimg.workers import WorkerLimits, WorkerPool  # noqa: E402 (found through the fallback above)

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field")
PILLOW_SOURCE = Path(os.environ.get("COMPARIMG_PILLOW_SOURCE", "/tmp/pillow_src"))


def photo_array(name: str) -> np.ndarray:
    """Given a scikit-image sample name, return it as an RGB uint8 array."""
    import skimage.data

    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3].astype(np.uint8))


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Return {name: RGB array} of real photos, loaded once per session."""
    return {name: photo_array(name) for name in PHOTO_NAMES}


@pytest.fixture
def write_photo(photos) -> Callable[..., Path]:
    """Return write(path, name, size, fmt, quality, transpose): save a real photo there, return the path."""
    from PIL import Image

    def write(path: Path, name: str = "astronaut", size: tuple[int, int] | None = None,
              fmt: str | None = None, quality: int = 90, transpose=None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(photos[name])
        if size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        if transpose is not None:
            image = image.transpose(transpose)
        options = {"quality": quality} if (fmt or path.suffix.lower().lstrip(".")) in ("jpeg", "jpg") else {}
        image.save(path, format=fmt, **options)
        return path

    return write


class RecordingPool(WorkerPool):
    """A real worker pool that also records its tasks: `calls` counts them by function name, `take()`
    returns (and forgets) the sorted names of the files it fingerprinted."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}
        self.fingerprinted: list[str] = []

    def run(self, func, *args):
        self.calls[func.__name__] = self.calls.get(func.__name__, 0) + 1
        if func.__name__.startswith("fingerprint"):  # fingerprint_file or a variant of it
            self.fingerprinted.append(os.path.basename(args[0]))
        return super().run(func, *args)

    def take(self) -> list[str]:
        taken, self.fingerprinted = sorted(self.fingerprinted), []
        return taken


@pytest.fixture(scope="module")
def pool() -> Iterator[RecordingPool]:
    """Return a RecordingPool of two real workers, one per test module."""
    with RecordingPool(2, WorkerLimits(timeout_seconds=20)) as opened:
        yield opened


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Return an environment in which `python -m comparimg` finds the package from the tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_DIR), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="session")
def pillow_test_images() -> Path:
    """Return Pillow's own `Tests/images` folder, downloading the source once; skip if it cannot be had."""
    found = sorted(PILLOW_SOURCE.glob("pillow-*/Tests/images"))
    if not found:
        found = _download_pillow_tests()
    if not found:
        pytest.skip(f"Pillow's test images are not available (pip download into {PILLOW_SOURCE} failed)")
    return found[-1]


def _download_pillow_tests() -> list[Path]:
    PILLOW_SOURCE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps", "pillow",
             "-d", str(PILLOW_SOURCE)],
            check=True, capture_output=True, timeout=180,
        )
    except (subprocess.SubprocessError, OSError):
        return []
    for archive in sorted(PILLOW_SOURCE.glob("pillow-*.tar.gz")):
        subprocess.run(
            ["tar", "-xzf", str(archive), "-C", str(PILLOW_SOURCE), "--wildcards", "*/Tests/images/*"],
            capture_output=True, timeout=180, check=False,
        )
    return sorted(PILLOW_SOURCE.glob("pillow-*/Tests/images"))
