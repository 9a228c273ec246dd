"""The newcomer's path, end to end: `comparimg run` on its built-in defaults with a fresh HOME, then a copy
of a photo dropped into ~/Pictures must appear in /api/groups within a deadline.

Run with the Python of a venv into which `pip install .` (not editable) installed the project. Uses only the
standard library plus the Pillow that the project itself installed (to make the photo).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

START_DEADLINE = 60.0
FLAG_DEADLINE = 30.0  # settle (a few seconds by default) + 2 s is the promise; the rest is CI slack


def make_photo(path: Path) -> None:
    """Write a real-looking JPEG (smooth gradients and shapes, not noise) at `path`."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480))
    draw = ImageDraw.Draw(image)
    for y in range(480):
        draw.line([(0, y), (640, y)], fill=(y // 2, 80 + y // 4, 200 - y // 3))
    draw.ellipse((150, 100, 400, 350), fill=(230, 200, 40))
    draw.rectangle((420, 60, 600, 300), fill=(30, 120, 60))
    image.save(path, quality=90)


def wait_for_login_url(daemon: subprocess.Popen, log: Path) -> str:
    """Return the login link the daemon prints once it serves; raise SystemExit if it never does."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        found = re.search(r"https?://[^\s'\"]+/login\?token=[A-Za-z0-9_\-]+", log.read_text(errors="replace"))
        if found:
            return found.group(0)
        if daemon.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"the daemon printed no login link:\n{log.read_text(errors='replace')}")


def get(base: str, token: str, path: str) -> dict:
    """Return the JSON document the daemon serves at `path`."""
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def wait_until_watching(base: str, token: str) -> None:
    """Return once the start-up scan is over and the daemon watches; raise SystemExit if it never does."""
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if get(base, token, "/api/status")["state"] == "watching":
            return
        time.sleep(0.2)
    raise SystemExit(f"the daemon never reached 'watching': {get(base, token, '/api/status')}")


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="comparimg-smoke-home-"))
    pictures = home / "Pictures"
    pictures.mkdir()
    make_photo(pictures / "original.jpg")
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env.update(HOME=str(home))
    log = home / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(["comparimg", "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = wait_for_login_url(daemon, log)
        base, token = url.split("/login?token=")
        print(f"daemon up at {base}")
        wait_until_watching(base, token)  # original.jpg is indexed; the copy must come through the watcher
        shutil.copy(pictures / "original.jpg", pictures / "copy of original.jpg")
        dropped = time.monotonic()
        while time.monotonic() - dropped < FLAG_DEADLINE:
            for group in get(base, token, "/api/groups")["groups"]:
                names = {Path(member["path"]).name for member in group["members"]}
                if {"original.jpg", "copy of original.jpg"} <= names:
                    print(f"copy flagged in /api/groups after {time.monotonic() - dropped:.1f} s")
                    return 0
            time.sleep(0.2)
        print(f"the copy was not flagged within {FLAG_DEADLINE} s:\n{log.read_text(errors='replace')}")
        return 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
