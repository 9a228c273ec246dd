"""Hostile inputs that used to escape as bugs: a 100 000-deep JSON body (was a 500) and a 65 535 × 1 300
picture (verification raised ValueError in the worker): a 4xx JSON error and a per-file error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comparimg import hashing
from comparimg.model import Candidate, ImageError
from comparimg.workers import WorkerLimits, WorkerPool
from web_support import start_live, stop_live

DEPTH = 100_000


@pytest.fixture
async def live(tmp_path, aiohttp_client):
    handle, task = await start_live(tmp_path, aiohttp_client)
    yield handle
    await stop_live(handle, task)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/decisions", "[" * DEPTH + "]" * DEPTH),
        ("PATCH", "/api/config", '{"a":' * DEPTH + "1" + "}" * DEPTH),
        ("POST", "/api/jobs", "[" * DEPTH),  # not even closed
    ],
    ids=["decisions-array", "config-object", "jobs-unclosed"],
)
async def test_a_deeply_nested_json_body_is_a_400_json_error(live, method, path, body):
    headers = {**live.auth, "Content-Type": "application/json"}
    response = await live.client.request(method, path, data=body.encode(), headers=headers)
    answer = await response.json()
    assert response.status == 400, answer
    assert answer["error"]["code"] == "bad_request"
    status = await live.json("GET", "/api/status")  # the daemon is unaffected
    assert status["state"] in ("scanning", "watching")


def write_panorama(path, width: int, height: int) -> None:
    rng = np.random.default_rng(7)
    pattern = rng.integers(0, 256, (13, 655), dtype=np.uint8)  # smooth after the resize: a small PNG
    Image.fromarray(pattern).resize((width, height), Image.Resampling.BILINEAR).save(path)


@pytest.fixture(scope="module")
def panoramas(tmp_path_factory):
    folder = tmp_path_factory.mktemp("panoramas")
    write_panorama(folder / "wide.png", 65_535, 1_300)
    write_panorama(folder / "wide-copy.png", 6_553, 130)
    return folder / "wide.png", folder / "wide-copy.png"


def test_a_65535_by_1300_picture_is_a_per_file_error_in_verification(panoramas):
    wide, copy = panoramas
    with pytest.raises(ImageError, match=r"wide\.png: too elongated to verify"):
        hashing.verify_pair(str(wide), str(copy), Candidate(1, 0, 0))


def test_through_the_workers_it_is_an_error_with_its_reason_not_a_bug(panoramas):
    wide, copy = panoramas
    fingerprint = hashing.fingerprint_file(str(wide))  # hashing it is fine; only the fine check refuses
    assert (fingerprint.width, fingerprint.height) == (65_535, 1_300)
    with WorkerPool(1, WorkerLimits(timeout_seconds=60)) as pool:
        ((_, outcome),) = list(
            pool.map_unordered(hashing.verify_pair, [(str(wide), str(copy), Candidate(1, 0, 0))])
        )
        assert isinstance(outcome, ImageError)
        assert "too elongated to verify" in outcome.reason
        assert "unexpected" not in outcome.reason
        assert pool.replaced == 0
