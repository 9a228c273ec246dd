"""The per-process cache of decoded verification pictures: reused while the file is unchanged, never stale."""

from __future__ import annotations

import os

import numpy as np
import pytest

from comparimg import hashing
from comparimg.hashing import decoding, pictures
from comparimg.model import Candidate


@pytest.fixture(autouse=True)
def empty_cache():
    pictures.CACHE.clear()
    yield
    pictures.CACHE.clear()


def count_decodes(monkeypatch) -> list[str]:
    opened: list[str] = []
    real = decoding._decode

    def counting(path, *sizes_and_data):
        opened.append(path)
        return real(path, *sizes_and_data)

    monkeypatch.setattr(decoding, "_decode", counting)
    return opened


def test_verify_pair_reuses_pictures_and_fingerprint_offers_its_decode(tmp_path, write_photo, monkeypatch):
    big = str(write_photo(tmp_path / "big.jpg", "coffee", size=(3072, 2048)))  # decoded at 1/8 for both
    copy = str(write_photo(tmp_path / "copy.png", "coffee", size=(600, 400)))
    opened = count_decodes(monkeypatch)
    hashing.fingerprint_file(big)
    assert opened == [big] and len(pictures.CACHE) == 1
    cached = pictures.verification_picture(big)
    fresh = np.asarray(decoding.open_picture(big, min_side=pictures.VERIFY_SIDE).image)
    assert np.array_equal(cached, fresh)  # the same pixels a decode for verification gives
    opened.clear()
    first = hashing.verify_pair(big, copy, Candidate(1, 0, 0))
    second = hashing.verify_pair(big, copy, Candidate(1, 0, 0))
    assert first.matched and second == first
    assert opened == [copy]  # big came from fingerprint_file, copy was decoded once


def test_previews_from_another_worker_spare_the_decodes_and_go_stale_with_the_file(
    tmp_path, write_photo, monkeypatch
):
    big = str(write_photo(tmp_path / "big.jpg", "coffee", size=(3072, 2048)))
    copy = str(write_photo(tmp_path / "copy.jpg", "coffee", size=(3072, 2048), quality=60))
    previews = [hashing.fingerprint_with_preview(path)[1] for path in (big, copy)]
    assert [p[0] for p in previews] == [pictures.file_key(big), pictures.file_key(copy)]
    pictures.CACHE.clear()  # as in another worker process
    opened = count_decodes(monkeypatch)
    assert hashing.verify_pair(big, copy, Candidate(1, 0, 0), previews).matched
    assert opened == []  # both pictures came with the task
    pictures.CACHE.clear()
    stat = os.stat(copy)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the file changed since
    assert hashing.verify_pair(big, copy, Candidate(1, 0, 0), previews).matched
    assert opened == [copy]  # a preview of an older state of the file is not used


def test_a_changed_file_is_decoded_again(tmp_path, write_photo, monkeypatch):
    path = tmp_path / "a.png"
    write_photo(path, "astronaut", size=(300, 300))
    opened = count_decodes(monkeypatch)
    before = pictures.verification_picture(str(path)).copy()
    pictures.verification_picture(str(path))
    assert len(opened) == 1
    stat = os.stat(path)
    write_photo(path, "coffee", size=(300, 200))  # new content, new size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    after = pictures.verification_picture(str(path))
    assert len(opened) == 2 and after.shape == (200, 300) and before.shape == (300, 300)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same size, new mtime
    pictures.verification_picture(str(path))
    assert len(opened) == 3
    assert len(pictures.CACHE) == 1  # the old pictures of a path are dropped


def test_cache_is_bounded_least_recently_used_first():
    cache = pictures.PictureCache(max_bytes=3 * 100)
    for name in "abc":
        cache.put((name, 100, 1), np.zeros((10, 10), np.uint8))
    assert cache.get(("a", 100, 1)) is not None  # a is now the most recent
    cache.put(("d", 100, 1), np.zeros((10, 10), np.uint8))
    assert cache.get(("b", 100, 1)) is None and cache.get(("a", 100, 1)) is not None
    assert cache.nbytes == 300 and len(cache) == 3
    cache.put(("huge", 1, 1), np.zeros((20, 20), np.uint8))  # bigger than the bound: not kept
    assert cache.get(("huge", 1, 1)) is None and len(cache) == 3
    with pytest.raises(ValueError):
        cache.get(("a", 100, 1))[0, 0] = 1  # read-only: no caller can spoil a cached picture
    cache.put(("a", 100, 2), np.zeros((10, 10), np.uint8))  # a's new version replaces the old one
    assert ("a", 100, 1) not in cache and ("a", 100, 2) in cache and len(cache) == 3
    cache.put(("b", 100, 1), np.zeros((10, 10), np.uint8))  # b, dropped as least recent, comes back
    assert ("b", 100, 1) in cache and cache.nbytes == 300 and len(cache) == 3
    cache.clear()
    cache.put(("a", 100, 3), np.zeros((10, 10), np.uint8))
    assert len(cache) == 1 and cache.nbytes == 100
