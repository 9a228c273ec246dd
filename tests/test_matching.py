"""The matching room: HashIndex against a brute-force scan, and grouping without chaining."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from comparimg.matching import (
    ABSENT,
    LONE_WINDOW_MARGIN,
    MAX_WINDOWS,
    SLOT_AFTER_TURN,
    TURNED_WINDOWS,
    HashIndex,
    group_matches,
    window_orientations,
)
from comparimg.model import FileFacts, Fingerprint, Match

RNG_SEED = 7


def flip_bits(value: int, count: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), count):
        value ^= 1 << bit
    return value


def random_fp(rng: random.Random, windows: int = 10) -> Fingerprint:
    return Fingerprint(
        "",
        1,
        1,
        "PNG",
        tuple(rng.getrandbits(64) for _ in range(8)),
        tuple(rng.getrandbits(64) for _ in range(windows)),
    )


def random_phash(rng: random.Random) -> tuple[int, ...]:
    return tuple(rng.getrandbits(64) for _ in range(8))


def turned_layout(rng: random.Random, content: bool = True) -> list[int]:
    """Random window hashes in the layout with turned windows (the content slot empty unless `content`)."""
    windows = [rng.getrandbits(64) for _ in range(MAX_WINDOWS * (1 + len(TURNED_WINDOWS)))]
    if not content:
        for block in range(1 + len(TURNED_WINDOWS)):
            windows[block * MAX_WINDOWS + MAX_WINDOWS - 1] = ABSENT
    return windows


def brute_force(
    stored: dict[int, Fingerprint], query: Fingerprint, threshold: int, lone_margin: int = LONE_WINDOW_MARGIN
) -> dict[int, tuple]:
    """The query rules of matching.py, by brute force: {file id: (via, distance)}; window pairs count only
    when a 16-bit chunk differs by at most one bit (the window search radius), and a file met by windows
    alone only when two window comparisons meet it or one within `lone_margin` bits less."""
    ids = list(stored)
    glob = np.array([stored[i].phash[0] for i in ids], dtype=np.uint64)
    wins = np.zeros((len(ids), MAX_WINDOWS), dtype=np.uint64)
    for row, file_id in enumerate(ids):
        upright = stored[file_id].windows[:MAX_WINDOWS]
        wins[row, : len(upright)] = upright
    turned = window_orientations(query.windows) if query.windows else {0: np.zeros(0, np.uint64)}
    if len(query.phash) < 8:
        turned = {0: turned[0]}
    query_windows = np.concatenate(list(turned.values()))
    query_windows = query_windows[query_windows != ABSENT]
    slotted = np.zeros((len(turned), MAX_WINDOWS), dtype=np.uint64)  # each turned window at its new slot
    for row, (orientation, hashes) in enumerate(turned.items()):
        for slot, value in enumerate(hashes.tolist()):
            slotted[row, SLOT_AFTER_TURN[orientation][slot]] = value
    phash = np.array(query.phash, dtype=np.uint64)

    def distances(xor: np.ndarray, valid: np.ndarray) -> np.ndarray:
        # Distances of window pairs (99 where not comparable), one row per stored file.
        chunks = np.bitwise_count(np.ascontiguousarray(xor)[..., None].view(np.uint16)).min(axis=-1)
        found = np.where(valid & (chunks <= 1), np.bitwise_count(xor).astype(np.int64), 99)
        return found.reshape(len(ids), -1)

    best_global = np.bitwise_count(glob[:, None] ^ phash[None, :]).min(axis=1).astype(np.int64)
    present = wins != ABSENT
    window = np.concatenate(  # every window comparison (rule) of the query, one column each
        [
            distances(wins[:, None, :] ^ phash[None, :, None], present[:, None, :]),
            distances(glob[:, None] ^ query_windows[None, :], np.ones((len(ids), len(query_windows)), bool)),
            distances(wins[:, None, :] ^ slotted[None], present[:, None, :] & (slotted != ABSENT)[None]),
        ],
        axis=1,
    )
    best_window = window.min(axis=1, initial=99)
    agreeing = (window <= threshold).sum(axis=1)
    found = {}
    for row, file_id in enumerate(ids):
        if best_global[row] <= threshold:
            found[file_id] = ("global", int(best_global[row]))
        elif best_window[row] <= threshold - lone_margin or (
            best_window[row] <= threshold and agreeing[row] >= 2
        ):
            found[file_id] = ("window", int(best_window[row]))
    return found


@pytest.fixture
def planted():
    """2 000 random fingerprints, and queries planted at every distance 0..14 from some of them."""
    rng = random.Random(RNG_SEED)
    stored = {file_id: random_fp(rng, windows=rng.choice([0, 10, 11])) for file_id in range(2000)}
    for file_id in range(0, 2000, 3):  # fingerprints with turned windows, some without a content hash
        windows = tuple(turned_layout(rng, file_id % 2 == 1))
        stored[file_id] = Fingerprint("", 1, 1, "PNG", stored[file_id].phash, windows)
    queries = []
    for distance in range(15):
        target = stored[rng.randrange(2000)]
        orientation = rng.randrange(8)
        phash = [rng.getrandbits(64) for _ in range(8)]
        phash[orientation] = flip_bits(target.phash[0], distance, rng)
        queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash), ()))
        if target.windows:
            slot = rng.randrange(min(len(target.windows), 10))
            windows = [rng.getrandbits(64) for _ in range(10)]
            windows[slot] = flip_bits(target.windows[slot], distance, rng)
            queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash[::-1]), tuple(windows)))
            queries.append(
                Fingerprint("", 1, 1, "PNG", (flip_bits(target.windows[slot], distance, rng),) * 8)
            )
        # A query with turned windows, one of them (any orientation) near the target's global hash.
        windows = turned_layout(rng, distance % 2 == 0)
        position = rng.randrange(1 + len(TURNED_WINDOWS)) * MAX_WINDOWS + rng.randrange(MAX_WINDOWS - 1)
        windows[position] = flip_bits(target.phash[0], distance, rng)
        phash = tuple(rng.getrandbits(64) for _ in range(8))
        queries.append(Fingerprint("", 1, 1, "PNG", phash, tuple(windows)))
        queries.append(Fingerprint("", 1, 1, "PNG", phash[:1], tuple(windows)))  # without orientations
    return stored, queries


def as_found(candidates) -> dict[int, tuple]:
    return {c.file_id: (c.via, c.distance) for c in candidates}


def test_query_finds_exactly_what_a_brute_force_scan_finds(planted):
    stored, queries = planted
    index = HashIndex(threshold=10)
    index.add_many(stored.items())
    hits = 0
    for query in queries:
        expected = brute_force(stored, query, 10)
        assert as_found(index.query(query)) == expected
        hits += len(expected)
    assert hits >= 20  # the planted neighbours within 10 bits are there


def test_incremental_adds_and_bulk_load_answer_alike(planted):
    stored, queries = planted
    bulk, one_by_one = HashIndex(), HashIndex()
    bulk.add_many(stored.items())
    for file_id, fp in stored.items():  # crosses the pending limit and merges segments
        one_by_one.add(file_id, fp)
    assert len(bulk) == len(one_by_one) == len(stored)
    for query in queries:
        assert bulk.query(query) == one_by_one.query(query)


def test_global_candidate_reports_the_orientation_that_met():
    rng = random.Random(1)
    stored = random_fp(rng)
    index = HashIndex()
    index.add(5, stored)
    phash = [rng.getrandbits(64) for _ in range(8)]
    phash[3] = flip_bits(stored.phash[0], 4, rng)
    [candidate] = index.query(Fingerprint("", 1, 1, "PNG", tuple(phash)))
    assert (candidate.file_id, candidate.distance, candidate.orientation, candidate.via) == (
        5,
        4,
        3,
        "global",
    )


@pytest.mark.parametrize("orientation", range(8))
def test_turned_window_candidates_report_the_orientation_that_met(orientation):
    """Both directions: the query's global hash turned against a stored window (the query is a turned crop)
    and the query's windows turned against a stored global hash (the stored file is a turned crop)."""
    rng = random.Random(orientation)
    cropped = Fingerprint("", 1, 1, "PNG", random_phash(rng), tuple(turned_layout(rng)))
    index = HashIndex()
    index.add(1, cropped)
    phash = [rng.getrandbits(64) for _ in range(8)]
    phash[orientation] = flip_bits(cropped.windows[4], 3, rng)
    [candidate] = index.query(Fingerprint("", 1, 1, "PNG", tuple(phash)))
    found = (candidate.file_id, candidate.distance, candidate.orientation, candidate.via)
    assert found == (1, 3, orientation, "window")

    query = Fingerprint("", 1, 1, "PNG", random_phash(rng), tuple(turned_layout(rng)))
    whole = int(window_orientations(query.windows)[orientation][2])
    index.add(2, Fingerprint("", 1, 1, "PNG", (flip_bits(whole, 2, rng),) * 8))
    found = {c.file_id: c for c in index.query(query)}
    assert (found[2].distance, found[2].orientation, found[2].via) == (2, orientation, "window")


