"""The watcher on real directories with real inotify: events become hints."""

import os
import queue
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from comparimg.watcher import (
    Hint,
    PathFilter,
    Watcher,
    choose_observer,
    filesystem_type,
    parse_mountinfo,
)
from daemon_harness import can_limit_inotify_watches

FILTER = PathFilter(include=("*.jpg", "*.png"), exclude=(".*", "*/.*", ".Trash-*", "*/.Trash-*"))

MOUNTINFO = textwrap.dedent(
    """\
    22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
    30 22 0:40 / /mnt/nas rw,relatime shared:9 - nfs4 nas:/export rw,vers=4.2
    31 22 0:41 / /mnt/share rw,relatime shared:10 - cifs //srv/photos rw
    32 22 0:42 / /home/me/remote rw,nosuid shared:11 - fuse.sshfs me@host: rw
    33 22 0:43 / /mnt/my\\040disk rw - ext4 /dev/sdb1 rw
    34 30 0:44 / /mnt/nas/local rw - tmpfs tmpfs rw
    """
)


def test_mountinfo_is_parsed_with_escapes():
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/my disk", "ext4") in mounts
    assert ("/mnt/nas", "nfs4") in mounts


@pytest.mark.parametrize(
    ("path", "fs_type", "observer"),
    [
        ("/home/me/Pictures", "ext4", "inotify"),
        ("/mnt/nas/photos", "nfs4", "polling"),
        ("/mnt/share", "cifs", "polling"),
        ("/home/me/remote/x", "fuse.sshfs", "polling"),
        ("/mnt/nas/local/x", "tmpfs", "inotify"),
        ("/mnt/my disk/x", "ext4", "inotify"),
        ("/mnt/nasty", "ext4", "inotify"),
    ],
)
def test_network_file_systems_are_polled(path, fs_type, observer):
    assert filesystem_type(path, MOUNTINFO) == fs_type
    assert choose_observer("auto", path, MOUNTINFO) == observer


def test_explicit_observer_setting_wins():
    assert choose_observer("inotify", "/mnt/nas", MOUNTINFO) == "inotify"
    assert choose_observer("polling", "/home", MOUNTINFO) == "polling"
    assert choose_observer("auto", "/home", None) == "inotify"
    with pytest.raises(ValueError):
        choose_observer("fanotify", "/home", MOUNTINFO)


def test_path_filter_includes_names_and_excludes_relative_paths():
    assert FILTER.wants_file("/r", "/r/a/B.JPG")
    assert not FILTER.wants_file("/r", "/r/a/b.txt")
    assert not FILTER.wants_file("/r", "/r/.hidden.jpg")
    assert not FILTER.wants_file("/r", "/r/a/.cache/b.jpg")
    assert not FILTER.wants_file("/r", "/r/.Trash-0/files/b.jpg")
    assert not FILTER.wants_file("/r", "/r/a/b.jpg.part")


class Collector:
    def __init__(self) -> None:
        self.hints: queue.Queue[Hint] = queue.Queue()

    def __call__(self, hint: Hint) -> None:
        self.hints.put(hint)

    def until(self, predicate, timeout: float = 5.0) -> list[Hint]:
        seen: list[Hint] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen.append(self.hints.get(timeout=0.05))
            except queue.Empty:
                continue
            if predicate(seen):
                return seen
        raise AssertionError(f"condition not met; hints: {seen}")

    def settle(self, quiet: float = 0.8) -> list[Hint]:
        seen = []
        while True:
            try:
                seen.append(self.hints.get(timeout=quiet))
            except queue.Empty:
                return seen


