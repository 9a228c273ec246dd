"""`comparimg run` as a real subprocess, driven by the HTTP CLI clients; crash the sorter inside the daemon
at each step of an action, restart the daemon, and check every file is in exactly one place."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from daemon_harness import wait_for

STEPS = ("intent", "linked", "source_removed", "recorded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def setup(tmp_path, write_photo, cli_env):
    photos = tmp_path / "photos"
    first = write_photo(photos / "a.jpg", "astronaut", size=(200, 200))
    (photos / "sub").mkdir()
    (photos / "sub" / "b.jpg").write_bytes(first.read_bytes())
    config = tmp_path / "comparimg.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "roots": [str(photos)],
                "index": str(tmp_path / "state" / "index.sqlite3"),
                "export": str(tmp_path / "state" / "duplicates.json"),
                "hashing": {"workers": 1},
                "watch": {"settle_seconds": 0.2},
                "http": {
                    "listen": f"127.0.0.1:{free_port()}",
                    "token_file": str(tmp_path / "state" / "token"),
                },
                "sorter": {"trash": str(tmp_path / "trash")},
            }
        )
    )
    return tmp_path, config, cli_env


def start_daemon(config: Path, env: dict, crash_at: str | None = None) -> subprocess.Popen:
    env = {key: value for key, value in env.items() if key != "COMPARIMG_CRASH_AT"}
    if crash_at:
        env["COMPARIMG_CRASH_AT"] = crash_at
    with open(config.parent / "daemon.log", "a") as log:  # a file, not a pipe nobody reads (it fills up)
        return subprocess.Popen(
            [sys.executable, "-m", "comparimg", "run", "--config", str(config)],
            env=env,
            stderr=log,
            text=True,
        )


def client(config: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in env.items() if k != "COMPARIMG_CRASH_AT"}
    result = subprocess.run(
        [sys.executable, "-m", "comparimg", *args, "--config", str(config)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def json_answer(config: Path, env: dict, command: str) -> dict | None:
    """Return the daemon's JSON answer to a client command, or None while it does not answer."""
    result = client(config, env, command, "--json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_for_group(config: Path, env: dict, timeout: float = 60) -> dict:
    def first_group() -> dict | None:
        answer = json_answer(config, env, "groups")
        return answer["groups"][0] if answer and answer["total"] else None

    return wait_for(first_group, timeout, interval=0.2, message="no group appeared")


def wait_for_status(config: Path, env: dict, timeout: float = 60) -> dict:
    return wait_for(
        lambda: json_answer(config, env, "status"), timeout, interval=0.2, message="the daemon did not answer"
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def copies_of(data: bytes, *folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file() and p.read_bytes() == data]


def test_clients_status_groups_decide_apply_undo(setup):
    tmp, config, env = setup
    daemon = start_daemon(config, env)
    try:
        group = wait_for_group(config, env)
        assert "state" in client(config, env, "status").stdout
        assert "/login?token=" in (tmp / "daemon.log").read_text()
        assert "group" in client(config, env, "groups").stdout
        victim = next(m for m in group["members"] if m["suggested"] == "trash")
        original = Path(victim["path"]).read_bytes()
        client(config, env, "decide", "trash", str(victim["file_id"]))
        applied = json.loads(client(config, env, "apply", "--json").stdout)
        assert applied["applied"] == 1
        assert not Path(victim["path"]).exists()
        action_id = applied["outcomes"][0]["action_id"]
        assert "undone" in client(config, env, "undo", str(action_id)).stdout
        assert Path(victim["path"]).read_bytes() == original
        refused = client(config, env, "undo", str(action_id), check=False)
        assert refused.returncode == 1 and "409" in refused.stderr
    finally:
        stop(daemon)


def wait_for_members(config: Path, env: dict, count: int, timeout: float = 60) -> dict:
    def group_of_count() -> dict | None:
        answer = json_answer(config, env, "groups")
        groups = answer["groups"] if answer else []
        return next((g for g in groups if len(g["members"]) == count), None)

    return wait_for(group_of_count, timeout, interval=0.2, message=f"no group of {count} appeared")


def member_lines(output: str) -> dict[int, str]:
    """Given the text of `comparimg groups`, return {file id: its line}."""
    return {int(line.split()[1]): line for line in output.splitlines() if line.startswith("  file ")}


def test_decide_takes_several_file_ids_and_groups_tell_suggestion_from_decision(setup):
    tmp, config, env = setup
    (tmp / "photos" / "c.jpg").write_bytes((tmp / "photos" / "a.jpg").read_bytes())
    daemon = start_daemon(config, env)
    try:
        group = wait_for_members(config, env, 3)
        keeper = next(m["file_id"] for m in group["members"] if m["suggested"] == "keep")
        others = [m["file_id"] for m in group["members"] if m["file_id"] != keeper]
        before = member_lines(client(config, env, "groups").stdout)
        assert "suggested keeper" in before[keeper] and "decision" not in before[keeper]
        assert all("[" not in before[other] for other in others)  # nothing decided, nothing suggested

        decided = client(config, env, "decide", "trash", *map(str, others), "--json")

        queued = json.loads(decided.stdout)
        assert [(d["action"], d["file_id"], d["state"]) for d in queued] == [
            ("trash", other, "queued") for other in others
        ]
        after = member_lines(client(config, env, "groups").stdout)
        assert all(f"decision {d['id']}: trash, queued" in after[d["file_id"]] for d in queued)
        assert "suggested keeper" in after[keeper] and "decision" not in after[keeper]
    finally:
        stop(daemon)


def test_keep_suggested_keeps_the_keeper_and_trashes_the_rest(setup):
    tmp, config, env = setup
    (tmp / "photos" / "c.jpg").write_bytes((tmp / "photos" / "a.jpg").read_bytes())
    daemon = start_daemon(config, env)
    try:
        group = wait_for_members(config, env, 3)
        keeper = next(m for m in group["members"] if m["suggested"] == "keep")
        unknown = client(config, env, "decide", "keep-suggested", "999", check=False)
        assert unknown.returncode == 1 and "404" in unknown.stderr

        done = client(config, env, "decide", "keep-suggested", str(group["id"]))

        assert done.stdout.splitlines()[0].startswith("decision ")
        assert f": keep file {keeper['file_id']} {keeper['path']}: queued" in done.stdout
        assert done.stdout.count(": trash file ") == 2
        applied = json.loads(client(config, env, "apply", "--json").stdout)
        assert applied["applied"] == 3
        assert [m for m in group["members"] if Path(m["path"]).exists()] == [keeper]
        assert len(list((tmp / "trash").rglob("*.jpg"))) == 2
    finally:
        stop(daemon)


def test_not_duplicates_survive_a_restart_and_a_rehash(setup):
    tmp, config, env = setup
    daemon = start_daemon(config, env)
    try:
        group = wait_for_group(config, env)
        client(config, env, "decide", "not-duplicates", "--group", str(group["id"]))
        assert json.loads(client(config, env, "groups", "--json").stdout)["total"] == 0
    finally:
        stop(daemon)
    os.utime(tmp / "photos" / "sub" / "b.jpg")  # changed mtime: re-hashed and matched again at start-up
    daemon = start_daemon(config, env)
    try:
        wait_for_status(config, env)
        deadline = time.monotonic() + 20
        while wait_for_status(config, env)["state"] != "watching" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert json.loads(client(config, env, "groups", "--json").stdout)["total"] == 0
    finally:
        stop(daemon)


def test_client_reports_an_unreachable_daemon(setup):
    tmp, config, env = setup
    (tmp / "state").mkdir(exist_ok=True)
    (tmp / "state" / "token").write_text("x" * 40)
    result = client(config, env, "status", check=False)
    assert result.returncode == 69


@pytest.mark.parametrize("step", STEPS)
def test_daemon_crash_at_each_sorter_step_then_restart(setup, step):
    tmp, config, env = setup
    daemon = start_daemon(config, env, crash_at=step)
    try:
        group = wait_for_group(config, env)
        victim = next(m for m in group["members"] if m["suggested"] == "trash")
        original = Path(victim["path"]).read_bytes()
        client(config, env, "decide", "trash", str(victim["file_id"]))
        client(config, env, "apply", check=False)  # the daemon dies in the middle
        assert daemon.wait(30) == 70
    finally:
        stop(daemon)
    daemon = start_daemon(config, env)  # recovery runs at start-up
    try:
        assert wait_for_status(config, env)["state"]
        assert len(copies_of(original, tmp / "photos", tmp / "trash")) == 2  # the keeper and the victim
        if Path(victim["path"]).exists():  # rolled back: the decision is queued again
            client(config, env, "apply")
        assert not Path(victim["path"]).exists()
        done = [a for a in _journal(tmp) if a.kind == "trash" and a.state == "done"]
        assert len(done) == 1
        client(config, env, "undo", str(done[0].id))
        assert Path(victim["path"]).read_bytes() == original
        assert len(copies_of(original, tmp / "photos", tmp / "trash")) == 2
    finally:
        stop(daemon)


def _journal(tmp: Path) -> list:
    from comparimg.index import journal, open_index

    with open_index(tmp / "state" / "index.sqlite3") as index:
        rows = journal.list_actions(index.db)
    assert not [r for r in rows if r.state == "open"]
    return rows


def test_keep_suggested_keeps_reference_copies_and_leaves_missing_ones_alone():
    from comparimg.client import keep_suggested_requests

    def member(file_id: int, suggested: str, reference: bool = False, state: str = "ok") -> dict:
        return {"file_id": file_id, "suggested": suggested, "reference": reference, "state": state}

    group = {
        "id": 7,
        "members": [
            member(1, "trash"),
            member(2, "keep"),
            member(3, "trash", reference=True),
            member(4, "trash", state="missing"),
        ],
    }
    bodies = [body for _, _, body in keep_suggested_requests(group)]
    assert [(b["action"], b["file_id"], b["group_id"]) for b in bodies] == [
        ("keep", 2, 7),
        ("keep", 3, 7),
        ("trash", 1, 7),
    ]
