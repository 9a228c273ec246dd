"""The per-file queries of a scan or a deletion search their own index, not `files_state` (every row).

Without ANALYZE statistics SQLite chose `files_state` for `content_hash = ? AND state = 'ok'`: each file
linked then read every ok row, so a first scan of 20 000 files spent ~17 minutes in this one query
(tests/benchmarks/test_big_tree.py found it). The statements are captured as the index runs them.
"""

from __future__ import annotations

import pytest

from comparimg.index import open_index
from test_index import NOW, fingerprint, identity


@pytest.fixture
def index(tmp_path):
    with open_index(tmp_path / "index.sqlite3") as opened:
        with opened.transaction():
            for i in range(50):
                opened.upsert_fingerprint(f"/photos/{i}.jpg", "/photos", identity(i), fingerprint(i), NOW)
        yield opened


def plans_of(index, call) -> list[str]:
    """Given an index and a call on it, return the query plan of every SELECT the call ran."""
    statements: list[str] = []
    index.db.conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        index.db.conn.set_trace_callback(None)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert selects, statements
    return [" ".join(row[-1] for row in index.db.execute(f"EXPLAIN QUERY PLAN {s}")) for s in selects]


def test_files_with_a_content_hash_are_searched_by_that_hash(index):
    content_hash = index.file_by_path("/photos/7.jpg").fingerprint.content_hash
    assert index.ok_files_with_content_hash(content_hash) == [index.file_by_path("/photos/7.jpg").id]
    for plan in plans_of(index, lambda: index.ok_files_with_content_hash(content_hash)):
        assert "USING INDEX files_content_hash" in plan, plan


def test_files_needing_a_link_are_read_from_their_partial_index(index):
    assert len(index.files_needing_link()) == 50
    for plan in plans_of(index, index.files_needing_link):
        assert "files_needs_link" in plan and "files_state" not in plan, plan


def test_files_under_a_folder_are_read_from_the_path_range(index):
    assert [r.path for r in index.iter_files_under("/photos/7.jpg")] == []
    assert len(list(index.iter_files_under("/photos"))) == 50
    for plan in plans_of(index, lambda: list(index.iter_files_under("/photos/7.jpg"))):
        assert "(path>? AND path<?)" in plan and "files_state" not in plan, plan
