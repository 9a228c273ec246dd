"""schemathesis against the live daemon (`comparimg run` subprocess) and its own OpenAPI document, every
operation: no 5xx, no response that breaks the documented schema, status codes or content types, and no
warning (a "schema validation mismatch" fails the run). Bounded examples.

`GET /api/events` is asked for `max_events=1` (the stream ends after its `hello` event, which schemathesis
checks against the documented event schema; without it the stream never ends). `PATCH /api/config` gets
random patches: the API may only change hashing, matching, watch, logging and sorter.apply (roots and
paths answer 403), and a hook keeps `hashing.workers` at 2 at most on this shared machine."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from comparimg.web.routes import ROUTES
from test_client import client, free_port, start_daemon, stop, wait_for_group

MAX_EXAMPLES = "20"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
SCHEMATHESIS_TOML = """
[warnings]
fail-on = ["validation_mismatch", "missing_deserializer", "unresolvable_reference"]

[[operations]]
include-path = "/api/events"
parameters = { "query.max_events" = 1 }
"""
HOOKS = """
import schemathesis


@schemathesis.hook
def map_body(context, body):
    hashing = body.get("hashing") if isinstance(body, dict) else None
    workers = hashing.get("workers") if isinstance(hashing, dict) else None
    if isinstance(workers, int) and not isinstance(workers, bool) and workers > 2:
        hashing["workers"] = 2
    return body
"""


@pytest.fixture
def daemon(tmp_path, write_photo, cli_env):
    import yaml

    photos = tmp_path / "photos"
    first = write_photo(photos / "a.jpg", "astronaut", size=(160, 160))
    (photos / "b.jpg").write_bytes(first.read_bytes())
    write_photo(photos / "c.png", "astronaut", size=(80, 80), fmt="PNG")
    config = tmp_path / "comparimg.yaml"
    port = free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "roots": [str(photos)],
                "index": str(tmp_path / "state" / "index.sqlite3"),
                "export": str(tmp_path / "state" / "duplicates.json"),
                "hashing": {"workers": 1},
                "watch": {"settle_seconds": 0.2},
                "http": {"listen": f"127.0.0.1:{port}", "token_file": str(tmp_path / "state" / "token")},
                "sorter": {
                    "trash": str(tmp_path / "trash"),
                    "move_targets": {"best": str(tmp_path / "best")},
                },
            }
        )
    )
    process = start_daemon(config, cli_env)
    try:
        group = wait_for_group(config, cli_env)
        victim = next(m for m in group["members"] if m["suggested"] == "trash")
        client(config, cli_env, "decide", "trash", str(victim["file_id"]))  # a journal entry to undo
        client(config, cli_env, "apply", check=False)
        yield f"http://127.0.0.1:{port}", (tmp_path / "state" / "token").read_text().strip()
    finally:
        stop(process)


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_break(daemon, tmp_path):
    base, token = daemon
    command = shutil.which("st") or shutil.which("schemathesis")
    if command is None:
        pytest.fail("schemathesis is not installed (pip install schemathesis)")
    seed = os.environ.get("COMPARIMG_SCHEMATHESIS_SEED", "1")
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(SCHEMATHESIS_TOML)
    (tmp_path / "comparimg_st_hooks.py").write_text(HOOKS)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "comparimg_st_hooks", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [
            command,
            "--config-file",
            str(settings),
            "run",
            f"{base}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            seed,
            "--request-timeout",
            "30",
            "--no-color",
            "--generation-database",
            "none",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env=env,
    )
    report = "\n".join(line[:300] for line in result.stdout.splitlines())
    print(report[report.find("WARNINGS") :])
    assert result.returncode == 0, report[report.find("FAILURES") :][:8000] + result.stderr[-2000:]
    assert "mismatch" not in result.stdout.lower(), report[-4000:]
    # every operation of the document (PATCH /api/config and GET /api/events too) but the document itself
    count = sum(1 for route in ROUTES if route.summary is not None and route.path != "/api/openapi.json")
    assert f"Selected: {count}/{count}" in result.stdout and f"Tested: {count}" in result.stdout
