"""The scanner room: walk roots, read only what changed, hash in workers, link duplicates, regroup.

    scanner = Scanner(index, pool, ScanOptions(match=MatchOptions(threshold=10)))
    report = scanner.scan(["/home/me/Pictures"])           # a full reconcile of these roots
    scanner.ingest_files([("/home/me/Pictures/new.jpg", "/home/me/Pictures")])   # files the watcher saw
    scanner.forget_paths(["/home/me/Pictures/gone.jpg"])   # files the watcher saw deleted
    scanner.move_path(src, dest, root)                      # a rename: no re-hash

A file whose (device, inode, size, mtime_ns) equals its row is not read again; a file found at a new path
with the identity of a row whose path no longer holds it is a move (the row follows, nothing is read); a
hard link to a known file copies its fingerprint. Files not seen below a root that was walked are marked
missing; a root that is absent, or that goes away while it is walked (unmounted, moved), marks nothing.

With the model stage on (`ScanOptions.embedder`, see `model_stage`), each file read gets its embedding and
quality from the same decode, and an `ok` row without an embedding (written in mode `hash`, by older code,
while the model could not run or by another model) is read again like a stale one. An encoder failing on
one picture leaves that fingerprint without an embedding (logged as `event=embedding_failed`, naming the
file); the next scan tries it again.

A row whose fingerprint was made by older hashing code (`FileRow.fingerprint_is_stale`, see
`model.FINGERPRINT_VERSION`) is read again even though its file is unchanged: it keeps its row id (so
not-duplicate marks and decisions keyed by id stay), is linked and regrouped like a changed file, and is
counted in `hashed` and `rehashed`. A move of such a row still follows it, then reads it; a hard link to it
is read rather than given the stale fingerprint. Error rows are not read again for this (they hold none).

A scanner given a `cancel` event stops within a fraction of a second once it is set (between walked files,
hashed files and verified pairs), raising `Cancelled`: what is committed is whole, nothing half-done is
recorded (no error rows for abandoned files), and a file hashed but not yet linked keeps its `needs_link`
mark, so the next scan or ingest links it.

All methods write through the index writer: call them from one thread (the daemon's writer thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from comparimg import hashing
from comparimg.embedding import EmbedderSpec
from comparimg.index import FileRow, FileStamp, Index
from comparimg.model import FileIdentity, ImageError
from comparimg.scanner.linking import (
    MODES,
    Linker,
    MatchOptions,
    VerifierSource,
    no_task_between,
    shipped_verifier,
)
from comparimg.scanner.walk import FoundFile, WalkProblem, describe_os_error, identity_of, walk_images
from comparimg.workers import Cancelled, WorkerPool

log = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "Cancelled",
    "FoundFile",
    "MatchOptions",
    "ScanOptions",
    "ScanProgress",
    "ScanReport",
    "Scanner",
    "VerifierSource",
    "WalkProblem",
    "describe_os_error",
    "shipped_verifier",
]

COMMIT_EVERY = 200
# A file seen unchanged costs a transaction this share of a write: only its `last_seen`, written with the
# others in one statement, so a reconcile of unchanged files commits every 5 000 files, not every 200.
TOUCHES_A_WRITE = 25
RETRIED_REASONS = ("permission denied",)  # errors that a chmod (which keeps mtime) can cure


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What to walk and how to match: extensions, exclude globs (relative paths), matching options, and
    the image encoder each file read is embedded with (None: mode `hash`, no model; see `model_stage`)."""

    match: MatchOptions = field(default_factory=MatchOptions)
    extensions: frozenset[str] = hashing.SUPPORTED_EXTENSIONS
    exclude: tuple[str, ...] = ()
    embedder: EmbedderSpec | None = None


