"""The suite is hermetic: the process guard (tests/process_guard.py) fails a run that leaves a process
behind and names the test; a daemon of the harness is stopped even when its test fails half-way; HOME is a
temp dir; Pillow's test pictures come from the cache only (skip without them, fail under CI)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from process_guard import is_alive, read_process

TESTS = Path(__file__).resolve().parent

LEAKY_TESTS = """
import os
import subprocess
from pathlib import Path

import pytest

STARTED = []  # kept referenced, so no Popen is collected (and waited for) before the guard looks


def note(pid):
    with Path(os.environ["GUARD_PIDS"]).open("a") as out:
        out.write(f"{pid}\\n")


def test_leaks_a_sleep():
    STARTED.append(subprocess.Popen(["sleep", "60"]))
    note(STARTED[-1].pid)


def test_leaks_an_orphan():
    # The shell leaves at once; its background sleep is adopted by pytest (the subreaper), not by init.
    done = subprocess.run(["sh", "-c", "sleep 61 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    note(int(done.stdout))


def test_stops_what_it_starts():
    process = subprocess.Popen(["sleep", "62"])
    process.terminate()
    process.wait()


@pytest.fixture(scope="session")
def session_sleeper():
    STARTED.append(subprocess.Popen(["sleep", "63"]))
    note(STARTED[-1].pid)
    yield  # never stopped


def test_uses_a_session_process(session_sleeper):
    pass
"""


def run_guarded(
    tmp_path: Path, source: str, plugin: str = "process_guard", env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, list[int]]:
    """Given a test file's source, run it in a pytest subprocess with only `plugin` loaded (the process
    guard, or tests/conftest.py, which loads the guard too); return the finished run and the pids its tests
    wrote down."""
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(source))
    pids = tmp_path / "pids"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")} | (env or {})
    env |= {"GUARD_PIDS": str(pids), "PYTHONPATH": str(TESTS), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [
        sys.executable, "-m", "pytest", "-p", plugin, "-p", "no:cacheprovider", "-o",
        "process_guard_grace=0.5", "-rs", "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return done, [int(line) for line in pids.read_text().split()] if pids.exists() else []


def still_running(pid: int) -> bool:
    process = read_process(pid)
    return process is not None and is_alive(process.key)


def test_a_run_that_leaves_processes_fails_naming_the_tests_and_kills_them(tmp_path):
    done, pids = run_guarded(tmp_path, LEAKY_TESTS)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "ERROR at teardown of test_leaks_a_sleep" in output, output
    assert "ERROR at teardown of test_leaks_an_orphan" in output, output
    assert "sleep 60" in output and "sleep 61" in output
    assert "sleep 62" not in output
    assert "test_stops_what_it_starts" not in output.split("short test summary")[0]
    assert "still running at the end of the test run" in output and "sleep 63" in output
    assert "4 passed, 2 errors" in output, output
    assert len(pids) == 3
    assert not [pid for pid in pids if still_running(pid)], "the guard kills what it reports"


SESSION_LEAK_ONLY = """
import subprocess

import pytest

STARTED = []


@pytest.fixture(scope="session")
def session_sleeper():
    STARTED.append(subprocess.Popen(["sleep", "64"]))
    yield  # never stopped


def test_passes(session_sleeper):
    pass
"""


def test_a_run_whose_tests_pass_still_fails_when_a_process_is_left_at_its_end(tmp_path):
    done, _ = run_guarded(tmp_path, SESSION_LEAK_ONLY)
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1 and "sleep 64" in done.stdout, done.stdout + done.stderr


CLEAN_TESTS = """
import multiprocessing
import subprocess


def test_stops_what_it_starts():
    process = subprocess.Popen(["sleep", "60"])
    process.kill()
    process.wait()


def test_a_fork_server_pool_is_no_leak():
    # The fork server and resource tracker stay for the interpreter's life; the pool's workers do not.
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        assert pool.apply(abs, (-1,)) == 1
"""


def test_a_run_that_stops_its_processes_passes(tmp_path):
    done, _ = run_guarded(tmp_path, CLEAN_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


DAEMON_LEFT_BY_A_FAILING_TEST = """
import os
from pathlib import Path

from daemon_harness import Daemon


def test_fails_with_its_daemon_running(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    daemon = Daemon(tmp_path, [root]).start()
    Path(os.environ["GUARD_PIDS"]).write_text(str(daemon.process.pid))
    assert False, "a failure half-way, before the test could stop its daemon"
"""


def test_a_daemon_left_by_a_failing_test_is_stopped_by_the_finaliser(tmp_path):
    done, pids = run_guarded(tmp_path, DAEMON_LEFT_BY_A_FAILING_TEST, plugin="conftest")
    output = done.stdout + done.stderr
    assert "1 failed in" in output, output  # the failure itself, and no teardown error from the guard
    assert "outlived" not in output, output
    assert pids and not still_running(pids[0])


def test_home_is_a_temp_dir_of_the_run(tmp_path_factory):
    assert Path(os.environ["HOME"]).is_relative_to(tmp_path_factory.getbasetemp())
    assert Path.home().is_relative_to(tmp_path_factory.getbasetemp())
    assert not any(name in os.environ for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "STATE_DIRECTORY"))


USES_PILLOW_IMAGES = """
def test_uses_pillows_pictures(pillow_test_images):
    assert pillow_test_images.is_dir()
"""


def test_without_pillows_pictures_a_test_skips_with_the_reason_and_fails_under_ci(tmp_path):
    empty = {"COMPARIMG_PILLOW_CACHE": str(tmp_path / "no-cache"), "CI": ""}
    done, _ = run_guarded(tmp_path, USES_PILLOW_IMAGES, plugin="conftest", env=empty)
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout + done.stderr
    assert "fetch_pillow_images.py" in done.stdout
    done, _ = run_guarded(tmp_path, USES_PILLOW_IMAGES, plugin="conftest", env={**empty, "CI": "true"})
    assert done.returncode == 1 and "1 error" in done.stdout, done.stdout + done.stderr
    assert "fetch_pillow_images.py" in done.stdout
    assert not (tmp_path / "no-cache").exists(), "the fixture only reads; it never downloads"
