"""Decisions and status stay responsive while the daemon works through a backlog of pair checks.

Run explicitly:  python -m pytest -m benchmark -s tests/benchmarks/test_decision_latency.py

A real `comparimg run` daemon (2 workers) watches a folder holding a few photos; BURST crops of those photos
(look-alikes: every one is a pair-check candidate of many others) are copied in at once. For DURATION
seconds of the ingest that follows, a client loops: queue a decision (`POST /api/decisions`), cancel it
(`DELETE /api/decisions/{id}`), read `GET /api/status`. p50, p99 and max of each are printed, with how
many crops were indexed by then; p99 must stay under 1 s (issue 13, row 12).
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon_harness import Daemon, index_rows, wait_for

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(1200)]

BURST = int(os.environ.get("BURST", "1000"))
DURATION = float(os.environ.get("DURATION", "60"))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
CLIENT_TIMEOUT = 60.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def photo(name: str) -> Image.Image:
    import skimage.data

    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3].astype(np.uint8)))


def make_crops(folder: Path, originals: dict[str, Image.Image], count: int) -> None:
    """Given a folder and photos, write `count` JPEG crops of them (85-97 % of each side, random place,
    resized to 200-300 px): look-alikes the pair checks must tell apart or join."""
    rng = random.Random(13)
    folder.mkdir(parents=True)
    names = list(originals)
    for i in range(count):
        image = originals[names[i % len(names)]]
        width, height = image.size
        keep_w, keep_h = int(width * rng.uniform(0.85, 0.97)), int(height * rng.uniform(0.85, 0.97))
        left, top = rng.randint(0, width - keep_w), rng.randint(0, height - keep_h)
        side = rng.randint(200, 300)
        crop = image.crop((left, top, left + keep_w, top + keep_h)).resize((side, side * keep_h // keep_w))
        out = BytesIO()
        crop.save(out, format="JPEG", quality=rng.randint(70, 95))
        (folder / f"crop{i:05d}.jpg").write_bytes(out.getvalue())


class Api:
    """The daemon's HTTP API, with its token, timed."""

    def __init__(self, daemon: Daemon):
        match = re.search(r"event=http_listening host=\S+ port=(\d+)", daemon.log())
        assert match, "the web app did not log its port"
        self.base = f"http://127.0.0.1:{match.group(1)}"
        self.token = (daemon.workdir / "token").read_text().strip()

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[float, int, dict]:
        """Return (seconds, status, JSON body); a client timeout counts as CLIENT_TIMEOUT seconds."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT) as response:
                return time.monotonic() - started, response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return time.monotonic() - started, error.code, json.loads(error.read() or b"{}")
        except TimeoutError:
            return CLIENT_TIMEOUT, 0, {}


def test_decisions_and_status_answer_within_a_second_during_a_look_alike_burst(tmp_path):
    root = tmp_path / "photos"
    originals = {name: photo(name) for name in PHOTOS}
    for name, image in originals.items():
        (root / "originals").mkdir(parents=True, exist_ok=True)
        image.save(root / "originals" / f"{name}.png")
    staging = tmp_path / "staging"
    started = time.monotonic()
    make_crops(staging, originals, BURST)
    made = time.monotonic() - started
    daemon = Daemon(tmp_path, [root], settle=0.5).start()
    latencies: dict[str, list[float]] = {
        "POST /api/decisions": [],
        "DELETE /api/decisions": [],
        "GET /api/status": [],
    }
    try:
        wait_for(lambda: "event=http_listening" in daemon.log(), timeout=30)
        api = Api(daemon)
        ids = [
            file_id for path, (file_id, state, _) in index_rows(daemon.index).items() if "originals" in path
        ]
        assert len(ids) == len(PHOTOS), ids
        subprocess.run(["cp", "-r", str(staging), str(root / "burst")], check=True)
        deadline = time.monotonic() + DURATION
        turn = 0
        while time.monotonic() < deadline:
            seconds, status, body = api.call(
                "POST", "/api/decisions", {"action": "keep", "file_id": ids[turn % 4]}
            )
            latencies["POST /api/decisions"].append(seconds)
            assert status == 201, (status, body)
            seconds, status, _ = api.call("DELETE", f"/api/decisions/{body['id']}")
            latencies["DELETE /api/decisions"].append(seconds)
            assert status == 200
            seconds, status, state = api.call("GET", "/api/status")
            latencies["GET /api/status"].append(seconds)
            turn += 1
            time.sleep(0.1)  # a person's pace, not a flood
        rows = index_rows(daemon.index)
        indexed = sum(1 for path, (_, state, _) in rows.items() if "burst" in path and state == "ok")
    finally:
        daemon.stop(timeout=60)
    print(
        f"\n{BURST} look-alike crops made in {made:.1f} s; during {DURATION:g} s of their ingest "
        f"({indexed} indexed by then, daemon state {state.get('state')!r}, queue {state.get('queue_depth')}):"
    )
    for name, values in latencies.items():
        print(
            f"  {name}: n={len(values)} p50 {statistics.median(values):.3f} s, "
            f"p99 {percentile(values, 99):.3f} s, max {max(values):.3f} s"
        )
    for values in latencies.values():
        assert percentile(values, 99) < 1.0