def test_empty_window_slots_never_match():
    rng = random.Random(3)
    windows = turned_layout(rng, content=False)
    stored = Fingerprint("", 1, 1, "PNG", (rng.getrandbits(64),) * 8, tuple(windows))
    bulk, single = HashIndex(), HashIndex()
    bulk.add_many([(1, stored)])
    single.add(1, stored)
    query = Fingerprint("", 1, 1, "PNG", (rng.getrandbits(64),) * 8, tuple(turned_layout(rng, content=False)))
    assert bulk.query(query) == single.query(query) == []
    assert bulk.query(Fingerprint("", 1, 1, "PNG", (ABSENT,) * 8)) == []


def test_remove_replace_contains_exclude_and_thresholds():
    rng = random.Random(2)
    fps = [random_fp(rng) for _ in range(3)]
    index = HashIndex(threshold=6, window_threshold=0)
    for file_id, fp in enumerate(fps):
        index.add(file_id, fp)
    assert 1 in index and len(index) == 3
    assert [c.file_id for c in index.query(fps[1])] == [1]
    assert index.query(fps[1], exclude={1}) == [] and index.query(fps[1], exclude=1) == []
    index.remove(1)
    index.remove(99)  # unknown ids are ignored
    assert 1 not in index and len(index) == 2 and index.query(fps[1]) == []
    index.add(0, fps[2])  # re-adding an id replaces its hashes
    assert sorted(c.file_id for c in index.query(fps[2])) == [0, 2]
    near = Fingerprint("", 1, 1, "PNG", (flip_bits(fps[2].phash[0], 8, rng),) * 8)
    assert index.query(near) == []
    assert sorted(c.file_id for c in index.query(near, threshold=8)) == [0, 2]


