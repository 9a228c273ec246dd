"""`comparimg install-service` writes the unit and a starter config under --root, then prints or runs
systemctl."""

import os
import subprocess
import sys
from pathlib import Path

from comparimg.config import documented_keys, load_settings
from comparimg.install import plan_install, read_write_paths


def run_install(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "comparimg", "install-service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_system_install_writes_unit_and_config_and_prints_commands(tmp_path):
    done = run_install("--root", str(tmp_path), "--run-as", "root")
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / "etc/systemd/system/comparimg.service").read_text()
    assert "User=root" in unit
    assert "ExecStart=" in unit and " run --config /etc/comparimg/comparimg.yaml" in unit
    config = tmp_path / "etc/comparimg/comparimg.yaml"
    settings = load_settings(config)
    assert settings.roots[0].path == Path("/root/Pictures")
    # named, so that `comparimg status` reading this file finds the system service's token
    assert settings.http.token_file == Path("/var/lib/comparimg/token")
    assert "systemctl daemon-reload" in done.stdout
    assert "systemctl enable --now comparimg.service" in done.stdout


def test_an_existing_config_is_kept(tmp_path):
    config = tmp_path / "etc/comparimg/comparimg.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("roots: [/srv/photos]\n")
    done = run_install("--root", str(tmp_path), "--run-as", "root")
    assert done.returncode == 0, done.stderr
    assert config.read_text() == "roots: [/srv/photos]\n"
    assert "kept existing" in done.stdout


def test_user_install_goes_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = run_install("--user", "--root", str(tmp_path), env={"HOME": str(home)})
    assert done.returncode == 0, done.stderr
    unit_path = tmp_path / str(home).lstrip("/") / ".config/systemd/user/comparimg.service"
    assert "%E/comparimg/comparimg.yaml" in unit_path.read_text()
    config = tmp_path / str(home).lstrip("/") / ".config/comparimg/comparimg.yaml"
    assert load_settings(config).roots[0].path == home / "Pictures"
    assert "systemctl --user enable --now comparimg.service" in done.stdout


def test_enable_runs_systemctl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = run_install("--root", str(tmp_path / "r"), "--run-as", "root", "--enable", env=env)
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["daemon-reload", "enable --now comparimg.service"]


def test_custom_config_path_is_used_by_the_unit(tmp_path):
    done = run_install("--root", str(tmp_path), "--run-as", "root", "--config", "/opt/cfg/c.yaml")
    assert done.returncode == 0, done.stderr
    assert "--config /opt/cfg/c.yaml" in (tmp_path / "etc/systemd/system/comparimg.service").read_text()
    assert (tmp_path / "opt/cfg/c.yaml").exists()


def test_roots_outside_usual_places_become_writable():
    assert read_write_paths(["/home/a/Pictures"]) == ("-/home", "-/media", "-/mnt", "-/srv")
    assert read_write_paths(["/data/photos"])[-1] == "-/data/photos"


def test_plan_is_pure():
    plan = plan_install(
        user_mode=False,
        prefix=Path("/x"),
        home=Path("/home/ann"),
        account="ann",
        group="ann",
        config=None,
        exec_start="/usr/bin/comparimg",
    )
    assert plan.unit_path == Path("/x/etc/systemd/system/comparimg.service")
    assert plan.config_path == Path("/x/etc/comparimg/comparimg.yaml")
    assert "User=ann" in plan.unit_text
    assert '"/home/ann/Pictures"' in plan.config_text


def test_the_starter_config_keeps_its_promise_that_check_config_shows_every_setting(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert run_install("--user", "--root", str(tmp_path), env={"HOME": str(home)}).returncode == 0
    config = tmp_path / str(home).lstrip("/") / ".config/comparimg/comparimg.yaml"
    assert "comparimg check-config" in config.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "comparimg", "check-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {config}\n")
    shown = done.stdout.split("\n", 1)[1]
    for key_path in documented_keys():
        assert f"{key_path.rpartition('.')[2]}:" in shown, key_path
