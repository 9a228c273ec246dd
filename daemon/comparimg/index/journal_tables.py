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

# Migration 5: a bulk decision is previewed (the exact set of groups, keepers and files with their identity
# is stored), then applied as one batch whose every journaled action carries the batch id.
BATCH_TABLES = (
    """CREATE TABLE bulk_batches (
        id INTEGER PRIMARY KEY,
        rule TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN
            ('previewed', 'applying', 'cancelled', 'applied', 'undoing', 'undone', 'discarded')),
        summary TEXT NOT NULL,
        reason TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    )""",
    """CREATE TABLE bulk_items (
        id INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES bulk_batches (id) ON DELETE CASCADE,
        group_id INTEGER NOT NULL,
        keeper_ids TEXT NOT NULL,
        file_id INTEGER NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('trash', 'move')),
        target TEXT,
        path TEXT NOT NULL,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'refused', 'failed', 'undone')),
        decision_id INTEGER,
        action_id INTEGER,
        reason TEXT
    )""",
    "CREATE INDEX bulk_items_batch ON bulk_items (batch_id, state)",
    "ALTER TABLE sort_actions ADD COLUMN batch_id INTEGER",
    "CREATE INDEX sort_actions_batch ON sort_actions (batch_id) WHERE batch_id IS NOT NULL",
)
