"""Rows of the `files` table: one per path ever seen, with its identity, fingerprint and state."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from sqlite_utils import Database

from comparimg.index.path_text import PATH_PARAM, bind_path
from comparimg.model import FINGERPRINT_VERSION, FileFacts, FileIdentity, Fingerprint, Quality

FILE_COLUMNS = (
    "id, root, path, device, inode, size, mtime_ns, content_hash, width, height, format, "
    "phash_variants, windows, state, error, fingerprint_version, vector, sharpness, exposure"
)
# A file's row with its embedding, when it has one (the table `embeddings`, keyed by file id).
FILE_ROWS = "files LEFT JOIN embeddings ON embeddings.file_id = files.id"
EMBEDDER_KEY = "embedder"  # meta: which model made the stored embeddings (see `adopt_embedder`)
BATCH = 500
# What a reconcile compares (`FileStamp`), read without the hash blobs: `IS NOT NULL` reads a column's type
# from the record header, not its bytes, and the embedding is only looked up by key.
STAMP_COLUMNS = (
    "id, path, device, inode, size, mtime_ns, state, error, fingerprint_version, "
    "phash_variants IS NOT NULL, EXISTS (SELECT 1 FROM embeddings WHERE embeddings.file_id = files.id)"
)


@dataclass(frozen=True, slots=True)
class FileRow:
    """One indexed path: where it is, what it was when last read, and what we learned from it."""

    id: int
    root: str
    path: str
    identity: FileIdentity
    state: str  # "ok" | "error" | "missing"
    error: str | None
    fingerprint: Fingerprint | None
    # The model.FINGERPRINT_VERSION of the code that wrote the row (1 for rows older than the column).
    fingerprint_version: int

    @property
    def fingerprint_is_stale(self) -> bool:
        """Return whether the row holds a fingerprint made by older hashing code than the running one."""
        return self.fingerprint is not None and self.fingerprint_version < FINGERPRINT_VERSION

    @property
    def lacks_embedding(self) -> bool:
        """Return whether the row holds a fingerprint without an embedding (made in mode `hash`, by code
        older than the model stage, while the model could not run, or before another model was adopted)."""
        return self.fingerprint is not None and not self.fingerprint.embedding


class FileStamp(NamedTuple):
    """What tells whether an indexed path still holds the file that was read, without its fingerprint:
    a reconcile compares it for every file of a tree, where decoding each row's hash blobs cost more than
    the rest of the comparison. Its properties answer as FileRow's do. A tuple made straight from the
    query's row (`STAMP_COLUMNS`, in field order): a reconcile makes one a file, and a dataclass with a
    FileIdentity inside cost twice the query."""

    id: int
    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    state: str  # "ok" | "error" | "missing"
    error: str | None
    fingerprint_version: int
    has_fingerprint: int  # 0 or 1
    has_embedding: int  # 0 or 1

    @property
    def identity(self) -> FileIdentity:
        """The file's identity when it was read."""
        return FileIdentity(self.device, self.inode, self.size, self.mtime_ns)

    def holds(self, identity: FileIdentity) -> bool:
        """Given a file's identity now, return whether it is the one this row was read with."""
        return (
            self.mtime_ns == identity.mtime_ns
            and self.size == identity.size
            and self.inode == identity.inode
            and self.device == identity.device
        )

    @property
    def fingerprint_is_stale(self) -> bool:
        """Return whether the row holds a fingerprint made by older hashing code than the running one."""
        return bool(self.has_fingerprint) and self.fingerprint_version < FINGERPRINT_VERSION

    @property
    def lacks_embedding(self) -> bool:
        """Return whether the row holds a fingerprint without an embedding (see FileRow.lacks_embedding)."""
        return bool(self.has_fingerprint) and not self.has_embedding


@dataclass(frozen=True, slots=True)
class HashArrays:
    """The perceptual hashes of every `ok` file, ready for numpy: `phash[i]` holds file `ids[i]`'s 8 variants.

    `windows[window_offsets[i]:window_offsets[i + 1]]` holds its window hashes.
    """

    ids: np.ndarray  # int64, shape (n,)
    phash: np.ndarray  # uint64, shape (n, 8)
    window_offsets: np.ndarray  # int64, shape (n + 1,)
    windows: np.ndarray  # uint64, shape (total windows,)


def hashes_to_blob(hashes: Iterable[int]) -> bytes:
    """Given unsigned 64-bit hashes, return them packed as little-endian uint64."""
    return np.fromiter(hashes, dtype="<u8").tobytes()


