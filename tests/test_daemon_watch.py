"""The daemon as a subprocess on real directories with real inotify: what people do to photo folders."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, fresh_scan, photo_bytes, png_bytes, present, wait_for


@pytest.fixture
def root(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


@pytest.fixture
def daemon(tmp_path, root):
    running = Daemon(tmp_path, [root], settle=0.5)
    yield running
    running.stop()


def test_duplicate_copied_in_appears_in_the_export_within_settle_plus_one_second(tmp_path, root):
    (root / "a.jpg").write_bytes(photo_bytes(1))
    daemon = Daemon(tmp_path, [root], settle=1.0).start()
    try:
        shutil.copyfile(root / "a.jpg", root / "copy.jpg")
        landed = time.monotonic()
        wait_for(
            lambda: {str(root / "a.jpg"), str(root / "copy.jpg")} in daemon.grouped_paths(),
            timeout=10,
            message=daemon.log()[-2000:],
        )
        latency = time.monotonic() - landed
        print(f"copy → export: {latency:.2f} s (settle 1.0 s)")
        assert latency <= 1.0 + 1.0
    finally:
        assert daemon.stop() == 0


def test_slow_writer_is_hashed_once_after_it_stops(daemon, root, tmp_path):
    daemon.start()
    data = photo_bytes(2, side=160)
    target = root / "slow.jpg"
    with open(target, "wb") as out:  # fd held open, 1 KB chunks with pauses shorter than the settle time
        for start in range(0, len(data), 1024):
            out.write(data[start : start + 1024])
            out.flush()
            time.sleep(0.1)
    wait_for(lambda: daemon.rows().get(str(target), (0, "", ""))[1] == "ok", timeout=10)
    time.sleep(1.0)
    assert daemon.log().count(f"event=indexed path='{target}'") == 1
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_temp_file_then_rename_indexes_only_the_final_name(daemon, root, tmp_path):
    daemon.start()
    temp = root / ".download.jpg.part"
    temp.write_bytes(photo_bytes(3))
    os.rename(temp, root / "final.jpg")
    partial = root / "doc.jpg.crdownload"  # a browser's partial download, not an image name
    partial.write_bytes(photo_bytes(4))
    os.rename(partial, root / "doc.jpg")
    wait_for(
        lambda: {str(root / "final.jpg"), str(root / "doc.jpg")} <= set(present(daemon.rows())), timeout=10
    )
    assert set(daemon.rows()) == {str(root / "final.jpg"), str(root / "doc.jpg")}
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_moves_in_out_and_within_the_tree_follow_rows_without_rehash(daemon, root, tmp_path):
    outside = tmp_path / "outside"
    (outside / "album").mkdir(parents=True)
    (root / "sub").mkdir()
    for i in range(3):
        (root / "sub" / f"s{i}.jpg").write_bytes(photo_bytes(10 + i))
    (root / "a.jpg").write_bytes(photo_bytes(20))
    (outside / "in.jpg").write_bytes(photo_bytes(21))
    (outside / "album" / "x.jpg").write_bytes(photo_bytes(22))
    daemon.start()
    before = daemon.rows()
    os.rename(root / "a.jpg", root / "sub" / "renamed.jpg")  # file within
    os.rename(root / "sub", root / "moved-sub")  # directory within
    os.rename(outside / "in.jpg", root / "in.jpg")  # file in
    os.rename(outside / "album", root / "album")  # directory in
    expected = {root / "moved-sub" / f"s{i}.jpg" for i in range(3)} | {
        root / "moved-sub" / "renamed.jpg",
        root / "in.jpg",
        root / "album" / "x.jpg",
    }
    wait_for(
        lambda: {str(p) for p in expected} == set(present(daemon.rows())),
        timeout=15,
        message=daemon.log()[-2000:],
    )
    after = daemon.rows()
    assert after[str(root / "moved-sub" / "renamed.jpg")][0] == before[str(root / "a.jpg")][0]
    for i in range(3):
        assert after[str(root / "moved-sub" / f"s{i}.jpg")][0] == before[str(root / "sub" / f"s{i}.jpg")][0]
    assert "event=indexed path='" + str(root / "moved-sub") not in daemon.log()
    os.rename(root / "moved-sub" / "renamed.jpg", outside / "out.jpg")  # file out
    os.rename(root / "album", outside / "album-back")  # directory out
    gone = {str(root / "moved-sub" / "renamed.jpg"), str(root / "album" / "x.jpg")}
    wait_for(lambda: not gone & set(present(daemon.rows())), timeout=15, message=daemon.log()[-2000:])
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_deletes_remove_files_from_their_groups(daemon, root, tmp_path):
    (root / "a.jpg").write_bytes(photo_bytes(30))
    (root / "b.jpg").write_bytes(photo_bytes(30))
    (root / "d").mkdir()
    (root / "d" / "c.jpg").write_bytes(photo_bytes(30))
    daemon.start()
    wait_for(lambda: any(len(g) == 3 for g in daemon.grouped_paths()), timeout=10)
    (root / "b.jpg").unlink()
    shutil.rmtree(root / "d")
    wait_for(lambda: daemon.grouped_paths() == [], timeout=10, message=str(daemon.grouped_paths()))
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_symlink_loops_and_bad_files_are_skipped_with_a_reason(daemon, root, tmp_path):
    (root / "d").mkdir()
    os.symlink("..", root / "d" / "loop")
    daemon.start()
    (root / "d" / "a.jpg").write_bytes(photo_bytes(40))
    (root / "d" / "broken.jpg").write_bytes(b"not a picture at all")
    wait_for(lambda: daemon.rows().get(str(root / "d" / "broken.jpg"), (0, ""))[1] == "error", timeout=10)
    wait_for(lambda: daemon.rows().get(str(root / "d" / "a.jpg"), (0, ""))[1] == "ok", timeout=10)
    daemon.check_alive()
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_removed_root_is_paused_and_resumed_without_marking_files_deleted(daemon, root, tmp_path):
    for i in range(5):
        (root / f"p{i}.jpg").write_bytes(photo_bytes(50 + i))
    daemon.start()
    before = daemon.rows()
    assert len(present(before)) == 5
    os.rename(root, tmp_path / "photos.away")
    daemon.wait_log("event=root_paused", timeout=10)
    time.sleep(1.5)
    assert daemon.rows() == before, "no file may be marked missing while its root is away"
    (tmp_path / "photos.away" / "new.jpg").write_bytes(photo_bytes(60))
    os.rename(tmp_path / "photos.away", root)
    daemon.wait_log("event=root_resumed", timeout=10)
    wait_for(lambda: str(root / "new.jpg") in present(daemon.rows()), timeout=10)
    after = daemon.rows()
    assert all(after[p][1] == "ok" for p in before)
    (root / "later.jpg").write_bytes(photo_bytes(61))
    wait_for(lambda: str(root / "later.jpg") in present(daemon.rows()), timeout=10)
    assert present(daemon.rows()) == fresh_scan([root], tmp_path)


def test_unmounted_root_is_paused_not_emptied(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=8m tmpfs {mount_point} 2>/dev/null") != 0:
        pytest.skip("needs root and tmpfs mounts")
    try:
        (mount_point / "a.jpg").write_bytes(photo_bytes(70))
        daemon = Daemon(tmp_path, [mount_point], settle=0.3).start()
        try:
            assert str(mount_point / "a.jpg") in present(daemon.rows())
            assert os.system(f"umount -l {mount_point}") == 0
            daemon.wait_log("event=root_paused", timeout=10)
            time.sleep(1.5)
            assert daemon.rows()[str(mount_point / "a.jpg")][1] == "ok"
        finally:
            daemon.stop()
    finally:
        os.system(f"umount -l {mount_point} 2>/dev/null")


def test_sigterm_drains_and_exits_within_a_few_seconds(daemon, root):
    daemon.start()
    for i in range(40):
        (root / f"t{i}.png").write_bytes(png_bytes(i))
    time.sleep(0.7)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(10) == 0
    assert time.monotonic() - started < 6
    assert "event=stopped" in daemon.log()
