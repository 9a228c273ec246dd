"""Browser fixtures: Debian's Chromium driven by Playwright, and the real daemon started as a subprocess.

Without Chromium (or the playwright package) the browser tests skip with a reason; when
COMPARIMG_REQUIRE_BROWSER=1 (CI) that is a failure instead. Every request to a host other than the
daemon's loopback address is aborted and recorded, so a test can assert the page loads nothing from
outside.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOGIN_URL = re.compile(r"(http://[^\s\"']+/login\?token=[A-Za-z0-9_\-.~%]+)")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _unavailable(reason: str) -> None:
    if os.environ.get("COMPARIMG_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser required (COMPARIMG_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def chromium_path() -> str | None:
    """Return the Chromium executable to use: $COMPARIMG_CHROMIUM when set (even if it is missing, so a
    run can simulate a machine without Chromium), else Debian's, else None."""
    chosen = os.environ.get("COMPARIMG_CHROMIUM")
    candidates = (
        [chosen]
        if chosen
        else ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    )
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """Yield a Playwright Chromium browser (Debian's binary), or skip / fail when there is none.

    Module scope, not session: sync Playwright keeps its event loop running while it is open, which would
    break the asyncio tests that run after the browser tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright Python package is not installed")
    executable = chromium_path()
    if executable is None:
        _unavailable("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as error:  # the launch error is the reason shown to people
            _unavailable(f"Chromium at {executable} does not start: {error}")
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    """Where tests write screenshots: $COMPARIMG_ARTIFACTS, else a folder of this run's temp dir."""
    given = os.environ.get("COMPARIMG_ARTIFACTS")
    path = Path(given) if given else tmp_path_factory.getbasetemp() / "artifacts"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("FAILED-*.png"):
        stale.unlink()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    """A `comparimg run` subprocess and what the tests need to know about it."""

    process: subprocess.Popen
    base_url: str
    login_url: str
    root: Path
    trash: Path
    archive: Path
    token: str
    output: list[str] = field(default_factory=list)

    def api(self, path: str) -> bytes:
        request = urllib.request.Request(
            self.base_url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def log(self) -> str:
        return "".join(self.output[-200:])


def _pump(stream, sink: list[str], found: threading.Event) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if LOGIN_URL.search(line):
            found.set()
    stream.close()


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    """Start the real daemon on a free loopback port (temp index, root, trash, token); stop it after.

    It matches in mode `hash` (pixel checks only: quick and steady, so a page test is not waiting on the
    model stage's regrouping on a loaded machine) unless the test is marked `matching_mode("hash+model")`.
    """
    marker = request.node.get_closest_marker("matching_mode")
    mode = marker.args[0] if marker else "hash"
    root = tmp_path / "photos"
    trash = tmp_path / "trash"
    archive = tmp_path / "archive"
    data = tmp_path / "data"
    for folder in (root, trash, archive, data):
        folder.mkdir()
    port = free_port()
    config = tmp_path / "comparimg.yaml"
    config.write_text(
        f"""
roots:
  - path: {root}
index: {data / "index.sqlite3"}
export: {data / "duplicates.json"}
hashing:
  workers: 2
matching:
  mode: {mode}
watch:
  settle_seconds: 0.5
  observer: auto
http:
  listen: 127.0.0.1:{port}
  token_file: {data / "token"}
  allowed_scan_roots: [{root}]
sorter:
  trash: {trash}
  move_targets: {{archive: {archive}}}
  apply: manual
logging:
  level: info
"""
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_DATA_HOME": str(data), "HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "daemon"), env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "comparimg", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    output: list[str] = []
    found = threading.Event()
    threading.Thread(target=_pump, args=(process.stdout, output, found), daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while not found.wait(0.1):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the daemon printed no login URL (exit {process.poll()}):\n{''.join(output)}")
        login_url = next(m.group(1) for line in output if (m := LOGIN_URL.search(line)))
        parts = urlsplit(login_url)
        base_url = f"{parts.scheme}://{parts.netloc}"
        token = (data / "token").read_text().strip()
        running = Daemon(process, base_url, login_url, root, trash, archive, token, output)
        while True:  # the URL may be printed a moment before the server accepts connections
            try:
                running.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the daemon does not answer on {base_url}:\n{running.log()}")
                time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@dataclass
class GuardedPage:
    """A page whose requests to any host but the daemon's are aborted and remembered."""

    page: object
    blocked: list[str]
    errors: list[str]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def guarded_page(request, browser, daemon: Daemon, artifacts_dir: Path) -> Iterator[GuardedPage]:
    """Yield a fresh page (own cookies) that may only talk to the daemon's loopback address."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, service_workers="block")
    page = context.new_page()
    page.set_default_timeout(20_000)
    blocked: list[str] = []
    errors: list[str] = []
    allowed = urlsplit(daemon.base_url).netloc

    def route(route, request):
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob") or (parts.netloc == allowed and parts.hostname in LOOPBACK):
            route.continue_()
        else:
            blocked.append(request.url)
            route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    yield GuardedPage(page, blocked, errors)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        page.screenshot(path=str(artifacts_dir / f"FAILED-{request.node.name}.png"))
        print(f"daemon output:\n{daemon.log()}")
    context.close()
