"""Fetch Pillow's own test pictures (the `Tests/images` folder of its source release) into the repository's
ignored cache, so that the tests that use them never reach the network themselves.

Usage:  python tests/fetch_pillow_images.py [--timeout SECONDS] [--version VERSION]

CI runs this before pytest, with the Python of the venv that runs the tests. It takes the source release
of the Pillow version installed there (its test pictures are the ones that version was tested with),
through pip, and keeps only `Tests/images` in `.cache/pillow-tests/pillow-VERSION/images`
($COMPARIMG_PILLOW_CACHE instead of `.cache/pillow-tests` when set, e.g. to keep it across fresh clones).
A folder already there is used as it is. Exit status 0 when the folder is there, 1 with the reason on
stderr when it cannot be had within the time budget.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("COMPARIMG_PILLOW_CACHE") or REPO / ".cache" / "pillow-tests")
DEFAULT_TIMEOUT = 300.0


class FetchError(Exception):
    """The pictures could not be had; the message says why."""


def installed_pillow_version() -> str:
    """Return the version of the installed Pillow distribution."""
    return importlib.metadata.version("pillow")


def images_dir(version: str | None = None, cache: Path = CACHE) -> Path:
    """Given a Pillow version (default: the installed one), return where its test pictures are cached."""
    return cache / f"pillow-{version or installed_pillow_version()}" / "images"


def fetch(version: str, cache: Path = CACHE, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Given a Pillow version, make sure its `Tests/images` is in the cache and return that folder.
    Raise FetchError if pip cannot download the source release within `timeout` seconds or it holds no
    `Tests/images`."""
    target = images_dir(version, cache)
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Everything is built in a scratch folder of the cache and renamed into place at the end, so an
    # interrupted fetch never leaves a half-filled folder that the tests would take as complete.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as scratch:
        archive = _download(version, Path(scratch), timeout)
        extracted = _extract_images(archive, Path(scratch) / "extracted")
        target.parent.mkdir(parents=True, exist_ok=True)
        extracted.rename(target)
    return target


def _download(version: str, folder: Path, timeout: float) -> Path:
    # Only Pillow from source: its build requirements (pip prepares the sdist's metadata) come as wheels,
    # since building them from source too takes minutes.
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "pillow",
        "--timeout", "30", "--retries", "2", "--dest", str(folder), f"pillow=={version}",
    ]  # fmt: skip
    # pip runs subprocesses of its own (the build environment): a session of their own, so that a
    # timeout (or a SIGTERM to this script) stops all of them, not just the first.
    pip = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = pip.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download of pillow=={version} took more than {timeout:.0f} s") from None
    finally:
        if pip.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pip.pid, signal.SIGKILL)
            pip.communicate()
    if pip.returncode != 0:
        raise FetchError(f"pip download of pillow=={version} failed:\n{stderr.strip()[-2000:]}")
    archives = sorted(folder.glob("*.tar.gz"))
    if not archives:
        raise FetchError(f"pip download of pillow=={version} brought no source archive")
    return archives[0]


def _extract_images(archive: Path, into: Path) -> Path:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/Tests/images/" in m.name and (m.isfile() or m.isdir())]
        if not members:
            raise FetchError(f"{archive.name} holds no Tests/images folder")
        tar.extractall(into, members=members, filter="data")
    found = sorted(into.glob("*/Tests/images"))
    if not found:
        raise FetchError(f"{archive.name} holds no Tests/images folder")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds the download may take"
    )
    parser.add_argument("--version", help="Pillow version (default: the installed one)")
    args = parser.parse_args(argv)
    # `timeout` (or CI) ends this script with SIGTERM: leave through the finalisers, which stop pip.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("fetch_pillow_images: stopped by SIGTERM"))
    try:
        version = args.version or installed_pillow_version()
    except importlib.metadata.PackageNotFoundError:
        print(
            f"fetch_pillow_images: Pillow is not installed for {sys.executable}: run this with the Python "
            "that runs the tests (the one of the venv), or give --version",
            file=sys.stderr,
        )
        return 1
    try:
        folder = fetch(version, timeout=args.timeout)
    except (FetchError, OSError, tarfile.TarError) as error:
        print(f"fetch_pillow_images: {error}", file=sys.stderr)
        return 1
    count = sum(1 for p in folder.iterdir() if p.is_file())
    print(f"Pillow {version} test pictures: {count} files in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
