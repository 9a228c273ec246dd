"""The pure rule behind decisions by rule: which groups it matches, what it keeps, what it leaves alone."""

from __future__ import annotations

import pytest

from comparimg.decisions import BulkRule, CandidateGroup, CandidateMember, plan_bulk, summarize_plans


def member(file_id, path, suggested="trash", reference=False, state="ok", size=100):
    return CandidateMember(file_id, path, state, suggested, reference, size)


def group(group_id, kind, *members, decided=False, confidence=None):
    return CandidateGroup(group_id, kind, tuple(members), decided, confidence)


def pair(group_id, kind="exact", folder="/p", **options):
    base = group_id * 10
    return group(
        group_id,
        kind,
        member(base, f"{folder}/{group_id}/a.png", "keep"),
        member(base + 1, f"{folder}/{group_id}/b.png", size=40 + group_id),
        **options,
    )


def planned(rule, groups):
    plans, skipped = plan_bulk(rule, groups)
    return {
        p.group_id: ([k.file_id for k in p.keepers], [r.file_id for r in p.removed]) for p in plans
    }, skipped


def test_keeps_the_suggested_copy_and_removes_the_rest():
    plans, skipped = planned(BulkRule(), [pair(1), pair(2, "near")])
    assert plans == {1: ([10], [11]), 2: ([20], [21])} and skipped == {}


def test_similar_groups_only_when_named():
    groups = [pair(1), pair(2, "similar")]
    assert set(planned(BulkRule(), groups)[0]) == {1}
    assert set(planned(BulkRule(kinds=("exact", "near", "similar")), groups)[0]) == {1, 2}
    assert set(planned(BulkRule(kinds=("near",)), groups)[0]) == set()


def test_a_similar_group_keeps_its_picked_shot_when_named():
    shots = [
        CandidateMember(30 + k, f"/p/burst/{k}.jpg", "ok", "keep", False, 100, picked=k == 2)
        for k in range(4)
    ]
    burst = group(3, "similar", *shots, confidence=0.9)
    assert planned(BulkRule(), [burst])[0] == {}
    plans, _ = planned(BulkRule(kinds=("similar",)), [burst])
    assert plans == {3: ([32], [30, 31, 33])}
    assert planned(BulkRule(kinds=("similar",), min_confidence=0.95), [burst])[0] == {}


def test_folder_and_reference_filters():
    groups = [pair(1, folder="/a"), pair(2, folder="/ab"), pair(3, folder="/b")]
    assert set(planned(BulkRule(folder="/a"), groups)[0]) == {1}
    assert set(planned(BulkRule(folder="/a/"), groups)[0]) == {1}
    with_reference = group(4, "exact", member(40, "/ref/x.png", "keep", True), member(41, "/b/x.png"))
    plans, skipped = planned(BulkRule(reference_only=True), [*groups, with_reference])
    assert plans == {4: ([40], [41])} and skipped == {}


def test_a_reference_file_is_never_removed_even_when_suggested_for_trash():
    stale = group(
        1,
        "exact",
        member(10, "/ref/a.png", "trash", True),
        member(11, "/p/a.png", "keep"),
        member(12, "/p/b.png"),
    )
    plans, _ = planned(BulkRule(), [stale])
    assert plans == {1: ([10, 11], [12])}


def test_groups_left_alone_and_why():
    groups = [
        pair(1, decided=True),
        pair(2),
        group(3, "near", member(21, "/p/2/b.png", "keep"), member(30, "/p/3/c.png")),  # shares file 21
        group(4, "exact", member(40, "/p/4/a.png", "keep", state="missing"), member(41, "/p/4/b.png")),
        group(5, "exact", member(50, "/p/5/a.png", "keep"), member(51, "/p/5/b.png", state="error")),
        group(6, "exact", member(60, "/p/6/a.png"), member(61, "/p/6/b.png")),  # no keeper suggested
    ]
    plans, skipped = planned(BulkRule(), groups)
    assert plans == {2: ([20], [21])}
    assert skipped == {"decided": 1, "shared_file": 1, "keeper_not_present": 2, "nothing_to_remove": 1}


def test_min_confidence_never_matches_a_group_without_a_confidence():
    groups = [pair(1), pair(2, confidence=0.99), pair(3, confidence=0.5)]
    assert set(planned(BulkRule(min_confidence=0.9), groups)[0]) == {2}


def test_summary_counts_bytes_per_folder():
    plans, _ = plan_bulk(BulkRule(), [pair(1), pair(2), pair(3, folder="/q")])
    summary = summarize_plans(plans, folders=2)
    assert (summary["groups"], summary["files"], summary["bytes"], summary["folders"]) == (3, 3, 126, 3)
    assert summary["per_folder"] == [
        {"folder": "/q/3", "files": 1, "bytes": 43},
        {"folder": "/p/2", "files": 1, "bytes": 42},
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"kinds": ()},
        {"kinds": ("blurry",)},
        {"action": "delete"},
        {"action": "move"},
        {"target": "x"},
        {"folder": "relative"},
    ],
)
def test_a_bad_rule_is_refused(options):
    with pytest.raises(ValueError):
        BulkRule(**options)
