"""The index schema: an ordered list of migrations, each applied once and recorded in `meta`.

To change the schema, append one `Migration` to `MIGRATIONS` with the next version number; never edit an
entry that has shipped. Each migration runs inside one transaction together with the version bump, so a
crash leaves the database at the old version or the new one, never between.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from comparimg.index.journal_tables import BATCH_TABLES, JOURNAL_TABLES
from comparimg.index.labels import LABEL_TABLES
from comparimg.model import ComparImgError


class IndexUnavailable(ComparImgError):
    """The index file cannot be opened or created (not a database, a folder, no permission...)."""


class IndexSchemaTooNew(IndexUnavailable):
    """The index file was written by a newer ComparImg (its schema version is above ours)."""


class IndexDamaged(IndexUnavailable):
    """The file exists but is not a sound ComparImg index: empty, not SQLite, failing SQLite's own checks or
    without our schema version. Starting on it would lose the decisions and the journal, so nothing starts."""


class IndexInUse(IndexUnavailable):
    """Another process (another daemon) holds the index's single-instance lock."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


CORE_TABLES = (
    """CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,
        device INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT,
        width INTEGER,
        height INTEGER,
        format TEXT,
        phash INTEGER,
        phash_variants BLOB,
        windows BLOB,
        state TEXT NOT NULL CHECK (state IN ('ok', 'error', 'missing')),
        error TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    )""",
    "CREATE INDEX files_identity ON files (device, inode)",
    "CREATE INDEX files_content_hash ON files (content_hash)",
    "CREATE INDEX files_state ON files (state)",
    """CREATE TABLE matches (
        file_a INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        file_b INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('exact', 'near')),
        distance INTEGER NOT NULL,
        orientation INTEGER NOT NULL,
        PRIMARY KEY (file_a, file_b),
        CHECK (file_a < file_b)
    ) WITHOUT ROWID""",
    "CREATE INDEX matches_file_b ON matches (file_b)",
    """CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('exact', 'near')),
        leader INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        created REAL NOT NULL
    )""",
    """CREATE TABLE group_members (
        group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        distance INTEGER NOT NULL,
        orientation INTEGER NOT NULL,
        suggested TEXT NOT NULL CHECK (suggested IN ('keep', 'trash')),
        PRIMARY KEY (group_id, file_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX group_members_file ON group_members (file_id)",
    """CREATE TABLE not_duplicates (
        file_a INTEGER NOT NULL,
        file_b INTEGER NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (file_a, file_b),
        CHECK (file_a < file_b)
    ) WITHOUT ROWID""",
    """CREATE TABLE walk_errors (
        path TEXT PRIMARY KEY,
        root TEXT NOT NULL,
        reason TEXT NOT NULL,
        seen REAL NOT NULL
    )""",
    "CREATE INDEX walk_errors_root ON walk_errors (root)",
)

# SQLite cannot change a CHECK constraint in place: the tables are rebuilt with `similar` allowed, rows and
# group ids kept. Renaming groups_v6 rewrites group_members_v6's reference to it (SQLite >= 3.26).
VERDICT_TABLES = (
    """CREATE TABLE matches_v6 (
        file_a INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        file_b INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('exact', 'near', 'similar')),
        distance INTEGER NOT NULL,
        orientation INTEGER NOT NULL,
        verdict TEXT NOT NULL DEFAULT '' CHECK (verdict IN ('', 'duplicate', 'similar')),
        confidence REAL,
        PRIMARY KEY (file_a, file_b),
        CHECK (file_a < file_b)
    ) WITHOUT ROWID""",
    "INSERT INTO matches_v6 (file_a, file_b, kind, distance, orientation) "
    "SELECT file_a, file_b, kind, distance, orientation FROM matches",
    "DROP TABLE matches",
    "ALTER TABLE matches_v6 RENAME TO matches",
    "CREATE INDEX matches_file_b ON matches (file_b)",
    """CREATE TABLE groups_v6 (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('exact', 'near', 'similar')),
        leader INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        created REAL NOT NULL
    )""",
    "INSERT INTO groups_v6 (id, kind, leader, created) SELECT id, kind, leader, created FROM groups",
    """CREATE TABLE group_members_v6 (
        group_id INTEGER NOT NULL REFERENCES groups_v6 (id) ON DELETE CASCADE,
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        distance INTEGER NOT NULL,
        orientation INTEGER NOT NULL,
        suggested TEXT NOT NULL CHECK (suggested IN ('keep', 'trash')),
        verdict TEXT NOT NULL DEFAULT '',
        confidence REAL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (group_id, file_id)
    ) WITHOUT ROWID""",
    "INSERT INTO group_members_v6 (group_id, file_id, distance, orientation, suggested) "
    "SELECT group_id, file_id, distance, orientation, suggested FROM group_members",
    "DROP TABLE group_members",
    "DROP TABLE groups",
    "ALTER TABLE groups_v6 RENAME TO groups",
    "ALTER TABLE group_members_v6 RENAME TO group_members",
    "CREATE INDEX group_members_file ON group_members (file_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "files, matches, groups, not-duplicates, walk errors", CORE_TABLES),
    Migration(2, "decision queue and sorter journal", JOURNAL_TABLES),
    Migration(
        3,
        "files whose fingerprint is stored but not yet linked (a stop between the two)",
        (
            "ALTER TABLE files ADD COLUMN needs_link INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX files_needs_link ON files (id) WHERE needs_link = 1",
        ),
    ),
    # Rows already stored were written by the code before versions were kept: version 1 (see
    # model.FINGERPRINT_VERSION), so the next scan reads them again once.
    Migration(
        4,
        "the fingerprint version that wrote each row (older rows are hashed again)",
        ("ALTER TABLE files ADD COLUMN fingerprint_version INTEGER NOT NULL DEFAULT 1",),
    ),
    Migration(5, "bulk decisions: previews, their items, the batch of each journaled action", BATCH_TABLES),
    Migration(6, "the user's labelled pairs, with their features, for retraining the verifier", LABEL_TABLES),
    # The model stage's results stored with the fingerprint (model.Fingerprint.embedding, .quality). Rows
    # already stored hold none: while the model stage is on, the scanner reads such `ok` files again. The
    # embeddings (2.5 kB each) live in a table of their own, so that reading every file's hashes (the
    # matching's start) does not read them too.
    Migration(
        7,
        "image embedding (packed float16) and quality (sharpness, exposure) with each fingerprint",
        (
            """CREATE TABLE embeddings (
                file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
                vector BLOB NOT NULL
            )""",
            "ALTER TABLE files ADD COLUMN sharpness REAL",
            "ALTER TABLE files ADD COLUMN exposure REAL",
        ),
    ),
    Migration(8, "the learned verifier: similar edges and groups, each edge's verdict", VERDICT_TABLES),
)


def schema_version(db: Database) -> int:
    """Given an open database, return its schema version (0 for a new, empty file)."""
    if not db["meta"].exists():
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Given a database in autocommit mode, apply every pending migration in order; return the new version.

    Raise IndexSchemaTooNew when the file is newer than the code.
    """
    _check_versions_are_sequential(migrations)
    current = schema_version(db)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise IndexSchemaTooNew(f"index schema version {current} is newer than this program's ({latest})")
    for migration in migrations[current:]:
        _apply(db, migration)
    return max(current, latest)


def _apply(db: Database, migration: Migration) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for statement in migration.statements:
            db.execute(statement)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(migration.version)],
        )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _check_versions_are_sequential(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3... in order, got {versions}")