def test_removed_ids_vanish_from_built_segments_and_after_merges():
    rng = random.Random(3)
    fps = {file_id: random_fp(rng) for file_id in range(3000)}
    index = HashIndex()
    index.add_many(fps.items())
    for file_id in range(0, 3000, 2):
        index.remove(file_id)
    for file_id in range(3000, 4100):  # enough adds to build and merge segments again
        index.add(file_id, random_fp(rng))
    assert len(index) == 1500 + 1100
    assert index.query(fps[10]) == []
    assert [c.file_id for c in index.query(fps[11])] == [11]
    assert index.nbytes() > 0


def planted_queries(stored: dict[int, Fingerprint], targets: list[int], rng: random.Random) -> list:
    """Queries in the real shape (8 orientations, turned windows), each near one target by its global hash
    or by a window, at 0..10 bits."""
    queries = []
    for number, target in enumerate(targets):
        fp = stored[target]
        phash = list(random_phash(rng))
        windows = turned_layout(rng, content=False)
        if number % 2 == 0 or not fp.windows:
            phash[rng.randrange(8)] = flip_bits(fp.phash[0], number % 11, rng)
        else:
            slot = rng.randrange(min(len(fp.windows), 10))
            windows[slot] = flip_bits(fp.windows[slot], number % 5, rng)
        queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash), tuple(windows)))
    return queries


def test_segments_built_merged_and_thinned_answer_as_a_brute_force_scan():
    # Bulk-loaded, then added one by one (pending list, small segments, merges), some removed or replaced:
    # every layout a segment can have answers exactly what the rules find by brute force.
    rng = random.Random(21)
    stored = {file_id: random_fp(rng, windows=rng.choice([0, 10, 11])) for file_id in range(4000)}
    for file_id in range(0, 4000, 4):
        stored[file_id] = Fingerprint("", 1, 1, "PNG", random_phash(rng), tuple(turned_layout(rng, False)))
    index = HashIndex(threshold=10)
    index.add_many(itertools.islice(stored.items(), 2500))
    for file_id in range(2500, 4000):
        index.add(file_id, stored[file_id])
    for file_id in range(0, 4000, 7):
        index.remove(file_id)
        del stored[file_id]
    for file_id in range(1, 4000, 50):  # replaced: the new fingerprint only
        stored[file_id] = random_fp(rng)
        index.add(file_id, stored[file_id])
    assert index._segments and index._pending and len(index) == len(stored)  # a merged segment, pending
    queries = planted_queries(stored, rng.sample(sorted(stored), 40), rng)
    hits = 0
    for query in queries:
        expected = brute_force(stored, query, 10)
        assert as_found(index.query(query)) == expected
        hits += len(expected)
    assert hits >= 40


