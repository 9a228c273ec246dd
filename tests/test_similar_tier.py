"""The `similar` tier without the model: grouping of similar edges beside duplicate groups, the pick of a
burst by quality, the index migration that stores verdicts, and the duplicates JSON."""

from __future__ import annotations

import pytest

from comparimg import decisions, matching
from comparimg.export import EXPORT_VERSION, build_export
from comparimg.index import MIGRATIONS, open_index
from comparimg.index.schema import VERDICT_TABLES
from comparimg.model import FileFacts, FileIdentity, Fingerprint, Group, GroupMember, Match, Quality

NOW = 1_700_000_000.0


def facts(*ids: int, quality: dict[int, Quality] | None = None) -> dict[int, FileFacts]:
    quality = quality or {}
    return {
        i: FileFacts(i, f"/p/{i}.jpg", 1000 + i, 640, 480, i, "JPEG", f"c{i}", quality=quality.get(i))
        for i in ids
    }


def near(a: int, b: int, confidence: float = 0.99) -> Match:
    return Match(a, b, "near", 4, 0, "duplicate", confidence)


def similar(a: int, b: int, confidence: float = 0.9) -> Match:
    return Match(a, b, "similar", 20, 0, "similar", confidence)


def members(group: Group) -> set[int]:
    return {m.file_id for m in group.members}


def test_similar_edges_never_make_duplicate_groups():
    files = facts(1, 2, 3)
    assert matching.group_matches(files, [similar(1, 2), similar(2, 3)]) == []
    groups = matching.similar_groups(files, [similar(1, 2), similar(1, 3)], [])
    assert [(g.kind, g.leader, members(g)) for g in groups] == [("similar", 1, {1, 2, 3})]
    assert {m.verdict for m in groups[0].members if m.file_id != 1} == {"similar"}


def test_a_duplicate_group_joins_a_similar_group_by_its_leader():
    """1 and 2 are copies (2, the larger, leads); 3 is another shot, found similar to the copy 1: the similar
    group holds 2 and 3, never two files of one duplicate group."""
    files = facts(1, 2, 3, 4)
    edges = [near(1, 2), similar(1, 3, 0.8), similar(1, 2), similar(3, 4)]
    duplicates = matching.group_matches(files, edges)
    assert [(g.kind, g.leader, members(g)) for g in duplicates] == [("near", 2, {1, 2})]
    groups = matching.similar_groups(files, edges, duplicates)
    assert len(groups) == 1 and members(groups[0]) == {2, 3, 4}
    edge_of = {m.file_id: m for m in groups[0].members}
    assert edge_of[2].confidence == 0.8 or edge_of[3].confidence == 0.8


def test_not_duplicate_marks_also_drop_similar_edges():
    files = facts(1, 2)
    assert matching.similar_groups(files, [similar(1, 2)], [], not_duplicates=[(2, 1)]) == []


def test_a_burst_suggests_nothing_for_the_trash_and_picks_the_sharpest_well_exposed_shot():
    quality = {1: Quality(40.0, 0.9), 2: Quality(90.0, 0.3), 3: Quality(70.0, 0.85), 4: Quality(10.0, 0.95)}
    files = facts(1, 2, 3, 4, quality=quality)
    burst = Group("similar", 1, tuple(GroupMember(i) for i in (1, 2, 3, 4)))
    marked = decisions.mark_suggestions(burst, files)
    assert {m.suggested for m in marked.members} == {"keep"}
    assert {m.file_id: m.reason for m in marked.members if m.reason} == {
        3: "sharpest well-exposed of 4 shots"
    }
    quality[2] = Quality(90.0, 0.9)
    marked = decisions.mark_suggestions(burst, facts(1, 2, 3, 4, quality=quality))
    assert {m.file_id: m.reason for m in marked.members if m.reason} == {2: "sharpest of 4 shots"}


def test_a_burst_without_quality_falls_back_to_the_keep_rules():
    files = facts(1, 2, 3)
    marked = decisions.mark_suggestions(Group("similar", 1, tuple(GroupMember(i) for i in (1, 2, 3))), files)
    picked = [m.file_id for m in marked.members if m.reason]
    assert picked == [decisions.suggest_keeper(list(files.values()))]
    assert "quality not measured" in marked.members[picked[0] - 1].reason


def fingerprint(seed: int) -> Fingerprint:
    return Fingerprint(f"content{seed}", 640, 480, "JPEG", tuple(range(seed, seed + 8)))


def add_files(index, n: int) -> list[int]:
    with index.transaction():
        return [
            index.upsert_fingerprint(f"/p/{i}.jpg", "/p", FileIdentity(1, i, 10 + i, i), fingerprint(i), NOW)
            for i in range(n)
        ]


def leader(file_id: int, reason: str = "") -> GroupMember:
    return GroupMember(file_id, suggested="keep", reason=reason)


def duplicate(file_id: int, confidence: float, distance: int = 3) -> GroupMember:
    return GroupMember(file_id, distance, 0, "trash", "duplicate", confidence)


def shot(file_id: int, confidence: float, reason: str = "", distance: int = 19) -> GroupMember:
    return GroupMember(file_id, distance, 0, "keep", "similar", confidence, reason)


