"""The tree stays ruff clean (lint and format); the rooms keep their one-way imports (import-linter)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*command):
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_ruff_is_clean():
    result = run(sys.executable, "-m", "ruff", "check", "daemon", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_imports_follow_the_rooms():
    lint_imports = shutil.which("lint-imports")
    if lint_imports is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    result = run(lint_imports)
    assert result.returncode == 0, result.stdout + result.stderr
