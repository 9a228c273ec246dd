"""The matching room: HashIndex against a brute-force scan, and grouping without chaining."""

from __future__ import annotations

import itertools
import random

import pytest

from comparimg.matching import HashIndex, group_matches, leader_key
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


def popcount(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def chunk_close(a: int, b: int, radius: int) -> bool:
    return min(bin(((a ^ b) >> shift) & 0xFFFF).count("1") for shift in (0, 16, 32, 48)) <= radius


def brute_force(stored: dict[int, Fingerprint], query: Fingerprint, threshold: int) -> dict[int, tuple]:
    """The query rules of matching.py, by brute force: {file id: (via, distance)}; window pairs count only
    when a 16-bit chunk differs by at most one bit (the window search radius)."""
    found = {}
    for file_id, fp in stored.items():
        best_global = min(popcount(v, fp.phash[0]) for v in query.phash)
        pairs = [(query.phash[0], w) for w in fp.windows] + [(w, fp.phash[0]) for w in query.windows]
        pairs += list(zip(query.windows, fp.windows, strict=False))
        best_window = min((popcount(a, b) for a, b in pairs if chunk_close(a, b, 1)), default=99)
        if best_global <= threshold:
            found[file_id] = ("global", best_global)
        elif best_window <= threshold:
            found[file_id] = ("window", best_window)
    return found


@pytest.fixture
def planted():
    """2 000 random fingerprints, and queries planted at every distance 0..14 from some of them."""
    rng = random.Random(RNG_SEED)
    stored = {file_id: random_fp(rng, windows=rng.choice([0, 10, 11])) for file_id in range(2000)}
    queries = []
    for distance in range(15):
        target = stored[rng.randrange(2000)]
        orientation = rng.randrange(8)
        phash = [rng.getrandbits(64) for _ in range(8)]
        phash[orientation] = flip_bits(target.phash[0], distance, rng)
        queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash), ()))
        if target.windows:
            slot = rng.randrange(len(target.windows))
            windows = [rng.getrandbits(64) for _ in range(10)]
            windows[slot] = flip_bits(target.windows[slot], distance, rng)
            queries.append(Fingerprint("", 1, 1, "PNG", tuple(phash[::-1]), tuple(windows)))
            queries.append(
                Fingerprint("", 1, 1, "PNG", (flip_bits(target.windows[slot], distance, rng),) * 8)
            )
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


def test_no_chaining_through_an_intermediate():
    # B (1) is the biggest: it leads, takes A (0) and C (2) that it matches; but A~D and D≁B.
    files = {0: facts(0, 90), 1: facts(1, 200), 2: facts(2, 80), 3: facts(3, 50)}
    groups = group_matches(files, [near(0, 1), near(1, 2), near(0, 3)])
    assert member_sets(groups) == [{0, 1, 2}]
    assert groups[0].leader == 1
    # A~B, B~C, A≁C with A the best keeper: C may not join A through B.
    files = {0: facts(0, 300), 1: facts(1, 200), 2: facts(2, 100)}
    groups = group_matches(files, [near(0, 1), near(1, 2)])
    assert member_sets(groups) == [{0, 1}]
    for group in groups:
        for member in group.members:
            pair = (min(member.file_id, group.leader), max(member.file_id, group.leader))
            assert member.file_id == group.leader or pair in {(0, 1), (1, 2)}


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
    for group in expected:
        assert group.leader == min((files[m.file_id] for m in group.members), key=leader_key).file_id


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