def blob_to_hashes(blob: bytes | None) -> tuple[int, ...]:
    """Given a little-endian uint64 blob (or None), return the hashes as Python ints."""
    if not blob:
        return ()
    return struct.unpack(f"<{len(blob) // 8}Q", blob)  # 8x faster than ints from numpy: a row per file read


def to_signed64(value: int) -> int:
    """Given an unsigned 64-bit int, return the signed int64 with the same bits (SQLite stores signed)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def prefix_range(root: str) -> tuple[str, str]:
    """Given a directory path, return (low, high) so that `low <= path < high` selects the paths below it.

    '0' is the character right after '/', so the range uses the path index instead of a LIKE scan.
    """
    base = root.rstrip("/")
    return base + "/", base + "0"


def _row_to_file(row: tuple) -> FileRow:
    (
        id_,
        root,
        path,
        device,
        inode,
        size,
        mtime_ns,
        content_hash,
        width,
        height,
        fmt,
        variants,
        windows,
        state,
        error,
        version,
        embedding,
        sharpness,
        exposure,
    ) = row
    fingerprint = None
    if variants is not None:
        quality = None if sharpness is None or exposure is None else Quality(sharpness, exposure)
        fingerprint = Fingerprint(
            content_hash,
            width,
            height,
            fmt,
            blob_to_hashes(variants),
            blob_to_hashes(windows),
            embedding=bytes(embedding or b""),
            quality=quality,
        )
    return FileRow(
        id_, root, path, FileIdentity(device, inode, size, mtime_ns), state, error, fingerprint, version
    )


class FileRows:
    """Reads and writes of the `files` table (a part of `Index`)."""

    db: Database

    def file_by_id(self, file_id: int) -> FileRow | None:
        """Given a file id, return its row or None."""
        row = self.db.execute(f"SELECT {FILE_COLUMNS} FROM {FILE_ROWS} WHERE id = ?", [file_id]).fetchone()
        return _row_to_file(row) if row else None

    def file_by_path(self, path: str) -> FileRow | None:
        """Given an absolute path, return its row or None."""
        row = self.db.execute(
            f"SELECT {FILE_COLUMNS} FROM {FILE_ROWS} WHERE path = {PATH_PARAM}", [bind_path(path)]
        ).fetchone()
        return _row_to_file(row) if row else None

    def file_stamp(self, path: str) -> FileStamp | None:
        """Given an absolute path, return its row's FileStamp (no hash read) or None."""
        row = self.db.execute(
            f"SELECT {STAMP_COLUMNS} FROM files WHERE path = {PATH_PARAM}", [bind_path(path)]
        ).fetchone()
        return FileStamp._make(row) if row else None

    def file_stamps_in_folder(self, folder: str) -> dict[str, FileStamp]:
        """Given an absolute folder path, return {path: FileStamp} of the rows of the files directly in it
        (not below its subfolders), in one query: a reconcile reads each walked folder's rows at once."""
        low, high = prefix_range(folder)
        # Compared as bytes: a path stored from non-UTF-8 bytes has no character count to cut at. The
        # condition reads only the path index, so the rows of subfolders are skipped before their table
        # rows are read.
        rows = self.db.execute(
            f"SELECT {STAMP_COLUMNS} FROM files WHERE path >= {PATH_PARAM} AND path < {PATH_PARAM} "
            "AND instr(substr(CAST(path AS BLOB), ?), CAST('/' AS BLOB)) = 0",
            [bind_path(low), bind_path(high), len(os.fsencode(low)) + 1],
        )
        return {stamp.path: stamp for stamp in map(FileStamp._make, rows)}

    def files_by_identity(self, identity: FileIdentity) -> list[FileRow]:
        """Given a file identity, return every row with the same (device, inode, size, mtime_ns)."""
        rows = self.db.execute(
            f"SELECT {FILE_COLUMNS} FROM {FILE_ROWS} "
            "WHERE device = ? AND inode = ? AND size = ? AND mtime_ns = ?",
            [identity.device, identity.inode, identity.size, identity.mtime_ns],
        ).fetchall()
        return [_row_to_file(r) for r in rows]

    def files_by_ids(self, file_ids: Iterable[int]) -> dict[int, FileRow]:
        """Given file ids, return {id: row} for those that exist."""
        found: dict[int, FileRow] = {}
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(
                f"SELECT {FILE_COLUMNS} FROM {FILE_ROWS} WHERE id IN ({marks})", chunk
            ):
                found[row[0]] = _row_to_file(row)
        return found

    def ok_files_with_content_hash(self, content_hash: str) -> list[int]:
        """Given a content hash, return the ids of the present, hashed files with exactly those bytes."""
        rows = self.db.execute(
            # Named: without statistics SQLite picks files_state and scans every ok row per file linked.
            "SELECT id FROM files INDEXED BY files_content_hash WHERE content_hash = ? AND state = 'ok' "
            "ORDER BY id",
            [content_hash],
        )
        return [r[0] for r in rows]

    def iter_files_under(self, root: str, states: tuple[str, ...] = ("ok", "error")) -> Iterator[FileRow]:
        """Given a directory, yield the rows of files below it in the given states, by path."""
        low, high = prefix_range(root)
        marks = ",".join("?" * len(states))
        # `+state`: the path range picks the rows (SQLite chose files_state: every row, for each deletion).
        yield from (
            _row_to_file(r)
            for r in self.db.execute(
                f"SELECT {FILE_COLUMNS} FROM {FILE_ROWS} WHERE path >= {PATH_PARAM} AND path < {PATH_PARAM} "
                f"AND +state IN ({marks}) ORDER BY path",
                [bind_path(low), bind_path(high), *states],
            )
        )

    def upsert_fingerprint(
        self, path: str, root: str, identity: FileIdentity, fingerprint: Fingerprint, now: float
    ) -> int:
        """Given a file's path, root, identity and fingerprint made by the running code, store it as `ok`
        with the current FINGERPRINT_VERSION; return the file id."""
        values = {
            "content_hash": fingerprint.content_hash,
            "width": fingerprint.width,
            "height": fingerprint.height,
            "format": fingerprint.format,
            "phash": to_signed64(fingerprint.phash[0]) if fingerprint.phash else None,
            "phash_variants": hashes_to_blob(fingerprint.phash),
            "windows": hashes_to_blob(fingerprint.windows),
            "sharpness": None if fingerprint.quality is None else fingerprint.quality.sharpness,
            "exposure": None if fingerprint.quality is None else fingerprint.quality.exposure,
            "state": "ok",
            "error": None,
            "needs_link": 1,  # cleared by `mark_linked` in the transaction that stores its matches
            "fingerprint_version": FINGERPRINT_VERSION,
        }
        file_id = self._upsert(path, root, identity, values, now)
        self._store_embedding(file_id, fingerprint.embedding)
        return file_id

    def _store_embedding(self, file_id: int, embedding: bytes) -> None:
        """Given a file id and its embedding (b"": none, read again when the model stage wants one)."""
        if embedding:
            self.db.execute(
                "INSERT INTO embeddings (file_id, vector) VALUES (?, ?) "
                "ON CONFLICT (file_id) DO UPDATE SET vector = excluded.vector",
                [file_id, embedding],
            )
        else:
            self.db.execute("DELETE FROM embeddings WHERE file_id = ?", [file_id])

    def record_file_error(self, path: str, root: str, identity: FileIdentity, reason: str, now: float) -> int:
        """Given a file that could not be hashed and the reason, store it as `error`; return the file id."""
        values = {
            "content_hash": None,
            "width": None,
            "height": None,
            "format": None,
            "phash": None,
            "phash_variants": None,
            "windows": None,
            "sharpness": None,
            "exposure": None,
            "state": "error",
            "error": reason,
            "needs_link": 0,
            "fingerprint_version": FINGERPRINT_VERSION,  # the code that failed to read it
        }
        file_id = self._upsert(path, root, identity, values, now)
        self._store_embedding(file_id, b"")
        return file_id

    def _upsert(self, path: str, root: str, identity: FileIdentity, values: dict, now: float) -> int:
        columns = {
            "root": root,
            "path": path,
            "device": identity.device,
            "inode": identity.inode,
            "size": identity.size,
            "mtime_ns": identity.mtime_ns,
            **values,
            "first_seen": now,
            "last_seen": now,
        }
        names = ", ".join(columns)
        marks = ", ".join(PATH_PARAM if c in ("root", "path") else "?" for c in columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in ("path", "first_seen"))
        row = self.db.execute(
            f"INSERT INTO files ({names}) VALUES ({marks}) ON CONFLICT (path) DO UPDATE SET {updates} "
            "RETURNING id",
            [bind_path(v) if c in ("root", "path") else v for c, v in columns.items()],
        ).fetchone()
        return row[0]

    def copy_fingerprint(self, source: FileRow, path: str, root: str, now: float) -> int:
        """Given the row of a file with the same identity (a hard link), store its fingerprint for `path`.

        The source must hold a current fingerprint (a stale one would be stored as current).
        """
        assert source.fingerprint is not None and not source.fingerprint_is_stale
        return self.upsert_fingerprint(path, root, source.identity, source.fingerprint, now)

    def rename_file(self, file_id: int, new_path: str, root: str, now: float) -> None:
        """Given a file id and the path it moved to, point the row at the new path and mark it present.

        A stale row already holding `new_path` is deleted first (its file was replaced by this one).
        """
        self.db.execute(
            f"DELETE FROM files WHERE path = {PATH_PARAM} AND id != ?", [bind_path(new_path), file_id]
        )
        self.db.execute(
            f"UPDATE files SET path = {PATH_PARAM}, root = {PATH_PARAM}, last_seen = ?, "
            "needs_link = CASE WHEN state = 'missing' AND error IS NULL THEN 1 ELSE needs_link END, "
            "state = CASE WHEN state = 'missing' THEN (CASE WHEN error IS NULL THEN 'ok' ELSE 'error' END) "
            "ELSE state END WHERE id = ?",
            [bind_path(new_path), bind_path(root), now, file_id],
        )

    def touch_files(self, file_ids: Iterable[int], now: float) -> None:
        """Given ids of files seen unchanged, record that they were seen at `now`."""
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"UPDATE files SET last_seen = ? WHERE id IN ({marks})", [now, *chunk])

    def mark_present(self, file_id: int, now: float) -> None:
        """Given the id of a `missing` file found again unchanged, mark it `ok` (or `error` if it had one)."""
        self.db.execute(
            "UPDATE files SET state = CASE WHEN error IS NULL THEN 'ok' ELSE 'error' END, last_seen = ?, "
            "needs_link = (error IS NULL) WHERE id = ?",
            [now, file_id],
        )

    def files_needing_link(self) -> list[int]:
        """Return ids of `ok` files whose fingerprint was stored (or that came back) but not yet linked."""
        # Named: without statistics SQLite picks files_state, a scan of every ok row on each pass.
        query = "SELECT id FROM files INDEXED BY files_needs_link WHERE needs_link = 1 AND state = 'ok'"
        return [r[0] for r in self.db.execute(query)]

    def mark_linked(self, file_ids: Iterable[int]) -> None:
        """Given ids of files whose match edges were just stored, record that they are linked."""
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"UPDATE files SET needs_link = 0 WHERE id IN ({marks})", chunk)

    def mark_missing(self, file_ids: Iterable[int]) -> None:
        """Given file ids, mark them `missing` and drop their match edges (their rows and ids stay)."""
        for chunk in chunked(list(file_ids)):
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"UPDATE files SET state = 'missing' WHERE id IN ({marks})", chunk)
            self.db.execute(
                f"DELETE FROM matches WHERE file_a IN ({marks}) OR file_b IN ({marks})", chunk + chunk
            )

    def files_not_seen_since(self, root: str, since: float, skip_dirs: Iterable[str] = ()) -> list[int]:
        """Given a root and a time, return ids of present files below it not seen since then.

        Files below any of `skip_dirs` (directories the walk could not read) are left out.
        """
        low, high = prefix_range(root)
        rows = self.db.execute(
            f"SELECT id, path FROM files WHERE path >= {PATH_PARAM} AND path < {PATH_PARAM} "
            "AND state != 'missing' AND last_seen < ?",
            [bind_path(low), bind_path(high), since],
        ).fetchall()
        ranges = [prefix_range(d) for d in skip_dirs]
        return [fid for fid, path in rows if not any(lo <= path < hi for lo, hi in ranges)]

    def remove_file(self, file_id: int) -> None:
        """Given a file id, delete its row, its match edges and group memberships."""
        self.db.execute("DELETE FROM files WHERE id = ?", [file_id])

    def fingerprint_rows(self, batch: int = 65536) -> Iterator[HashArrays]:
        """Yield the hashes of all `ok` files in numpy batches of up to `batch` rows, by id."""
        cursor = self.db.execute(
            "SELECT id, phash_variants, windows FROM files WHERE state = 'ok' AND phash_variants IS NOT NULL "
            "ORDER BY id"
        )
        while rows := cursor.fetchmany(batch):
            yield _rows_to_arrays(rows)

    def embedding_batches(self, batch: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the embeddings of the `ok` files that have one, by id, in batches of up to `batch` rows:
        (file ids as int64 (n,), embeddings as float16 (n, d)), for loading an in-memory index. Rows whose
        embedding has another length than the first row's (which only `adopt_embedder` not being called
        for a new model would leave) are skipped."""
        cursor = self.db.execute(
            "SELECT file_id, vector FROM embeddings JOIN files ON files.id = embeddings.file_id "
            "WHERE state = 'ok' ORDER BY file_id"
        )
        size = None
        while rows := cursor.fetchmany(batch):
            size = len(rows[0][1]) if size is None else size
            rows = [row for row in rows if len(row[1]) == size]
            if not rows:
                continue
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f2").reshape(len(rows), -1)
            yield ids, vectors.astype(np.float16)

    def embeddings_of(self, file_ids: Iterable[int]) -> dict[int, bytes]:
        """Given file ids, return {id: packed float16 embedding} of those that have one (any state)."""
        found: dict[int, bytes] = {}
        for chunk in chunked([int(file_id) for file_id in file_ids]):  # numpy ints bind as blobs
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT file_id, vector FROM embeddings WHERE file_id IN ({marks})", chunk
            )
            found.update((file_id, bytes(blob)) for file_id, blob in rows)
        return found

    def adopt_embedder(self, identity: str) -> int:
        """Given the identity of the model that makes embeddings from now on (`EmbedderSpec.identity`), make
        it the index's: when the stored embeddings were made by another one, forget them (they cannot be
        compared with the new ones; the scanner reads those files again). Return how many were forgotten.
        Call it inside a transaction."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [EMBEDDER_KEY]).fetchone()
        if row is not None and row[0] == identity:
            return 0
        forgotten = self.db.execute("DELETE FROM embeddings").rowcount
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [EMBEDDER_KEY, identity],
        )
        return forgotten

    def hash_arrays(self) -> HashArrays:
        """Return the hashes of all `ok` files as one `HashArrays` (about 100 bytes a file)."""
        parts = list(self.fingerprint_rows())
        if not parts:
            return _rows_to_arrays([])
        offsets = [parts[0].window_offsets]
        shift = parts[0].window_offsets[-1]
        for part in parts[1:]:
            offsets.append(part.window_offsets[1:] + shift)
            shift += part.window_offsets[-1]
        return HashArrays(
            np.concatenate([p.ids for p in parts]),
            np.concatenate([p.phash for p in parts]),
            np.concatenate(offsets),
            np.concatenate([p.windows for p in parts]),
        )

    def file_facts(
        self,
        file_ids: Iterable[int],
        reference_roots: Iterable[str] = (),
        states: tuple[str, ...] = ("ok", "error", "missing"),
    ) -> dict[int, FileFacts]:
        """Given file ids, the reference roots and the states wanted, return {id: FileFacts} of those
        files in those states, for the keeper rules."""
        ranges = [prefix_range(str(r)) for r in reference_roots]
        facts = {}
        for fid, row in self.files_by_ids(file_ids).items():
            if row.state not in states:
                continue
            fp = row.fingerprint
            facts[fid] = FileFacts(
                file_id=fid,
                path=row.path,
                size=row.identity.size,
                width=fp.width if fp else 0,
                height=fp.height if fp else 0,
                mtime_ns=row.identity.mtime_ns,
                format=fp.format if fp else "",
                content_hash=fp.content_hash if fp else "",
                reference=any(lo <= row.path < hi for lo, hi in ranges),
                quality=fp.quality if fp else None,
            )
        return facts

    def file_counts(self) -> dict[str, int]:
        """Return the number of files in each state, with a `total`."""
        counts = {"ok": 0, "error": 0, "missing": 0}
        for state, n in self.db.execute("SELECT state, count(*) FROM files GROUP BY state"):
            counts[state] = n
        counts["total"] = sum(counts.values())
        return counts


def _rows_to_arrays(rows: list[tuple]) -> HashArrays:
    if not rows:
        empty = np.zeros(0, dtype=np.uint64)
        return HashArrays(
            np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.uint64), np.zeros(1, dtype=np.int64), empty
        )
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    phash = np.frombuffer(b"".join(r[1] for r in rows), dtype="<u8").reshape(len(rows), -1)
    lengths = np.fromiter((len(r[2] or b"") // 8 for r in rows), dtype=np.int64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    windows = np.frombuffer(b"".join(r[2] or b"" for r in rows), dtype="<u8")
    return HashArrays(ids, phash.astype(np.uint64), offsets, windows.astype(np.uint64))


def chunked(items: list, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