def test_a_large_segment_answers_as_a_brute_force_scan():
    # Past 65 536 images a segment keeps the high bits of its rows aside and reads a dense bucket table.
    rng = np.random.default_rng(5)
    count = 70_000
    rows = rng.integers(1, 2**64, size=(count, 11), dtype=np.uint64, endpoint=False).tolist()
    stored = {i: Fingerprint("", 1, 1, "PNG", (row[0],) * 8, tuple(row[1:])) for i, row in enumerate(rows)}
    index = HashIndex(threshold=10)
    index.add_many(stored.items())
    segment = index._segments[0]
    assert segment.high is not None and segment.used is None  # the layout this test is for
    targets = [0, 65_535, 65_536, 65_537, count - 1, 69_000]
    for query in planted_queries(stored, targets, random.Random(5)):
        assert as_found(index.query(query)) == brute_force(stored, query, 10)
    assert index.query(stored[count - 1], exclude=count - 1) == []
    assert [c.file_id for c in index.query(stored[66_000])] == [66_000]


def test_bulk_arrays_in_any_order_with_a_repeated_id_keep_its_last_row():
    rng = random.Random(9)
    fps = [random_fp(rng) for _ in range(5)]
    hashes = np.array([(fp.phash[0], *fp.windows, 0) for fp in fps], dtype=np.uint64)
    present = hashes != 0
    index = HashIndex()
    index.add_arrays(np.array([30, 10, 20, 10, 40]), hashes, present)  # id 10 twice: row 3 wins
    assert len(index) == 4 and 10 in index and 11 not in index
    assert [c.file_id for c in index.query(fps[3])] == [10]
    assert index.query(fps[1]) == []
    assert [c.file_id for c in index.query(fps[0])] == [30]
    index.add_arrays(np.array([1, 2]), hashes[:2], present[:2])  # ascending ids: used as given
    assert [c.file_id for c in index.query(fps[0])] == [1, 30]


def test_a_small_segment_absorbs_the_newer_ones_so_one_at_most_is_sparse():
    # Each segment with a sparse bucket table costs a query a rank computation: new entries merge into it.
    rng = random.Random(10)
    index = HashIndex()
    index.add_many((file_id, random_fp(rng)) for file_id in range(8000))  # ~350 000 entries: sparse
    assert index._segments[0].used is not None
    last = None
    for file_id in range(8000, 9100):  # one flush of the pending list: a segment of 1 024
        last = random_fp(rng)
        index.add(file_id, last)
    assert len(index._segments) == 1 and len(index) == 9100
    assert [c.file_id for c in index.query(last)] == [9099]


def test_a_small_index_holds_little_memory():
    # A small segment's bucket table holds its used keys' starts and a 0.6 MB bitmap to find them (it was a
    # dense 25 MB table for any segment).
    rng = random.Random(8)
    index = HashIndex()
    index.add_many((file_id, random_fp(rng)) for file_id in range(200))
    entries = 200 * 11 * 4  # a global hash and 10 windows, each in 4 chunk buckets
    assert index.nbytes() <= 600_000 + 20 * entries


def facts(
    file_id: int, pixels: int = 100, size: int = 1000, reference: bool = False, content: str = ""
) -> FileFacts:
    return FileFacts(
        file_id,
        f"/photos/{file_id:03d}.jpg",
        size,
        pixels,
        pixels,
        10**18 + file_id,
        "JPEG",
        content or f"hash{file_id}",
        reference,
    )


def near(a: int, b: int, distance: int = 4) -> Match:
    return Match(min(a, b), max(a, b), "near", distance, 0)


def member_sets(groups) -> list[set[int]]:
    return [{m.file_id for m in g.members} for g in groups]


def assert_members_match_their_leader(groups, edges):
    pairs = {(min(m.file_a, m.file_b), max(m.file_a, m.file_b)) for m in edges}
    for group in groups:
        for member in group.members:
            pair = (min(member.file_id, group.leader), max(member.file_id, group.leader))
            assert member.file_id == group.leader or pair in pairs, (group, member)


def test_no_chaining_through_an_intermediate():
    # B (1) matches A (0) and C (2): it leads and takes both; D (3) matches only A, which is taken.
    files = {0: facts(0, 90), 1: facts(1, 200), 2: facts(2, 80), 3: facts(3, 50)}
    edges = [near(0, 1), near(1, 2), near(0, 3)]
    groups = group_matches(files, edges)
    assert member_sets(groups) == [{0, 1, 2}]
    assert groups[0].leader == 1
    assert_members_match_their_leader(groups, edges)
    # A chain A~B~C~D~E of different framings: no group holds two files joined only through others.
    files = {i: facts(i, 100 + i) for i in range(5)}
    edges = [near(i, i + 1) for i in range(4)]
    groups = group_matches(files, edges)
    assert_members_match_their_leader(groups, edges)
    assert all(len(g.members) <= 3 for g in groups)


