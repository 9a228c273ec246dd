"""`comparimg decide --rule` and `comparimg undo --batch` against a real `comparimg run` daemon."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from bulk_support import make_pairs, tree_hashes
from daemon_harness import Daemon, env_with_package, wait_for
from test_bulk_kill import api


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess:
    port = re.findall(r"event=http_listening host=\S+ port=(\d+)", daemon.log())[-1]
    common = ["--url", f"http://127.0.0.1:{port}", "--token-file", str(daemon.workdir / "token")]
    return subprocess.run(
        [sys.executable, "-m", "comparimg", *args, *common],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_with_package(),
    )


def test_decide_by_rule_previews_applies_and_undoes_the_batch(tmp_path):
    root, trash = tmp_path / "photos", tmp_path / "trash"
    pairs = make_pairs(root, 6, 2)
    before = tree_hashes(root)
    daemon = Daemon(tmp_path, [root], extra_yaml=f"sorter:\n  trash: {json.dumps(str(trash))}\n")
    daemon.start().wait_log("event=http_listening")
    try:
        wait_for(lambda: api(daemon, "GET", "/api/groups?limit=1")[1]["total"] == 8, 60, message="groups")
        # The daemon runs mode `hash`: no edge has a verifier's confidence, so no group is sure enough.
        unsure = cli(daemon, "decide", "--rule", "--min-confidence", "0.5", "--dry-run", "--json")
        assert unsure.returncode == 0, unsure.stderr
        assert json.loads(unsure.stdout)[0]["groups"] == 0
        folder = str(root / "exact")
        dry = cli(daemon, "decide", "--rule", "--kind", "exact", "--folder", folder, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "6 groups, 6 files to trash" in dry.stdout and "nothing moved yet" in dry.stdout
        assert tree_hashes(root) == before

        done = cli(daemon, "decide", "--rule", "--kind", "exact", "--folder", folder, "--json")
        assert done.returncode == 0, done.stderr
        preview, batch = json.loads(done.stdout)
        assert preview["state"] == "previewed" and batch["state"] == "applied"
        assert batch["progress"]["applied"] == 6
        left = tree_hashes(root)
        assert len(left) == len(before) - 6
        assert all(first in left and second in left for first, second in pairs["near"])

        undone = cli(daemon, "undo", "--batch", str(batch["id"]))
        assert undone.returncode == 0, undone.stderr
        assert f"batch {batch['id']} undone" in undone.stdout
        assert tree_hashes(root) == before

        usage = cli(daemon, "decide", "trash", "1", "--rule")
        assert usage.returncode == 1 and "takes no action" in usage.stderr
        missing = cli(daemon, "undo", "--batch", "999")
        assert missing.returncode == 1 and "not_found" in missing.stderr
    finally:
        daemon.stop()
