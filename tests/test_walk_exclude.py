"""The walk's exclude test matches as `fnmatch.fnmatchcase` does, on paths relative to the root."""

from __future__ import annotations

import fnmatch
import os

import pytest

from comparimg import hashing
from comparimg.config import DEFAULT_EXCLUDE
from comparimg.scanner.walk import FoundFile, exclusion_test, relative_path, walk_images

PATHS = ["a.jpg", ".a.jpg", "x/.h/y.jpg", ".Trash-1000/a.jpg", "x/.Trash-0/b.png", "d/e.jpg", "d/[1].jpg"]
PATTERNS = [DEFAULT_EXCLUDE, ("d/*",), ("*[1]*",), ("*.JPG",), ("x/*", "?.jpg")]


@pytest.mark.parametrize("patterns", PATTERNS)
def test_the_compiled_patterns_match_what_fnmatchcase_matches(patterns):
    excluded = exclusion_test(patterns)
    for path in PATHS:
        assert excluded(path) == any(fnmatch.fnmatchcase(path, p) for p in patterns), (path, patterns)


def test_no_pattern_means_no_test():
    assert exclusion_test(()) is None


@pytest.mark.parametrize(
    ("path", "root"), [("/a/b/c", "/a/b"), ("/x", "/"), ("/a/b/c/d.jpg", "/a/b/"), ("/a/bc/d", "/a/b")]
)
def test_relative_paths_are_those_of_relpath(path, root):
    assert relative_path(path, root) == os.path.relpath(path, root)


def test_a_walk_skips_excluded_files_and_folders(tmp_path):
    for name in ["keep.jpg", ".hidden.jpg", "sub/keep.png", "sub/.cache/skip.jpg", "skipdir/a.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = walk_images(str(tmp_path), hashing.SUPPORTED_EXTENSIONS, (*DEFAULT_EXCLUDE, "skipdir"))
    paths = sorted(relative_path(f.path, str(tmp_path)) for f in found if isinstance(f, FoundFile))
    assert paths == ["keep.jpg", "sub/keep.png"]