def store_groups(index, file_ids: list[int], *groups: tuple[str, GroupMember, ...]) -> None:
    """Store groups given as (kind, leader member, other members...) for the files, replacing theirs."""
    made = [Group(kind, first.file_id, (first, *others)) for kind, first, *others in groups]
    with index.transaction():
        index.replace_groups(file_ids, made, NOW)


def test_the_verdict_migration_keeps_edges_and_group_ids_and_allows_similar(tmp_path):
    path = tmp_path / "index.sqlite3"
    before = [m.statements for m in MIGRATIONS].index(VERDICT_TABLES)
    with open_index(path, MIGRATIONS[:before]) as old:
        a, b, c = add_files(old, 3)
        with old.transaction():
            old.db.execute(
                "INSERT INTO matches (file_a, file_b, kind, distance, orientation) "
                "VALUES (?, ?, 'near', 3, 0)",
                [a, b],
            )
            old.db.execute("INSERT INTO groups (id, kind, leader, created) VALUES (41, 'near', ?, 0)", [a])
            old.db.conn.executemany(
                "INSERT INTO group_members (group_id, file_id, distance, orientation, suggested) "
                "VALUES (41, ?, ?, 0, ?)",
                [(a, 0, "keep"), (b, 3, "trash")],
            )
        with pytest.raises(Exception, match="CHECK"), old.transaction():
            old.db.execute("INSERT INTO groups (kind, leader, created) VALUES ('similar', ?, 0)", [a])
    with open_index(path) as index:
        assert index.matches_touching([a]) == [Match(a, b, "near", 3, 0, "", None)]
        (stored,) = index.groups_of([a])
        assert stored.id == 41 and [m.file_id for m in stored.group.members] == [a, b]
        with index.transaction():
            index.add_matches([Match(b, c, "similar", 22, 0, "similar", 0.81)])
        store_groups(index, [b, c], ("similar", leader(b), shot(c, 0.81, "sharpest of 2 shots", 22)))
        assert index.matches_touching([c]) == [Match(b, c, "similar", 22, 0, "similar", 0.81)]
        (similar_group,) = index.groups_of([c])
        assert similar_group.group.members[0] == GroupMember(
            c, 22, 0, "keep", "similar", 0.81, "sharpest of 2 shots"
        )
        assert index.groups_of([a]) == [], "the near group held b too: replaced"
        with index.transaction():  # the foreign keys follow the renamed tables
            index.db.execute("DELETE FROM groups WHERE id = ?", [similar_group.id])
        assert index.db.execute("SELECT count(*) FROM group_members").fetchone()[0] == 0
        counts = index.counts()
        assert (counts["groups"], counts["groups_similar"], counts["grouped_files"]) == (0, 0, 0)


def test_the_duplicates_json_lists_similar_groups_apart(tmp_path):
    with open_index(tmp_path / "index.sqlite3") as index:
        ids = add_files(index, 4)
        store_groups(
            index,
            ids,
            ("near", leader(ids[0]), duplicate(ids[1], 0.97)),
            ("similar", leader(ids[2], "sharpest of 2 shots"), shot(ids[3], 0.88)),
        )
        document = build_export(index)
        counts = index.counts()
    assert document["version"] == EXPORT_VERSION == 1
    assert [g["kind"] for g in document["groups"]] == ["near"]
    assert [g["kind"] for g in document["similar"]] == ["similar"]
    copy = document["groups"][0]["members"][1]
    assert (copy["verdict"], copy["confidence"], copy["reason"]) == ("duplicate", 0.97, None)
    shots = document["similar"][0]["members"]
    assert [m["suggested"] for m in shots] == ["keep", "keep"]
    assert shots[0]["reason"] == "sharpest of 2 shots" and shots[1]["confidence"] == 0.88
    assert (counts["groups"], counts["groups_similar"], counts["grouped_files"]) == (1, 1, 2)


def test_rules_see_the_lowest_confidence_and_the_picked_shot(tmp_path):
    from comparimg.decisions import BulkRule, plan_bulk
    from comparimg.index.bulk import candidate_groups

    with open_index(tmp_path / "index.sqlite3") as index:
        ids = add_files(index, 6)
        store_groups(
            index,
            ids,
            ("near", leader(ids[0]), duplicate(ids[1], 0.97), duplicate(ids[2], 0.91, 5)),
            ("similar", leader(ids[3]), shot(ids[4], 0.88, "sharpest of 3 shots"), shot(ids[5], 0.93)),
        )
        groups = candidate_groups(index.db, ("exact", "near", "similar"), ())
    near_group, burst = groups
    assert near_group.confidence == 0.91 and burst.confidence == 0.88
    assert [m.file_id for m in burst.members if m.picked] == [ids[4]]
    plans, _ = plan_bulk(BulkRule(kinds=("similar",)), groups)
    assert [[m.file_id for m in p.keepers] for p in plans] == [[ids[4]]]
    assert sorted(m.file_id for m in plans[0].removed) == [ids[3], ids[5]]
    assert [p.group_id for p in plan_bulk(BulkRule(min_confidence=0.95), groups)[0]] == []
    assert len(plan_bulk(BulkRule(min_confidence=0.9), groups)[0]) == 1
