"""Atomic writes: readers see the old content or the new; a failed write leaves the old file and no litter."""

from __future__ import annotations

import os
import stat

import pytest

from comparimg.atomic_files import open_atomically, write_text_atomically
from comparimg.hashing import thumbnails
from comparimg.model import ImageError


def test_text_is_written_whole_with_its_mode_and_parents(tmp_path):
    target = tmp_path / "a" / "b" / "token"
    write_text_atomically(target, "héllo\n", mode=0o600)
    assert target.read_bytes() == "héllo\n".encode()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.listdir(target.parent) == ["token"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "export.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), open_atomically(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk pulled")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["export.json"]


def test_thumbnails_are_written_atomically_and_only_for_accepted_formats(tmp_path, write_photo):
    source = write_photo(tmp_path / "photo.jpg", "coffee", size=(600, 400))
    dest = thumbnails.cache_path(tmp_path / "cache", "ab" * 32, 128)
    assert thumbnails.make_thumbnail(str(source), str(dest), 128) == str(dest)
    assert dest.read_bytes()[:2] == b"\xff\xd8" and os.listdir(dest.parent) == [dest.name]
    eps = tmp_path / "drawing.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError, match="cannot make a thumbnail: cannot identify image file"):
        thumbnails.make_thumbnail(str(eps), str(tmp_path / "cache" / "eps.jpg"), 128)
