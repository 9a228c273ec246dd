"""Throughput of `comparimg scan` on 12 MP camera JPEGs, against `imagehash.phash(Image.open(p))`.

Run explicitly:  python -m pytest -m benchmark -s tests/benchmarks/test_scan_throughput.py

The corpus comes from COMPARIMG_CAMERA_CORPUS (a folder holding `jpg/`, or the JPEGs themselves), else it
is built once with `shared/bench/make_camera_corpus.py` (NJPG files, default 200) into the temp folder.
Each figure is the median of RUNS runs; the scan is timed as a user runs it (a new process, a throwaway
index), so its fixed cost (interpreter, imports, worker start-up: about 0.5 s) weighs on small corpora.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
RUNS = 3
NJPG = int(os.environ.get("NJPG", "200"))


def shared_folder() -> Path:
    """Return the shared folder (`../shared` beside the repository in CI, else /work/shared)."""
    for candidate in (REPO.parent / "shared", Path("/work/shared")):
        if (candidate / "bench" / "make_camera_corpus.py").is_file():
            return candidate
    pytest.skip("shared/bench/make_camera_corpus.py not found beside the repository nor in /work/shared")


@pytest.fixture(scope="module")
def camera_jpegs() -> Path:
    """Return a folder of 12 MP JPEGs (reused from COMPARIMG_CAMERA_CORPUS, or built once)."""
    given = os.environ.get("COMPARIMG_CAMERA_CORPUS")
    folder = Path(given) if given else Path(tempfile.gettempdir()) / f"comparimg-camera-corpus-{NJPG}"
    if (folder / "jpg").is_dir():
        folder = folder / "jpg"
    if not given and not sorted(folder.glob("*.jpg")):
        env = {**os.environ, "NJPG": str(NJPG), "NPNG": "0", "NBMP": "0"}
        subprocess.run(  # it writes OUT/jpg/
            [sys.executable, str(shared_folder() / "bench" / "make_camera_corpus.py"), str(folder)],
            env=env,
            check=True,
            timeout=3600,
        )
        folder = folder / "jpg"
    if not sorted(folder.glob("*.jpg")):
        pytest.skip(f"no JPEGs in {folder}")
    return folder


def scan_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "daemon"), env.get("PYTHONPATH", "")) if p)
    return env


def time_scan(folder: Path, workers: int, *extra: str) -> tuple[float, dict]:
    """Given a folder and a worker count, run `comparimg scan`; return (wall seconds, the JSON stats)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "comparimg",
                "scan",
                str(folder),
                "--workers",
                str(workers),
                "--json",
                f"{out}/d.json",
                *extra,
            ],
            env=scan_env(),
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - started
        assert result.returncode == 0, result.stderr[-3000:]
        return wall, json.loads(Path(out, "d.json").read_text())["stats"]


def time_imagehash(files: list[Path]) -> float:
    """Given files, return the seconds `imagehash.phash(Image.open(p))` takes over all of them."""
    import imagehash
    from PIL import Image

    started = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            imagehash.phash(image)
    return time.perf_counter() - started


