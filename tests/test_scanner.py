"""The scanner: a real tree of real photos, a real index file and real worker processes."""

from __future__ import annotations

import os
import sys
import threading

import pytest
from PIL import Image

from comparimg import hashing
from comparimg.index import open_index
from comparimg.scanner import Cancelled, MatchOptions, Scanner, ScanOptions
from comparimg.scanner.walk import FoundFile, WalkProblem, walk_images


@pytest.fixture
def tree(tmp_path, write_photo):
    """A folder of photos: an exact copy, a resized PNG, a rotated copy, and unrelated pictures."""
    root = tmp_path / "photos"
    write_photo(root / "astronaut.jpg", "astronaut")
    write_photo(root / "copies" / "astronaut-copy.jpg", "astronaut")
    (root / "copies" / "astronaut-copy.jpg").write_bytes((root / "astronaut.jpg").read_bytes())
    write_photo(root / "copies" / "astronaut-small.png", "astronaut", size=(256, 256))
    write_photo(root / "coffee.jpg", "coffee")
    write_photo(root / "coffee-turned.jpg", "coffee", transpose=Image.Transpose.ROTATE_90)
    write_photo(root / "rocket.jpg", "rocket")
    write_photo(root / "chelsea.png", "chelsea")
    (root / "notes.txt").write_text("not an image, not looked at")
    return root


def scanner_for(index, pool, **match):
    return Scanner(index, pool, ScanOptions(match=MatchOptions(**match)))


def groups_by_path(index):
    found = []
    for stored in index.iter_groups():
        rows = index.files_by_ids(m.file_id for m in stored.group.members)
        found.append(
            (stored.group.kind, sorted(os.path.basename(rows[m.file_id].path) for m in stored.group.members))
        )
    return sorted(found)


def test_a_scan_finds_exact_and_near_groups_and_nothing_else(index, pool, tree):
    report = scanner_for(index, pool).scan([tree])
    assert (report.files, report.hashed, report.errors, report.unchanged) == (7, 7, 0, 0)
    assert groups_by_path(index) == [
        ("near", ["astronaut-copy.jpg", "astronaut-small.png", "astronaut.jpg"]),
        ("near", ["coffee-turned.jpg", "coffee.jpg"]),
    ]


def test_exact_copies_alone_make_an_exact_group(index, pool, tmp_path, write_photo):
    write_photo(tmp_path / "a" / "one.jpg", "moon")
    (tmp_path / "a" / "two.jpg").write_bytes((tmp_path / "a" / "one.jpg").read_bytes())
    scanner_for(index, pool).scan([tmp_path / "a"])
    assert groups_by_path(index) == [("exact", ["one.jpg", "two.jpg"])]


def test_turned_copies_need_orientations(index, pool, tree):
    scanner_for(index, pool, orientations=False).scan([tree])
    assert ("near", ["coffee-turned.jpg", "coffee.jpg"]) not in groups_by_path(index)


def test_a_second_scan_reads_no_image_bytes(index, pool, tree):
    scanner = scanner_for(index, pool)
    first = scanner.scan([tree])
    tasks_before = dict(pool.calls)
    opened = []
    watching = [True]

    def audit(event, args):
        if watching[0] and event == "open" and isinstance(args[0], str) and args[0].startswith(str(tree)):
            opened.append(args[0])

    sys.addaudithook(audit)
    try:
        second = scanner.scan([tree])
    finally:
        watching[0] = False
    assert pool.calls == tasks_before, "no task may run in a worker"
    assert opened == [], "the scanning process may not open an image"
    assert (second.files, second.hashed, second.unchanged) == (7, 0, 7)
    assert groups_by_path(index) == groups_by_path(index) and second.groups == first.groups
    assert second.seconds * 10 <= first.seconds