@dataclass(slots=True)
class ScanReport:
    """What one scan did. `errors` counts files and paths that could not be read in this scan."""

    files: int = 0
    hashed: int = 0
    rehashed: int = 0  # of `hashed`: unchanged files read again because their fingerprint was stale
    unchanged: int = 0
    moved: int = 0
    errors: int = 0
    missing: int = 0
    verified: int = 0  # candidate pairs checked by hashing.verify_pair
    judged: int = 0  # candidate pairs judged by the learned verifier (modes hash+model and model)
    groups: int = 0
    seconds: float = 0.0
    absent_roots: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as a plain dict (for the JSON stats)."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """Where a scan is: phase ("walking", "matching"), files found, files hashed, errors so far."""

    phase: str
    files: int
    hashed: int
    errors: int


ProgressCallback = Callable[[ScanProgress], None]


@dataclass(slots=True)
class _Pass:
    """The state of one scan or ingest: when it saw files, what it did, what is left to link and regroup."""

    seen_at: float
    batch: _WriteBatch
    report: ScanReport = field(default_factory=ScanReport)
    to_link: list[int] = field(default_factory=list)
    to_regroup: set[int] = field(default_factory=set)
    unreadable: list[str] = field(default_factory=list)
    root_lost: bool = False  # the root being walked went away mid-walk: mark nothing missing
    progress: ProgressCallback | None = None
    stale: set[str] = field(default_factory=set)  # paths read again only because their fingerprint was stale
    match: MatchOptions | None = None  # this pass's own matching options (an API job's), else the scanner's
    stamps: _FolderStamps | None = None  # a walk's rows, read a folder at a time; else one query a path


class Scanner:
    """The ingest pipeline of one index: survey, hash, link, regroup. See the module docstring."""

    def __init__(
        self,
        index: Index,
        pool: WorkerPool,
        options: ScanOptions = ScanOptions(),
        clock: Callable[[], float] = time.time,
        cancel: threading.Event | None = None,
        between_tasks: Callable[[], None] = no_task_between,
        verifier: VerifierSource = shipped_verifier,
    ):
        self.index = index
        self.pool = pool
        self.options = options
        self.clock = clock
        self.cancel = cancel if cancel is not None else threading.Event()
        # Called while files are read and pairs checked in the workers, when no transaction is open (the
        # daemon runs its urgent writer jobs there).
        self.between_tasks = between_tasks
        # `verifier` gives the current learned verifier (modes hash+model and model), asked at each link.
        self.linker = Linker(index, pool, options.match, clock, self.cancel, between_tasks, verifier)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def scan(
        self, roots: Sequence[str | os.PathLike], progress: ProgressCallback | None = None
    ) -> ScanReport:
        """Given roots (folders or files), bring the index in line with them and return what was done.

        Absent roots are reported in `absent_roots` (their files are left alone, not marked missing).
        """
        started = time.monotonic()
        seen_at = self.clock()
        run = _Pass(seen_at, _WriteBatch(self.index, seen_at), progress=progress)
        run.stamps = _FolderStamps(self.index)
        with self._regroup_if_cancelled(run):
            for root in [os.path.abspath(r) for r in roots]:
                if not os.path.exists(root):
                    run.report.absent_roots.append(root)
                    continue
                with self.index.transaction():
                    self.index.clear_walk_errors(root)
                run.unreadable, run.root_lost = [], False
                self._ingest(walk_images(root, self.options.extensions, self.options.exclude), run)
                if run.root_lost:
                    run.report.absent_roots.append(root)
                elif os.path.isdir(root):
                    gone = self.index.files_not_seen_since(root, run.seen_at, run.unreadable)
                    run.report.missing += len(gone)
                    run.to_regroup |= self.linker.unlink(gone)
            if progress:
                progress(ScanProgress("matching", run.report.files, run.report.hashed, run.report.errors))
            return self._finish(run, started)

    def ingest_files(self, found: Iterable[tuple[str, str]], match: MatchOptions | None = None) -> ScanReport:
        """Given (path, root) pairs of files that appeared or changed, index, link and regroup them.

        A path that vanished is treated as deleted. With `match` (an API job's own threshold or
        orientations), this batch's files are matched with those options over the same HashIndex. Return
        what was done.
        """
        started = time.monotonic()
        seen_at = self.clock()
        run = _Pass(seen_at, _WriteBatch(self.index, seen_at), match=match)
        files, gone = [], []
        for path, root in found:
            item = _stat_found(os.path.abspath(path), os.path.abspath(root))
            if item is None:
                gone.append(os.path.abspath(path))
            else:
                files.append(item)
        with self._regroup_if_cancelled(run):
            self._ingest(files, run)
            run.to_regroup |= self._unlink_paths(gone)
            run.report.missing = len(gone)
            return self._finish(run, started)

    @contextlib.contextmanager
    def _regroup_if_cancelled(self, run: _Pass) -> Iterator[None]:
        """On Cancelled, regroup what already changed (unlinked, replaced files) before passing it on:
        those changes are committed and nothing would regroup them later. Linking is not awaited."""
        try:
            yield
        except Cancelled:
            self.linker.regroup(run.to_regroup)
            raise

    def _ingest(self, items: Iterable[FoundFile | WalkProblem], run: _Pass) -> None:
        try:
            for file_id in self._hash(self._survey(items, run), run):
                run.to_link.append(file_id)
        finally:
            run.batch.commit()

    def _finish(self, run: _Pass, started: float) -> ScanReport:
        verified_before, judged_before = self.linker.verifications, self.linker.judged
        # With the files left unlinked by an earlier stop (or kill) between hashing and linking.
        to_link = list(dict.fromkeys([*run.to_link, *self.index.files_needing_link()]))
        run.to_regroup |= self.linker.link(to_link, run.match)
        self.linker.regroup(run.to_regroup)
        run.report.verified = self.linker.verifications - verified_before
        run.report.judged = self.linker.judged - judged_before
        run.report.groups = self.index.counts()["groups"]
        run.report.seconds = round(time.monotonic() - started, 3)
        return run.report

    def _survey(self, items: Iterable[FoundFile | WalkProblem], run: _Pass) -> Iterator[FoundFile]:
        """Given walked items, record problems and reuse what the index knows; yield the files to read."""
        for item in items:
            self._check_cancel()
            run.batch.tick()
            if isinstance(item, WalkProblem) and item.root_lost:
                run.root_lost = True
                log.warning("event=root_lost root=%r reason=%r", item.path, item.reason)
                continue
            if isinstance(item, WalkProblem):
                run.report.errors += 1
                if item.unreadable_dir:
                    run.unreadable.append(item.path)
                self.index.record_walk_error(item.path, os.path.dirname(item.path), item.reason, run.seen_at)
                continue
            run.report.files += 1
            if not self._reuse(item, run):
                yield item

    def _reuse(self, found: FoundFile, run: _Pass) -> bool:
        """Given a found file, reuse what the index knows of it without reading it; return whether it could.

        Unchanged: only touched. Moved (its identity at a path that no longer holds it): the row follows.
        Hard link (the other path still holds it): the fingerprint is copied. A stale fingerprint is never
        reused: the file is read (a moved row follows first, so the new fingerprint lands on it).
        """
        row = run.stamps.of(found.path) if run.stamps else self.index.file_stamp(found.path)
        if row is not None and row.holds(found.identity):
            return self._same_file(row, run)
        for other in self.index.files_by_identity(found.identity):
            if other.path != found.path and other.fingerprint is not None and other.state != "error":
                if row is not None:  # a changed file replaced by a moved one: its old edges go
                    run.to_regroup |= self.linker.neighbours_of([row.id])
                return self._known_elsewhere(other, found, run)
        return False

    def _same_file(self, row: FileStamp, run: _Pass) -> bool:
        if row.state == "error" and row.error in RETRIED_REASONS:
            return False
        if row.error is None and self._outdated(row):  # present or missing, it is read again
            run.stale.add(row.path)
            return False
        run.report.unchanged += 1
        run.report.errors += row.state == "error"
        if row.state == "missing":
            self.index.mark_present(row.id, run.seen_at)
            if row.error is None:
                run.to_link.append(row.id)  # its edges were dropped when it went missing
        else:
            run.batch.touch(row.id)
        return True

    def _known_elsewhere(self, other: FileRow, found: FoundFile, run: _Pass) -> bool:
        """Reuse the row of the same file at another path; return False when the file must still be read."""
        if other.state == "ok" and _holds(other.path, other.identity):
            if self._outdated(other):  # a hard link: its own row, made from the file
                return False
            run.to_link.append(self.index.copy_fingerprint(other, found.path, found.root, run.seen_at))
            return True
        self.index.rename_file(other.id, found.path, found.root, run.seen_at)
        run.report.moved += 1
        if self._outdated(other):  # the row followed; reading it now stores the new fingerprint on it
            run.stale.add(found.path)
            return False
        if other.state == "missing":
            run.to_link.append(other.id)  # its edges were dropped when it went missing
        return True

    def _outdated(self, row: FileRow | FileStamp) -> bool:
        """Return whether the row's fingerprint must be made again: older hashing code, or no embedding
        while the model stage is on."""
        return row.fingerprint_is_stale or (self.options.embedder is not None and row.lacks_embedding)

    def _hash(self, to_hash: Iterable[FoundFile], run: _Pass) -> Iterator[int]:
        """Given files to read, fingerprint them in the workers and store the results; yield the new ids."""
        in_flight: dict[str, FoundFile] = {}

        # No transaction stays open while waiting for a worker: other writers (decisions) may not wait.
        def paths() -> Iterator[tuple[str, bool, EmbedderSpec | None]]:
            for found in self._readable(to_hash, run):
                in_flight[found.path] = found
                run.batch.commit()
                yield found.path, self.linker.wants_previews, self.options.embedder
            run.batch.commit()

        report = run.report
        task = hashing.fingerprint_for_index  # the preview goes along with the linker's checks
        # While files are read, `paths` has just committed: the daemon's urgent writes run in the meantime.
        for (path, *_), outcome in self.pool.map_unordered(task, paths(), self.cancel, self.between_tasks):
            self._check_cancel()  # an outcome after the stop may be the worker being killed: not recorded
            found = in_flight.pop(path)
            if isinstance(outcome, ImageError):
                report.errors += 1
                self.index.record_file_error(path, found.root, found.identity, outcome.reason, run.seen_at)
            else:
                report.hashed += 1
                if path in run.stale:
                    report.rehashed += 1
                fingerprint, preview, model_problem = outcome
                if model_problem:
                    log.warning("event=embedding_failed path=%r error=%r", path, model_problem)
                self.linker.remember_preview(preview)
                yield self.index.upsert_fingerprint(
                    path, found.root, found.identity, fingerprint, run.seen_at
                )
            if run.progress:
                run.progress(ScanProgress("walking", report.files, report.hashed, report.errors))

    def _readable(self, to_hash: Iterable[FoundFile], run: _Pass) -> Iterator[FoundFile]:
        for found in to_hash:
            if os.access(found.path, os.R_OK):
                yield found
            else:
                run.report.errors += 1
                self.index.record_file_error(
                    found.path, found.root, found.identity, "permission denied", run.seen_at
                )

    def link_waiting(self) -> int:
        """Once the EmbeddingIndex loading in the background is ready, link again the files that were linked
        by their hashes alone meanwhile (with every other file still needing a link), now with their
        embedding neighbours, and regroup; return how many files were linked (0 while it loads)."""
        if not self.linker.waiting or self.linker.embeddings_pending:
            return 0
        to_link = self.index.files_needing_link()
        self.linker.regroup(self.linker.link(to_link))
        self.linker.waiting.clear()  # what is left no longer needs a link (gone, or read again as an error)
        return len(to_link)

    def forget_paths(self, paths: Iterable[str]) -> int:
        """Given paths of files (or folders) the watcher saw deleted, mark their rows missing and regroup.

        Return the number of files marked missing.
        """
        affected = self._unlink_paths([os.path.abspath(p) for p in paths])
        self.linker.regroup(affected)
        return len(affected)

    def _unlink_paths(self, paths: Collection[str]) -> set[int]:
        ids = []
        for path in paths:
            row = self.index.file_stamp(path)
            if row is not None and row.state != "missing":
                ids.append(row.id)
            ids += [r.id for r in self.index.iter_files_under(path)]
        return self.linker.unlink(ids) if ids else set()

    def move_path(self, source: str, dest: str, root: str) -> ScanReport:
        """Given a file or folder moved from `source` to `dest` below `root`, follow it without re-hashing.

        A source the index does not know is ingested at its destination instead.
        """
        source, dest, root = (os.path.abspath(p) for p in (source, dest, root))
        moved = [(r.id, dest + r.path[len(source) :]) for r in self.index.iter_files_under(source)]
        row = self.index.file_stamp(source)
        if row is not None:
            moved.append((row.id, dest))
        if not moved:
            return self.ingest_files([(dest, root)]) if os.path.isfile(dest) else ScanReport()
        replaced = [r.id for r in (self.index.file_stamp(new) for _, new in moved) if r is not None]
        regroup = self.linker.neighbours_of(replaced)
        with self.index.transaction():
            for file_id, new_path in moved:
                self.index.rename_file(file_id, new_path, root, self.clock())
        self.linker.regroup(regroup - set(replaced))
        return ScanReport(moved=len(moved))


class _FolderStamps:
    """The FileStamps of a walk's rows, read a folder at a time (the walk yields each folder's files
    together): one query a folder instead of one a file. A row that a move in this pass took away from a
    path of the folder keeps its old stamp here, which cannot match the file now at that path (the move
    found that path no longer holds it), so such a stamp leads to the same identity lookup as no stamp."""

    def __init__(self, index: Index):
        self.index = index
        self.folder: str | None = None
        self.stamps: dict[str, FileStamp] = {}

    def of(self, path: str) -> FileStamp | None:
        """Given a walked file's path, return its row's stamp or None."""
        folder = path[: path.rfind(os.sep)] or os.sep  # os.path.dirname of an absolute, normal path
        if folder != self.folder:
            self.folder, self.stamps = folder, self.index.file_stamps_in_folder(folder)
        return self.stamps.get(path)


class _WriteBatch:
    """Groups many small writes into transactions of COMMIT_EVERY writes each, and the `last_seen` of the
    files seen unchanged into one statement per transaction (written before it commits; TOUCHES_A_WRITE
    of them count as one write). Each walked item ticks once; an unchanged one then becomes a touch."""

    def __init__(self, index: Index, seen_at: float):
        self.index = index
        self.seen_at = seen_at
        self.count = 0
        self.open = False
        self.touched: list[int] = []

    def tick(self) -> None:
        if not self.open:
            self.index.begin_writes()
            self.open = True
        self.count += 1
        if self.count + len(self.touched) // TOUCHES_A_WRITE >= COMMIT_EVERY:
            self.commit()

    def touch(self, file_id: int) -> None:
        """Given the id of a file seen unchanged (the item just ticked), record it as seen at `seen_at` with
        this transaction, where it weighs 1 / TOUCHES_A_WRITE of a write."""
        self.touched.append(file_id)
        self.count -= 1

    def commit(self) -> None:
        if self.open:
            if self.touched:
                self.index.touch_files(self.touched, self.seen_at)
            self.index.commit_writes()
            self.open = False
            self.touched = []
        self.count = 0


def _holds(path: str, identity: FileIdentity) -> bool:
    try:
        return identity_of(os.stat(path)) == identity
    except OSError:
        return False


def _stat_found(path: str, root: str) -> FoundFile | None:
    try:
        return FoundFile(path, root, identity_of(os.stat(path)))
    except FileNotFoundError:
        return None