def time_jpeg_decode_floor(files: list[Path]) -> float:
    """Given JPEGs, return the seconds one process takes to only decode them at 1/8 scale in grayscale
    (Pillow's draft, libjpeg-turbo): the least work any fingerprint of a baseline JPEG must do, since the
    entropy decoding of the whole file cannot be skipped. Its ratio to imagehash is the ceiling of ours."""
    from PIL import Image

    started = time.perf_counter()
    for path in files:
        with Image.open(path) as image:
            image.draft("L", (image.width // 8, image.height // 8))
            image.load()
    return time.perf_counter() - started


def _decode_floor_of_half(files: list[Path]) -> None:
    time_jpeg_decode_floor(files)


def time_two_process_decode_floor(files: list[Path]) -> float:
    """Given JPEGs, return the seconds two processes take to decode them as `time_jpeg_decode_floor` does,
    each half of them (the pool's start-up included, as a scan's is)."""
    started = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_decode_floor_of_half, [files[0::2], files[1::2]])
    return time.perf_counter() - started


def _keep_stats(measured: tuple[float, dict], stats: list[dict]) -> float:
    stats.append(measured[1])
    return measured[0]


def median_of(measure, runs: int = RUNS) -> float:
    return statistics.median(measure() for _ in range(runs))


def test_scan_is_faster_than_imagehash_and_scales_with_workers(camera_jpegs):
    files = sorted(camera_jpegs.glob("*.jpg"))
    baseline = median_of(lambda: time_imagehash(files))
    floor = median_of(lambda: time_jpeg_decode_floor(files))
    stats = []
    one = median_of(lambda: _keep_stats(time_scan(camera_jpegs, 1), stats))
    two = median_of(lambda: time_scan(camera_jpegs, 2)[0])
    n = len(files)
    print(
        f"\n{n} JPEGs of 12 MP, medians of {RUNS} runs, cpus={os.cpu_count()}, "
        f"load={os.getloadavg()[0]:.1f}; each scan hashed {stats[-1]['hashed']} files and verified "
        f"{stats[-1]['verified']} candidate pairs ({stats[-1]['groups']} groups)"
    )
    print(f"  imagehash.phash(Image.open(p)): {baseline:6.2f} s  {n / baseline:6.1f} files/s")
    print(
        f"  JPEG decode alone (1/8, gray):  {floor:6.2f} s  {n / floor:6.1f} files/s  "
        f"{baseline / floor:4.2f}x imagehash (the ceiling for one decoding process)"
    )
    print(
        f"  comparimg scan --workers 1:     {one:6.2f} s  {n / one:6.1f} files/s  "
        f"{baseline / one:4.2f}x imagehash, {floor / one:4.2f} of the decoder's speed"
    )
    print(
        f"  comparimg scan --workers 2:     {two:6.2f} s  {n / two:6.1f} files/s  "
        f"{one / two:4.2f}x one worker"
    )
    assert baseline / one >= 3.5
    assert one / two >= 1.8


def test_scan_against_the_decode_floor_with_the_model_stage_off_and_on(camera_jpegs):
    """Issue 14's yardstick: the decoder itself, in the same run. Model off (`--mode hash`): each worker
    count at least 0.85 of the floor of as many decoding processes; model on (the default): at least 0.6."""
    files = sorted(camera_jpegs.glob("*.jpg"))
    floors = {1: median_of(lambda: time_jpeg_decode_floor(files))}
    floors[2] = median_of(lambda: time_two_process_decode_floor(files))
    ratios = {}
    print(f"\n{len(files)} JPEGs of 12 MP, medians of {RUNS} runs, load={os.getloadavg()[0]:.1f}")
    for workers in (1, 2):
        print(f"  decode floor, {workers} process(es): {floors[workers]:6.2f} s")
        for mode in ("hash", "hash+model"):
            wall = median_of(
                lambda mode=mode, workers=workers: time_scan(camera_jpegs, workers, "--mode", mode)[0]
            )
            ratios[mode, workers] = floors[workers] / wall
            print(
                f"  scan --mode {mode:10} --workers {workers}: {wall:6.2f} s  "
                f"{ratios[mode, workers]:4.2f} of the floor"
            )
    print(f"  load after: {os.getloadavg()[0]:.1f}")
    assert min(ratios["hash", w] for w in (1, 2)) >= 0.85
    assert min(ratios["hash+model", w] for w in (1, 2)) >= 0.6


def test_a_second_scan_with_the_same_index_is_ten_times_faster(camera_jpegs, tmp_path):
    db = tmp_path / "index.sqlite3"
    first_wall, first = time_scan(camera_jpegs, 2, "--index", str(db))
    second_wall, second = time_scan(camera_jpegs, 2, "--index", str(db))
    print(
        f"\nfirst scan {first['seconds']:.2f} s in the scan ({first_wall:.2f} s wall), "
        f"second {second['seconds']:.3f} s ({second_wall:.2f} s wall): "
        f"{first['seconds'] / max(second['seconds'], 1e-3):.0f}x in the scan, "
        f"{first_wall / second_wall:.1f}x wall (interpreter start-up included)"
    )
    assert second["hashed"] == 0 and second["unchanged"] == first["files"]
    assert second["seconds"] * 10 <= first["seconds"]
