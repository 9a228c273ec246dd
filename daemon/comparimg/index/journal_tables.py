"""Migration 2 of the index: the decision queue and the sorter journal (read by `index.schema`)."""

JOURNAL_TABLES = (
    """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        action TEXT NOT NULL CHECK (action IN ('keep', 'trash', 'move', 'not_duplicates')),
        file_id INTEGER,
        file_ids TEXT,
        group_id INTEGER,
        target TEXT,
        path TEXT,
        device INTEGER,
        inode INTEGER,
        size INTEGER,
        mtime_ns INTEGER,
        content_hash TEXT,
        state TEXT NOT NULL
            CHECK (state IN ('queued', 'applied', 'refused', 'cancelled', 'failed', 'undone')),
        reason TEXT,
        action_id INTEGER,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX decisions_state ON decisions (state)",
    "CREATE INDEX decisions_file ON decisions (file_id)",
    """CREATE TABLE sort_actions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('trash', 'move', 'restore')),
        decision_id INTEGER,
        undo_of INTEGER,
        file_id INTEGER,
        source TEXT NOT NULL,
        dest TEXT NOT NULL,
        temp TEXT,
        info_path TEXT,
        cross_fs INTEGER NOT NULL,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'done', 'rolled_back', 'refused', 'failed', 'undone')),
        reason TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    "CREATE INDEX sort_actions_state ON sort_actions (state)",
)