@pytest.fixture
def watched(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    collector = Collector()
    watcher = Watcher(collector, FILTER, observer="inotify")
    watcher.start()
    assert watcher.watch(str(root)) == "inotify"
    yield str(root), outside, collector
    watcher.stop()


def kinds(hints, kind):
    return [h for h in hints if h.kind == kind]


def test_created_file_is_a_changed_hint(watched):
    root, _, collector = watched
    Path(root, "a.jpg").write_bytes(b"x")
    Path(root, "notes.txt").write_bytes(b"x")
    hints = collector.settle()
    assert {h.path for h in kinds(hints, "changed")} == {f"{root}/a.jpg"}
    assert all(h.root == root for h in hints)


def test_temp_file_then_rename_names_only_the_final_file(watched):
    root, _, collector = watched
    Path(root, ".a.jpg.tmp").write_bytes(b"x" * 100)
    os.rename(f"{root}/.a.jpg.tmp", f"{root}/a.jpg")
    hints = collector.settle()
    assert {h.path for h in hints} == {f"{root}/a.jpg"}
    assert {h.kind for h in hints} == {"changed"}


def test_moves_within_into_and_out_of_the_tree(watched, tmp_path):
    root, outside, collector = watched
    Path(root, "sub").mkdir()
    Path(root, "a.jpg").write_bytes(b"x")
    Path(outside, "in.jpg").write_bytes(b"x")
    collector.settle()
    os.rename(f"{root}/a.jpg", f"{root}/sub/b.jpg")
    os.rename(f"{outside}/in.jpg", f"{root}/in.jpg")
    os.rename(f"{root}/sub/b.jpg", f"{outside}/out.jpg")
    hints = collector.settle()
    assert Hint("moved", root, f"{root}/a.jpg", f"{root}/sub/b.jpg") in hints
    assert Hint("changed", root, f"{root}/in.jpg") in hints
    assert Hint("deleted", root, f"{root}/sub/b.jpg") in hints


def test_directory_moves(watched):
    root, outside, collector = watched
    Path(root, "d1").mkdir()
    Path(root, "d1", "x.jpg").write_bytes(b"x")
    Path(outside, "d2").mkdir()
    Path(outside, "d2", "y.jpg").write_bytes(b"y")
    collector.settle()
    os.rename(f"{root}/d1", f"{root}/d1b")
    hints = collector.settle()
    assert Hint("moved", root, f"{root}/d1/x.jpg", f"{root}/d1b/x.jpg") in hints
    os.rename(f"{outside}/d2", f"{root}/d2")
    hints = collector.settle()
    assert Hint("changed", root, f"{root}/d2/y.jpg") in hints
    os.rename(f"{root}/d1b", f"{outside}/d1b")
    hints = collector.settle()
    assert Hint("dir_deleted", root, f"{root}/d1b") in hints


def test_deletes(watched):
    root, _, collector = watched
    Path(root, "a.jpg").write_bytes(b"x")
    collector.settle()
    os.unlink(f"{root}/a.jpg")
    assert Hint("deleted", root, f"{root}/a.jpg") in collector.settle()


def test_symlink_loop_does_not_hang_the_watcher(watched):
    root, _, collector = watched
    Path(root, "d").mkdir()
    os.symlink("..", f"{root}/d/loop")
    Path(root, "d", "a.jpg").write_bytes(b"x")
    assert Hint("changed", root, f"{root}/d/a.jpg") in collector.settle()


def test_polling_observer_reports_changes(tmp_path):
    collector = Collector()
    watcher = Watcher(collector, FILTER, observer="polling", polling_interval=0.2)
    watcher.start()
    try:
        assert watcher.watch(str(tmp_path)) == "polling"
        (tmp_path / "a.jpg").write_bytes(b"x")
        collector.until(lambda seen: Hint("changed", str(tmp_path), f"{tmp_path}/a.jpg") in seen)
    finally:
        watcher.stop()


def test_network_mount_picks_polling(tmp_path):
    mountinfo = f"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n30 22 0:40 / {tmp_path} rw - nfs4 nas:/x rw\n"
    watcher = Watcher(Collector(), FILTER, mountinfo=lambda: mountinfo)
    watcher.start()
    try:
        assert watcher.watch(str(tmp_path)) == "polling"
    finally:
        watcher.stop()


WATCH_LIMIT_SCRIPT = """
import queue, sys, time, pathlib
from comparimg.watcher import PathFilter, Watcher
root = sys.argv[1]
hints = queue.Queue()
w = Watcher(hints.put, PathFilter(include=("*.jpg",)), observer="inotify")
w.start()
print("kind", w.watch(root), flush=True)
for i in range(3):
    pathlib.Path(root, f"late{i}").mkdir()
try:
    while True:
        h = hints.get(timeout=3)
        if h.kind == "watch_limit":
            print("watch_limit", h.path, flush=True)
            w.use_polling(root)
            print("now", w.kind_of(root), flush=True)
            break
except queue.Empty:
    print("no hint")
w.stop()
"""


@pytest.mark.skipif(not can_limit_inotify_watches(), reason="needs user namespaces (unshare -U -r)")
def test_watch_limit_is_named_and_polling_takes_over(tmp_path):
    root = tmp_path / "root"
    for i in range(2):
        (root / f"d{i}").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = f'echo 4 > /proc/sys/user/max_inotify_watches && exec {sys.executable} -c "$0" {root}'
    # Limit 4 in a fresh user namespace: the root and its two subdirectories fit, not all three late ones.
    done = subprocess.run(
        ["unshare", "-U", "-r", "sh", "-c", script, WATCH_LIMIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert "kind inotify" in done.stdout, done.stderr
    assert "watch_limit" in done.stdout, done.stdout + done.stderr
    assert "now polling" in done.stdout
    assert "fs.inotify.max_user_watches" not in done.stdout  # logged by the service, not printed here


@pytest.mark.skipif(not can_limit_inotify_watches(), reason="needs user namespaces (unshare -U -r)")
def test_watch_limit_on_the_root_falls_back_to_polling_and_logs_the_sysctl(tmp_path):
    script = (
        "import logging, sys; logging.basicConfig(); "
        "from comparimg.watcher import PathFilter, Watcher; "
        "w = Watcher(print, PathFilter(include=('*.jpg',)), observer='inotify'); w.start(); "
        "print('kind', w.watch(sys.argv[1])); w.stop()"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [
            "unshare",
            "-U",
            "-r",
            "sh",
            "-c",
            f'echo 0 > /proc/sys/user/max_inotify_watches && exec {sys.executable} -c "$0" {tmp_path}',
            script,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert "kind polling" in done.stdout, done.stdout + done.stderr
    assert "fs.inotify.max_user_watches" in done.stderr