def test_a_moved_file_is_followed_without_hashing(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    row = index.file_by_path(str(tree / "coffee.jpg"))
    os.rename(tree / "coffee.jpg", tree / "copies" / "coffee-moved.jpg")
    report = scanner.scan([tree])
    assert (report.hashed, report.moved, report.missing) == (0, 1, 0)
    assert index.file_by_path(str(tree / "copies" / "coffee-moved.jpg")).id == row.id
    assert ("near", ["coffee-moved.jpg", "coffee-turned.jpg"]) in groups_by_path(index)


def test_a_hard_link_reuses_the_fingerprint(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    os.link(tree / "rocket.jpg", tree / "rocket-link.jpg")
    report = scanner.scan([tree])
    assert (report.hashed, report.moved) == (0, 0)
    assert ("exact", ["rocket-link.jpg", "rocket.jpg"]) in groups_by_path(index)


def test_a_changed_file_is_hashed_again_and_leaves_its_group(index, pool, tree, write_photo):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    write_photo(tree / "coffee-turned.jpg", "camera")
    os.utime(tree / "coffee-turned.jpg", ns=(1, 1))
    report = scanner.scan([tree])
    assert report.hashed == 1
    assert all("coffee.jpg" not in names for _, names in groups_by_path(index))


def test_deleted_files_are_marked_missing_and_their_group_goes(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    os.unlink(tree / "coffee-turned.jpg")
    report = scanner.scan([tree])
    assert report.missing == 1
    assert index.file_by_path(str(tree / "coffee-turned.jpg")).state == "missing"
    assert len(groups_by_path(index)) == 1


def test_a_returning_file_is_matched_again_without_hashing(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    os.rename(tree / "coffee.jpg", tree.parent / "coffee.jpg")
    scanner.scan([tree])
    os.rename(tree.parent / "coffee.jpg", tree / "coffee.jpg")
    report = scanner.scan([tree])
    assert report.hashed == 0
    assert ("near", ["coffee-turned.jpg", "coffee.jpg"]) in groups_by_path(index)


def test_an_absent_root_marks_nothing_missing(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    os.rename(tree, tree.with_name("unmounted"))
    report = scanner.scan([tree])
    assert report.absent_roots == [str(tree)] and report.missing == 0
    assert index.counts()["files_missing"] == 0
    assert len(groups_by_path(index)) == 2


def test_not_duplicates_are_never_grouped_again(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    a = index.file_by_path(str(tree / "coffee.jpg")).id
    b = index.file_by_path(str(tree / "coffee-turned.jpg")).id
    with index.transaction():
        index.add_not_duplicate(a, b, 0.0)
    scanner.linker.regroup([a, b])
    assert ("near", ["coffee-turned.jpg", "coffee.jpg"]) not in groups_by_path(index)
    os.utime(tree / "coffee.jpg", ns=(5, 5))  # forces a re-hash and a new query
    scanner.scan([tree])
    assert ("near", ["coffee-turned.jpg", "coffee.jpg"]) not in groups_by_path(index)


def test_files_under_a_reference_root_are_kept(index, pool, tmp_path, write_photo):
    write_photo(tmp_path / "ref" / "small.jpg", "chelsea", size=(226, 150))
    write_photo(tmp_path / "inbox" / "big.jpg", "chelsea")
    scanner = scanner_for(index, pool, reference_roots=(str(tmp_path / "ref"),))
    scanner.scan([tmp_path / "ref", tmp_path / "inbox"])
    (stored,) = list(index.iter_groups())
    kept = {index.file_by_id(m.file_id).path for m in stored.group.members if m.suggested == "keep"}
    assert kept == {str(tmp_path / "ref" / "small.jpg")}


def test_ingest_move_and_forget_for_the_daemon(index, pool, tree, write_photo):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    new = write_photo(tree / "new" / "rocket-small.png", "rocket", size=(300, 200))
    report = scanner.ingest_files([(str(new), str(tree))])
    assert report.hashed == 1
    assert ("near", ["rocket-small.png", "rocket.jpg"]) in groups_by_path(index)
    os.rename(tree / "new", tree / "renamed")
    assert scanner.move_path(str(tree / "new"), str(tree / "renamed"), str(tree)).moved == 1
    assert index.file_by_path(str(tree / "renamed" / "rocket-small.png")).state == "ok"
    os.unlink(tree / "renamed" / "rocket-small.png")
    scanner.forget_paths([str(tree / "renamed")])
    assert ("near", ["rocket-small.png", "rocket.jpg"]) not in groups_by_path(index)
    assert scanner.ingest_files([(str(tree / "vanished.jpg"), str(tree))]).missing == 1


def test_the_walk_reports_loops_and_skips_other_files(tmp_path, write_photo):
    root = tmp_path / "root"
    write_photo(root / "sub" / "a.JPG", "coins")
    (root / "sub" / "loop").symlink_to(root)
    (root / "self.jpg").symlink_to(root / "self.jpg")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / "z-alias").symlink_to(root / "sub")  # walked once, as sub
    os.mkfifo(root / "pipe.png")
    items = list(walk_images(str(root), hashing.SUPPORTED_EXTENSIONS))
    files = [i.path for i in items if isinstance(i, FoundFile)]
    problems = {os.path.relpath(i.path, root): i.reason for i in items if isinstance(i, WalkProblem)}
    assert len(files) == 1 and files[0].endswith("a.JPG")
    assert problems["sub/loop"].startswith("symbolic link loop")
    assert problems["self.jpg"] == "symbolic link loop"
    assert problems["dangling.jpg"] == "broken symbolic link"
    assert problems["pipe.png"] == "not a regular file"


def test_excluded_paths_are_not_walked(tmp_path, write_photo):
    write_photo(tmp_path / "r" / ".hidden" / "a.jpg", "coins")
    write_photo(tmp_path / "r" / "b.jpg", "coins")
    items = list(walk_images(str(tmp_path / "r"), hashing.SUPPORTED_EXTENSIONS, exclude=(".*", "*/.*")))
    assert [os.path.basename(i.path) for i in items] == ["b.jpg"]


def test_no_write_lock_is_held_between_hashed_files(index, pool, tree):
    import sqlite3

    blocked = []

    def try_to_write(progress):
        other = sqlite3.connect(index.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError as error:
            blocked.append((progress.hashed, str(error)))
        finally:
            other.close()

    report = scanner_for(index, pool).scan([tree], progress=try_to_write)
    assert report.hashed == 7
    assert blocked == []


@pytest.mark.parametrize("crops", [True, False])
def test_the_bulk_load_builds_the_same_entries_as_one_fingerprint_at_a_time(tmp_path, crops):
    import numpy as np

    from comparimg import matching
    from comparimg.model import FileIdentity, Fingerprint
    from comparimg.scanner.linking import hash_entries

    rng = np.random.default_rng(3)
    fingerprints = [
        Fingerprint(
            "c",
            1,
            1,
            "PNG",
            tuple(int(h) for h in rng.integers(0, 2**64, 8, dtype=np.uint64)),
            tuple(int(h) for h in rng.integers(0, 2**64, n, dtype=np.uint64)),
        )
        for n in (0, 3, matching.MAX_WINDOWS + 2, 1)
    ]
    with open_index(tmp_path / "i.sqlite3") as index, index.transaction():
        for i, fp in enumerate(fingerprints):
            index.upsert_fingerprint(f"/p/{i}.png", "/p", FileIdentity(1, i, 1, 1), fp, 0.0)
    with open_index(tmp_path / "i.sqlite3") as index:
        (batch,) = list(index.fingerprint_rows())
    hashes, present = hash_entries(batch, crops)
    for i, fp in enumerate(fingerprints):
        expected_hashes, expected_present = matching.fingerprint_entries(
            fp if crops else Fingerprint(fp.content_hash, 1, 1, "PNG", fp.phash, ())
        )
        assert (hashes[i] == expected_hashes).all() and (present[i] == expected_present).all()


@pytest.mark.parametrize("first_name", ["a-original.jpg", "z-original.jpg"])
def test_an_edge_says_how_to_turn_file_a_into_file_b(index, pool, tmp_path, write_photo, first_name):
    from comparimg.model import ORIENTATIONS

    root = tmp_path / "turned"
    original = write_photo(root / first_name, "coffee")
    # ROTATE_90 turns anticlockwise: the original's "rot90" variant
    turned = write_photo(root / "m-turned.jpg", "coffee", transpose=Image.Transpose.ROTATE_90)
    scanner_for(index, pool).scan([root])
    a, b = index.file_by_path(str(original)).id, index.file_by_path(str(turned)).id
    (edge,) = index.matches_touching([a])
    expected = "rot90" if edge.file_a == a else "rot270"
    assert (edge.file_a, edge.file_b) == tuple(sorted((a, b)))
    assert ORIENTATIONS[edge.orientation] == expected


def test_exact_copies_share_one_verification(index, pool, tmp_path, write_photo):
    root = tmp_path / "copies"
    original = write_photo(root / "a.jpg", "chelsea")
    for name in ("a-copy1.jpg", "a-copy2.jpg", "a-copy3.jpg"):
        (root / name).write_bytes(original.read_bytes())
    write_photo(root / "b-resized.png", "chelsea", size=(226, 150))
    verifications = pool.calls.get("verify_pair", 0)
    report = scanner_for(index, pool).scan([root])
    assert pool.calls.get("verify_pair", 0) - verifications == 1 == report.verified
    (stored,) = list(index.iter_groups())
    assert len(stored.group.members) == 5
    resized = index.file_by_path(str(root / "b-resized.png")).id
    near = [m for m in index.matches_touching([resized]) if m.kind == "near"]
    assert len(near) == 4  # the one verdict gives every copy its own near edge


def test_a_missing_file_back_under_another_name_is_a_move(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    row = index.file_by_path(str(tree / "coffee.jpg"))
    os.rename(tree / "coffee.jpg", tree.parent / "away.jpg")
    assert scanner.scan([tree]).missing == 1
    os.rename(tree.parent / "away.jpg", tree / "copies" / "coffee-back.jpg")
    report = scanner.scan([tree])
    assert (report.hashed, report.moved) == (0, 1)
    assert index.file_by_path(str(tree / "copies" / "coffee-back.jpg")).id == row.id
    assert ("near", ["coffee-back.jpg", "coffee-turned.jpg"]) in groups_by_path(index)


def test_a_file_moved_over_a_changed_one_takes_its_place(index, pool, tree):
    scanner = scanner_for(index, pool)
    scanner.scan([tree])
    os.replace(tree / "rocket.jpg", tree / "coffee-turned.jpg")  # coffee-turned's bytes are gone
    report = scanner.scan([tree])
    assert (report.hashed, report.moved) == (0, 1)
    assert all("coffee.jpg" not in names for _, names in groups_by_path(index))


def test_a_cancelled_scan_marks_nothing_missing_and_records_no_errors(tmp_path, index, pool, tree):
    scanner_for(index, pool).scan([tree])
    states = ("ok", "error", "missing")
    before = {r.path: (r.state, r.error) for r in index.iter_files_under(str(tree), states)}
    cancel = threading.Event()
    cancel.set()
    stopped = Scanner(index, pool, ScanOptions(), cancel=cancel)
    (tree / "new.jpg").write_bytes((tree / "rocket.jpg").read_bytes())
    with pytest.raises(Cancelled):
        stopped.scan([tree])
    after = {r.path: (r.state, r.error) for r in index.iter_files_under(str(tree), states)}
    assert after == before


def test_files_hashed_but_not_linked_when_stopped_are_linked_by_the_next_scan(tmp_path, index, pool, tree):
    cancel = threading.Event()
    stopped = Scanner(index, pool, ScanOptions(), cancel=cancel)
    verify = stopped.linker._verified_edges

    def stop_while_verifying(pairs):
        cancel.set()  # SIGTERM lands while the candidate pairs are being verified
        return verify(pairs)

    stopped.linker._verified_edges = stop_while_verifying
    with pytest.raises(Cancelled):
        stopped.scan([tree])
    rows = list(index.iter_files_under(str(tree)))
    assert len(rows) == 7 and all(r.state == "ok" for r in rows)  # hashed and kept, no error rows
    assert sorted(index.files_needing_link()) == sorted(r.id for r in rows)
    assert groups_by_path(index) == []
    assert len(stopped.linker.previews) == 0  # the workers' previews are not kept past a stopped link

    report = scanner_for(index, pool).scan([tree])  # the next start: every file is unchanged
    assert report.hashed == 0 and report.unchanged == 7
    assert index.files_needing_link() == []
    fresh = open_index(tmp_path / "fresh.sqlite3")
    try:
        scanner_for(fresh, pool).scan([tree])
        assert groups_by_path(index) == groups_by_path(fresh)
    finally:
        fresh.close()


def test_a_root_unmounted_during_the_walk_marks_nothing_missing(tmp_path, index, pool, write_photo):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=16m tmpfs {disk} 2>/dev/null") != 0:
        pytest.skip("needs root and tmpfs mounts")
    try:
        for i in range(40):
            write_photo(disk / f"{i:02d}.png", ("astronaut", "coffee", "rocket")[i % 3], size=(24 + i, 24))
        write_photo(disk / "sub" / "a.png", "chelsea", size=(64, 64))
        scanner = scanner_for(index, pool)
        assert scanner.scan([disk]).files == 41
        for i in range(12):  # new files, walked (in name order) before the known ones, read in the workers
            write_photo(disk / f"+new-{i:02d}.png", "camera", size=(30 + i, 30))

        unmounted = []

        def unmount_at_the_first_hashed_file(progress):
            if progress.hashed == 1 and not unmounted:
                unmounted.append(os.system(f"umount -l {disk}"))

        report = scanner.scan([disk], progress=unmount_at_the_first_hashed_file)
    finally:
        os.system(f"umount -l {disk} 2>/dev/null")
    assert unmounted == [0]
    assert report.missing == 0 and report.absent_roots == [str(disk)]
    assert index.counts()["files_missing"] == 0
    known = [r for r in index.iter_files_under(str(disk), ("ok", "error", "missing")) if "+new" not in r.path]
    assert len(known) == 41 and all(r.state == "ok" for r in known)  # no "not found" error rows either