def test_the_original_leads_its_copies_even_when_a_copy_is_the_better_keeper():
    # 0 is an original; 1 (upscaled, the best keeper by resolution), 2 (cropped) and 3 (watermarked) are
    # its copies. The crop and the watermark do not match the upscaled copy, only the original.
    files = {0: facts(0, 100), 1: facts(1, 200), 2: facts(2, 90), 3: facts(3, 100, 900)}
    edges = [near(0, 1), near(0, 2), near(0, 3), near(1, 3)]
    [group] = group_matches(files, edges)
    assert group.leader == 0 and {m.file_id for m in group.members} == {0, 1, 2, 3}


def test_grouping_does_not_depend_on_edge_order():
    rng = random.Random(4)
    files = {i: facts(i, rng.randrange(50, 500), rng.randrange(1000, 5000)) for i in range(30)}
    edges = [
        near(a, b, rng.randrange(11)) for a, b in itertools.combinations(range(30), 2) if rng.random() < 0.15
    ]
    expected = group_matches(files, edges)
    for seed in range(5):
        shuffled = edges[:]
        random.Random(seed).shuffle(shuffled)
        flipped = [Match(m.file_b, m.file_a, m.kind, m.distance, m.orientation) for m in shuffled]
        assert group_matches(files, shuffled) == expected
        assert group_matches(files, flipped) == expected
    assert_members_match_their_leader(expected, edges)


def test_member_orientation_turns_the_leader_into_the_member():
    files = {0: facts(0, 50), 1: facts(1, 300), 2: facts(2, 40)}
    # file 0 turned by rot90 gives file 1; file 1 turned by flip_h gives file 2
    edges = [Match(0, 1, "near", 2, 1), Match(1, 2, "near", 3, 4), Match(0, 2, "near", 9, 0)]
    [group] = group_matches(files, edges)
    assert group.leader == 1
    assert {m.file_id: m.orientation for m in group.members} == {1: 0, 0: 3, 2: 4}


def test_not_duplicates_are_never_grouped_and_exact_groups_are_exact():
    files = {0: facts(0, content="same"), 1: facts(1, content="same"), 2: facts(2, 50), 3: facts(3, 40)}
    edges = [Match(0, 1, "exact", 0, 0), near(0, 2), near(2, 3)]
    groups = group_matches(files, edges, not_duplicates=[(2, 0)])
    assert member_sets(groups) == [{0, 1}, {2, 3}]
    assert [g.kind for g in groups] == ["exact", "near"]
    assert group_matches(files, [near(0, 7)]) == []  # unknown files are ignored


def _flip(value: int, bits: list[int]) -> int:
    return value ^ sum(1 << bit for bit in bits)


def test_with_a_lone_window_margin_a_lone_rule_at_the_threshold_makes_no_candidate_two_or_a_closer_do():
    # The query's window slot 0 meets the stored picture's global hash; nothing else of theirs meets. Its
    # bits differ outside the lowest 16-bit chunk, which the window search (radius 1) finds.
    stored_global = 0x0F0F_3C3C_A5A5_5A5A
    far = 0xF0F0_C3C3_5A5A_A5A5  # every bit differs from the stored global hash
    index = HashIndex(threshold=10, lone_window_margin=2)
    index.add(1, Fingerprint("", 1, 1, "PNG", (stored_global,)))

    def query_with(window: int, slots: int = 1) -> list:
        return index.query(Fingerprint("", 1, 1, "PNG", (far,), (window,) * slots))

    at_threshold = _flip(stored_global, [16, 17, 18, 19, 32, 33, 34, 35, 48, 49])
    closer = _flip(stored_global, [16, 17, 18, 19, 32, 33, 48, 49])
    assert query_with(at_threshold) == []
    assert [(c.file_id, c.via, c.distance) for c in query_with(closer)] == [(1, "window", 8)]
    assert [(c.file_id, c.via, c.distance) for c in query_with(at_threshold, 2)] == [(1, "window", 10)]
    default = HashIndex(threshold=10)  # the daemon's: every window candidate is judged
    default.add(1, Fingerprint("", 1, 1, "PNG", (stored_global,)))
    lone = default.query(Fingerprint("", 1, 1, "PNG", (far,), (at_threshold,)))
    assert [(c.file_id, c.via, c.distance) for c in lone] == [(1, "window", 10)]
