"""The unit files pass `systemd-analyze verify` and the system unit's exposure is 2.0 or lower."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from comparimg.install import render_system_unit, render_user_unit

UNITS = Path(__file__).resolve().parent.parent / "systemd"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
MISSING_BINARY = re.compile(r"Command \S+ is not executable: No such file or directory")


def unexpected_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and not MISSING_BINARY.search(line)]


def test_repository_units_are_the_rendered_templates():
    assert (UNITS / "comparimg.service").read_text() == render_system_unit()
    assert (UNITS / "comparimg-user.service").read_text() == render_user_unit()


@needs_analyze
@pytest.mark.parametrize("name", ["comparimg.service", "comparimg-user.service"])
def test_verify_prints_nothing_but_the_missing_binary(name, tmp_path):
    unit = tmp_path / "comparimg.service"
    unit.write_text((UNITS / name).read_text())
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert unexpected_lines(done.stdout + done.stderr) == []


@needs_analyze
def test_verify_is_silent_once_the_binary_exists(tmp_path):
    unit = tmp_path / "comparimg.service"
    unit.write_text(render_system_unit(exec_start="/bin/true", user="root", group="root"))
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.stdout + done.stderr == ""


@needs_analyze
def test_system_unit_exposure_is_at_most_two():
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(UNITS / "comparimg.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    print(f"exposure {match.group(1)}")
    assert float(match.group(1)) <= 2.0


def test_system_unit_has_the_required_settings():
    text = (UNITS / "comparimg.service").read_text()
    for line in (
        "Type=notify",
        "User=comparimg",
        "WatchdogSec=60",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=comparimg",
    ):
        assert line in text.splitlines()
