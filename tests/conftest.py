"""Shared fixtures: real photos (scikit-image's sample pictures) written as real files in temp dirs; a home
folder in a temp dir for the whole run; every daemon of tests/daemon_harness.py stopped after its test.
The process guard (tests/process_guard.py) fails a test that leaves a process running."""

from __future__ import annotations

import importlib.util
import os
import shutil
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

import daemon_harness  # noqa: E402
import fetch_pillow_images  # noqa: E402
from comparimg.index import open_index  # noqa: E402
from comparimg.workers import WorkerLimits, WorkerPool  # noqa: E402 (found through the fallback above)

pytest_plugins = ("process_guard",)

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field")
# The variables that say where a program keeps its files under the home folder (or, for systemd's, instead).
HOME_VARIABLES = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "STATE_DIRECTORY")


@pytest.fixture(scope="session", autouse=True)
def home_in_a_temp_dir(tmp_path_factory) -> Iterator[Path]:
    """Point HOME at a temp dir for the whole run (and drop the XDG folders): whatever a test, a daemon it
    starts, Chromium or Playwright write under ~ lands there, never in the home of whoever runs the tests.
    A test that needs a home of its own still sets HOME itself."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        for name in HOME_VARIABLES:
            patch.delenv(name, raising=False)
        yield home


@pytest.fixture(autouse=True)
def stop_harness_daemons() -> Iterator[None]:
    """After each test, stop every daemon_harness.Daemon it started and left running (a test that fails
    half-way leaves its daemon to this finaliser)."""
    yield
    daemon_harness.stop_started_daemons()


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

    def write(
        path: Path,
        name: str = "astronaut",
        size: tuple[int, int] | None = None,
        fmt: str | None = None,
        quality: int = 90,
        transpose=None,
    ) -> Path:
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
    """Return Pillow's own `Tests/images` folder of the installed Pillow, from the repository's cache that
    tests/fetch_pillow_images.py fills (tests never download). Skip when it is not there; fail under CI."""
    folder = fetch_pillow_images.images_dir()
    if not folder.is_dir():
        reason = (
            f"Pillow's test images are not in {folder}: run `python tests/fetch_pillow_images.py` first "
            "(it downloads Pillow's source release through pip)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture
def photo(tmp_path) -> Path:
    """Return a 300 kB file of random bytes at root/2020/a.jpg in the test's temp dir (for the sorter)."""
    path = tmp_path / "root" / "2020" / "a.jpg"
    path.parent.mkdir(parents=True)
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.fixture
def shm_trash(tmp_path) -> Iterator[Path]:
    """Return a trash folder on /dev/shm, another file system than the temp dir (skip if it is not); it is
    removed afterwards."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    folder = shm / f"comparimg-test-{os.getpid()}-{tmp_path.name}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def index(tmp_path):
    """An empty index in the test's temp folder (a module may define its own `index` instead)."""
    with open_index(tmp_path / "index.sqlite3") as opened:
        yield opened
