"""One rule for where state lives: a daemon started as the units of `install-service` start it, or with
systemd's $STATE_DIRECTORY, is found by `comparimg status` with no --config, --url or --token-file.

Real daemon processes on loopback, each with its own temporary HOME and no XDG variables."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_harness import env_with_package, wait_for

XDG_VARIABLES = ("STATE_DIRECTORY", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """Given a temporary home, return an environment where it is HOME and no XDG folder is set."""
    env = env_with_package({"HOME": str(home), **extra})
    for key in XDG_VARIABLES:
        if key not in extra:
            env.pop(key, None)
    return env


def comparimg(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "comparimg", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def start_daemon(tmp_path) -> Iterator:
    """Return start(args, env): run `comparimg ARGS` as a daemon logging to a file, wait until its API
    listens, return the process. Every daemon started is stopped at the end of the test."""
    started: list[subprocess.Popen] = []
    log_path = tmp_path / "daemon.log"

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "comparimg", *args], env=env, stdout=log, stderr=log
            )
        started.append(process)

        def listening() -> bool:
            assert process.poll() is None, log_path.read_text()
            return "event=http_listening" in log_path.read_text()

        wait_for(listening, timeout=60, message=f"the daemon did not listen:\n{log_path.read_text()}")
        return process

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def unit_command(unit_text: str, home: Path) -> tuple[list[str], dict[str, str]]:
    """Given a user unit, return (arguments after the program, environment) as the user manager would
    start it: %E is ~/.config, StateDirectory= sets $STATE_DIRECTORY to ~/.local/state/NAME."""
    lines = unit_text.splitlines()
    exec_start = next(line.split("=", 1)[1] for line in lines if line.startswith("ExecStart="))
    args = shlex.split(exec_start.replace("%E", str(home / ".config")))[1:]
    environment: dict[str, str] = {}
    for line in lines:
        if line.startswith("Environment="):
            key, _, value = line.split("=", 1)[1].partition("=")
            environment[key] = value
        elif line.startswith("StateDirectory="):
            state = home / ".local/state" / line.split("=", 1)[1]
            state.mkdir(parents=True, exist_ok=True)
            environment["STATE_DIRECTORY"] = str(state)
    return args, environment


def test_status_finds_the_user_service_installed_by_install_service(tmp_path, start_daemon):
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    env = home_env(home)
    done = comparimg(env, "install-service", "--user")
    assert done.returncode == 0, done.stderr
    config = home / ".config/comparimg/comparimg.yaml"
    # another daemon may hold the default port on a shared machine: the user picks another one
    config.write_text(config.read_text().replace("127.0.0.1:8765", f"127.0.0.1:{free_port()}"))
    args, unit_env = unit_command((home / ".config/systemd/user/comparimg.service").read_text(), home)
    start_daemon(args, home_env(home, **unit_env))

    status = comparimg(env, "status")

    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("state ")


def test_status_finds_the_token_of_a_daemon_under_state_directory(tmp_path, start_daemon):
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    state = home / ".local/state/comparimg"  # what StateDirectory=comparimg gives a user unit
    state.mkdir(parents=True)
    port = free_port()
    start_daemon(["run", "--listen", f"127.0.0.1:{port}"], home_env(home, STATE_DIRECTORY=str(state)))

    status = comparimg(home_env(home), "status", "--url", f"http://127.0.0.1:{port}")

    assert status.returncode == 0, status.stderr
    assert (state / "token").exists()
    assert not (home / ".local/share/comparimg").exists()


def test_a_plain_run_and_status_share_the_state_folder(tmp_path, start_daemon):
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    port = free_port()
    start_daemon(["run", "--listen", f"127.0.0.1:{port}"], home_env(home))

    status = comparimg(home_env(home), "status", "--url", f"http://127.0.0.1:{port}")

    assert status.returncode == 0, status.stderr
    assert (home / ".local/state/comparimg/token").exists()
    assert os.stat(home / ".local/state/comparimg/token").st_mode & 0o077 == 0


@pytest.fixture
def bare_home(monkeypatch, tmp_path) -> Path:
    """Return a temporary HOME with no XDG folder and no $STATE_DIRECTORY set."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in XDG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return home


def test_clients_look_for_the_user_service_then_a_plain_run_then_the_system_service(bare_home):
    from comparimg.client import config_candidates

    assert config_candidates() == (
        bare_home / ".config/comparimg/comparimg.yaml",
        bare_home / ".local/state/comparimg/config.yaml",
        Path("/etc/comparimg/comparimg.yaml"),
    )


def test_a_token_file_and_address_named_in_the_user_config_are_used(bare_home):
    import argparse

    from comparimg.client import endpoint

    token = bare_home / "elsewhere" / "token"
    token.parent.mkdir()
    token.write_text("secret\n")
    config = bare_home / ".config/comparimg/comparimg.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"http:\n  listen: 127.0.0.1:9123\n  token_file: {token}\n")
    args = argparse.Namespace(config=None, url=None, token_file=None)
    assert endpoint(args) == ("http://127.0.0.1:9123", "secret")
