"""The decisions room: keeper rules and keep / trash suggestions."""

from __future__ import annotations

import random

import pytest

from comparimg import decisions
from comparimg.matching import leader_key
from comparimg.model import Conflict, Decision, FileFacts, Group, GroupMember, Refused


def facts(file_id, width=100, height=100, size=1000, mtime_ns=10**18, path=None, reference=False):
    return FileFacts(
        file_id, path or f"/photos/{file_id}.jpg", size, width, height, mtime_ns, "JPEG", "", reference
    )


def test_highest_resolution_wins_then_size_then_age_then_shorter_path():
    assert decisions.suggest_keeper([facts(1, 100, 100, 9000), facts(2, 200, 100, 10)]) == 2
    assert decisions.suggest_keeper([facts(1, size=10), facts(2, size=20)]) == 2
    assert decisions.suggest_keeper([facts(1, mtime_ns=5), facts(2, mtime_ns=3)]) == 2
    assert decisions.suggest_keeper([facts(1, path="/a/long/name.jpg"), facts(2, path="/a/b.jpg")]) == 2


def test_reference_files_are_always_kept_all_of_them():
    members = [facts(1, 4000, 3000), facts(2, 10, 10, reference=True), facts(3, 20, 20, reference=True)]
    assert decisions.suggest_keeper(members) == 3
    assert decisions.keepers(members) == {2, 3}
    files = {m.file_id: m for m in members}
    group = Group("near", 1, tuple(GroupMember(i) for i in (1, 2, 3)))
    marked = decisions.mark_suggestions(group, files)
    assert [(m.file_id, m.suggested) for m in marked.members] == [(1, "trash"), (2, "keep"), (3, "keep")]


def test_mark_suggestions_keeps_one_file_without_references():
    files = {1: facts(1, 50, 50), 2: facts(2, 80, 80), 3: facts(3, 80, 80, size=5)}
    group = Group("near", 3, (GroupMember(3), GroupMember(1, 4), GroupMember(2, 6, 4)))
    marked = decisions.mark_suggestions(group, files)
    assert {m.file_id: m.suggested for m in marked.members} == {1: "trash", 2: "keep", 3: "trash"}
    assert [(m.distance, m.orientation) for m in marked.members] == [(0, 0), (4, 0), (6, 4)]


def test_empty_group_is_refused():
    with pytest.raises(ValueError):
        decisions.suggest_keeper([])


def test_grouping_leaders_follow_the_keeper_order():
    rng = random.Random(5)
    for _ in range(200):
        members = [
            facts(
                i,
                rng.choice([10, 20]),
                10,
                rng.choice([1, 2]),
                rng.choice([1, 2]),
                rng.choice(["/a.jpg", "/bb.jpg", "/c.jpg"]),
                rng.random() < 0.2,
            )
            for i in range(4)
        ]
        assert min(members, key=leader_key).file_id == decisions.suggest_keeper(members)


# --- the decision queue's rules -------------------------------------------------------------------------


def _decision(decision_id: int, action: str, state: str, file_id: int = 1) -> Decision:
    return Decision(decision_id, action, state, file_id=file_id)


def test_a_move_is_queued_only_to_a_configured_target():
    move = decisions.DecisionInput("move", file_id=7, target="keepers")
    assert decisions.check_queueable(move, {"keepers", "archive"}) == 7
    with pytest.raises(Refused, match=r"unknown move target 'keepers'.*archive"):
        decisions.check_queueable(move, {"archive"})
    assert decisions.check_queueable(decisions.DecisionInput("trash", file_id=3), set()) == 3
    with pytest.raises(ValueError, match="needs one file"):
        decisions.check_queueable(decisions.DecisionInput("keep"), set())


def test_not_duplicates_needs_two_files():
    decisions.check_not_duplicates([1, 2])
    with pytest.raises(Refused, match="at least two"):
        decisions.check_not_duplicates([1])


@pytest.mark.parametrize("state", ["applied", "refused", "cancelled", "failed", "undone"])
def test_only_a_queued_decision_is_cancelled(state):
    decisions.check_cancellable(_decision(4, "trash", "queued"))
    with pytest.raises(Conflict, match=f"decision 4 is {state}, not queued"):
        decisions.check_cancellable(_decision(4, "trash", state))


def test_keep_is_recorded_while_trash_and_move_go_through_the_sorter():
    assert [decisions.needs_sorter(_decision(1, a, "queued")) for a in ("keep", "trash", "move")] == [
        False,
        True,
        True,
    ]


def test_a_decision_follows_its_action():
    states = ("done", "rolled_back", "refused", "failed")
    assert [decisions.state_after_action("trash", s) for s in states] == [
        "applied",
        "queued",
        "refused",
        "failed",
    ]
    assert decisions.state_after_action("restore", "done") == "undone"


def test_keepers_a_copy_is_labelled_a_duplicate_of():
    decided = {
        1: _decision(1, "keep", "applied", 1),
        2: _decision(2, "keep", "cancelled", 2),
        3: _decision(3, "trash", "queued", 3),
        4: _decision(4, "keep", "queued", 4),
    }
    assert decisions.chosen_keepers(decided) == {1, 4}
    suggested = {3: "keep", 5: "keep", 6: "trash"}
    assert decisions.suggested_keepers(suggested, decided) == {5}
