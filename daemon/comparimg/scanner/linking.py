"""From fingerprints to verified match edges and duplicate groups, kept in step with the index.

`Linker` holds the in-memory `matching.HashIndex` of every `ok` file (built once from the index), queries it
for each new or changed file, treats equal content hashes as exact duplicates, verifies every other
candidate in a worker (`hashing.verify_pair`), stores the edges, and recomputes the groups of the affected
connected components (`matching.group_matches`, `decisions.mark_suggestions`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from comparimg import decisions, hashing, matching
from comparimg.hashing import pictures
from comparimg.index import HashArrays, Index
from comparimg.model import Candidate, Fingerprint, ImageError, Match
from comparimg.workers import Cancelled, WorkerPool

log = logging.getLogger(__name__)


def no_task_between() -> None:
    """The default `between_tasks`: nothing waits to run between two pair checks."""


PREVIEW_BYTES = 64 << 20  # previews kept for checks in other workers (~700 at 256 px)


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """How near duplicates are found: Hamming threshold, turned copies, crop-aware (window) hashes."""

    threshold: int = 10
    orientations: bool = True
    crops: bool = True
    reference_roots: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PairToVerify:
    """A candidate pair: the queried file, the indexed file it came close to, and how."""

    query_id: int
    query_path: str
    other_id: int
    other_path: str
    candidate: Candidate
    contents: tuple[str, str] = ("", "")  # both content hashes: a pair of the same bytes is verified once

    def verdict_key(self) -> tuple:
        """Return what the verdict depends on: the two contents and how the hashes met."""
        if not all(self.contents):
            return (self.query_id, self.other_id)
        (query_content, other_content), c = self.contents, self.candidate
        if query_content <= other_content:
            return (query_content, other_content, c.orientation, c.via)
        return (other_content, query_content, matching.INVERSE_ORIENTATION[c.orientation], c.via)


def query_fingerprint(fingerprint: Fingerprint, options: MatchOptions) -> Fingerprint:
    """Given a stored fingerprint and the options, return the hashes to index and query with."""
    phash = fingerprint.phash if options.orientations else fingerprint.phash[:1]
    windows = fingerprint.windows if options.crops else ()
    return dataclasses.replace(fingerprint, phash=phash, windows=windows)


def edge_for(query_id: int, other_id: int, kind: str, distance: int, orientation: int) -> Match:
    """Given a pair as found from the query's side, return the Match with file_a < file_b.

    `orientation` says how to turn file_a to get file_b; it is inverted when the query is file_b.
    """
    if query_id < other_id:
        return Match(query_id, other_id, kind, distance, orientation)
    return Match(other_id, query_id, kind, distance, matching.INVERSE_ORIENTATION[orientation])


def hash_entries(batch: HashArrays, crops: bool) -> tuple[np.ndarray, np.ndarray]:
    """Given a batch of stored hashes, return the HashIndex entries: hashes (n, STRIDE) and presence.

    Entry 0 is the identity perceptual hash, entries 1.. the window hashes (none without crops); the
    same layout as `matching.fingerprint_entries`, built without one Python object per file.
    """
    n = len(batch.ids)
    hashes = np.zeros((n, matching.STRIDE), dtype=np.uint64)
    present = np.zeros((n, matching.STRIDE), dtype=bool)
    hashes[:, 0] = batch.phash[:, 0]
    present[:, 0] = True
    if crops:
        lengths = np.minimum(np.diff(batch.window_offsets), matching.MAX_WINDOWS)
        rows = np.repeat(np.arange(n), lengths)
        slots = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        hashes[rows, 1 + slots] = batch.windows[np.repeat(batch.window_offsets[:-1], lengths) + slots]
        present[rows, 1 + slots] = True
    return hashes, present


def load_hash_index(index: Index, threshold: int, crops: bool) -> matching.HashIndex:
    """Given the index, the match threshold and whether windows are matched, return the HashIndex of every
    `ok` file, built as one segment. The heap the rows went through is given back to the system, so the
    daemon's resident memory grows by the HashIndex itself (~430 MB, not ~600 MB, for a million files)."""
    hash_index = matching.HashIndex(threshold)
    parts = [(b.ids, *hash_entries(b, crops)) for b in index.fingerprint_rows()]
    if parts:  # one segment: several would be merged again, at a higher cost
        hash_index.add_arrays(*(np.concatenate(column) for column in zip(*parts, strict=True)))
    del parts
    matching.release_free_heap()
    return hash_index


class Linker:
    """The matching state of one index: its HashIndex, and the steps that turn new files into groups.

    Every method writes through the index's writer, so call them from the thread that owns the writer.
    """

    def __init__(
        self,
        index: Index,
        pool: WorkerPool,
        options: MatchOptions,
        clock: Callable[[], float] = time.time,
        cancel: threading.Event | None = None,
        between_tasks: Callable[[], None] = no_task_between,
    ):
        self.index = index
        # Called while pair checks run in the workers, when no transaction is open (the daemon runs its
        # urgent writer jobs there, so a decision does not wait for minutes of checks).
        self.between_tasks = between_tasks
        self.cancel = cancel  # once set, `link` raises Cancelled without storing anything
        self.pool = pool
        self.options = options
        self.clock = clock
        self._hash_index: matching.HashIndex | None = None
        self.verifications = 0  # verify_pair tasks run so far (for reports)
        # With several workers a check may run in another worker than the one that decoded its files: the
        # previews they return are kept here and sent along (one worker keeps its own).
        self.previews = pictures.PictureCache(PREVIEW_BYTES) if pool.size > 1 else None

    @property
    def wants_previews(self) -> bool:
        """Return whether workers should send the previews they decode (only with several workers)."""
        return self.previews is not None

    def remember_preview(self, preview: pictures.Preview | None) -> None:
        """Given the preview a worker returned with a fingerprint (or None), keep it for the checks."""
        if preview is not None and self.previews is not None:
            self.previews.put(*preview)

    def _previews_of(self, *paths: str) -> tuple[pictures.Preview, ...]:
        if self.previews is None:
            return ()
        keys = [pictures.file_key(path) for path in paths]
        found = [(key, self.previews.get(key)) for key in keys if key is not None]
        return tuple((key, pixels) for key, pixels in found if pixels is not None)

    @property
    def hash_index(self) -> matching.HashIndex:
        """Return the HashIndex of every `ok` file, loading it from the index on first use."""
        if self._hash_index is None:
            self._hash_index = load_hash_index(self.index, self.options.threshold, self.options.crops)
        return self._hash_index

    def link(self, file_ids: Collection[int], match: MatchOptions | None = None) -> set[int]:
        """Given ids of files whose fingerprint is new or changed, find, verify and store their edges.

        With `match`, query with its threshold and orientations instead of the linker's own (an API job's
        options: the same HashIndex, searched wider or narrower). Return every file whose groups may have
        changed (the files, their old and their new neighbours).
        """
        rows = {fid: row for fid, row in self.index.files_by_ids(file_ids).items() if row.state == "ok"}
        if self._hash_index is not None:
            for file_id, row in rows.items():
                self._hash_index.add(file_id, query_fingerprint(row.fingerprint, self.options))
        # else: the first use loads the HashIndex from the index, where these files already are.
        refused = self.index.not_duplicate_pairs(rows)
        same_bytes = {
            fid: set(self.index.ok_files_with_content_hash(row.fingerprint.content_hash)) - {fid}
            for fid, row in rows.items()
        }
        exact = [
            edge_for(file_id, other, "exact", 0, 0)
            for file_id, others in same_bytes.items()
            for other in others
            if (min(file_id, other), max(file_id, other)) not in refused
        ]
        try:
            # Pairs are verified as they are found: the workers start while the other files are queried.
            near = self._verified_edges(self._candidate_pairs(rows, refused, same_bytes, match))
        finally:
            if self.previews is not None:  # they served this pass (even a cancelled one): not kept
                self.previews.clear()
        edges_of: dict[int, dict[tuple[int, int], Match]] = {file_id: {} for file_id in file_ids}
        for match in [*near, *exact]:  # an exact edge replaces a near one for the same pair
            for end in (match.file_a, match.file_b):
                edges_of.setdefault(end, {})[(match.file_a, match.file_b)] = match
        affected = self.neighbours_of(file_ids)
        with self.index.transaction():
            for file_id in file_ids:
                self.index.replace_matches(file_id, edges_of[file_id].values())
            self.index.mark_linked(file_ids)
        return affected | set(edges_of)

    def _candidate_pairs(self, rows, refused, same_bytes, match=None) -> Iterator[PairToVerify]:
        """Given the rows to link, the refused pairs, each row's files of the same bytes and optionally a
        pass's own matching options, yield each candidate pair to verify once, as the HashIndex finds it."""
        seen: set[tuple[int, int]] = set()
        paths, contents = {}, {}
        options = match or self.options
        wider = {} if match is None else {"threshold": match.threshold, "window_threshold": match.threshold}
        for file_id, row in rows.items():
            fingerprint = query_fingerprint(row.fingerprint, options)
            candidates = self.hash_index.query(fingerprint, exclude=same_bytes[file_id] | {file_id}, **wider)
            others = self.index.files_by_ids(c.file_id for c in candidates if c.file_id not in paths)
            paths.update({fid: other.path for fid, other in others.items()})
            contents.update(
                {fid: other.fingerprint.content_hash for fid, other in others.items() if other.fingerprint}
            )
            for candidate in candidates:
                other_id = candidate.file_id
                pair = (min(file_id, other_id), max(file_id, other_id))
                if pair in refused or pair in seen or other_id not in paths:
                    continue
                seen.add(pair)
                yield PairToVerify(
                    file_id,
                    row.path,
                    other_id,
                    paths[other_id],
                    candidate,
                    (row.fingerprint.content_hash, contents.get(other_id, "")),
                )

    def _verified_edges(self, pairs: Iterable[PairToVerify]) -> list[Match]:
        """Given candidate pairs (consumed lazily), verify each distinct one in the workers (pairs of the
        same two contents met the same way share one check); return the near edges of those that pass."""
        sharing: dict[tuple, list[PairToVerify]] = {}  # verdict key -> the pairs it decides
        key_of: dict[tuple, tuple] = {}  # verify_pair arguments -> verdict key

        def checks() -> Iterator[tuple]:
            for pair in pairs:
                key = pair.verdict_key()
                if key in sharing:
                    sharing[key].append(pair)
                    continue
                sharing[key] = [pair]
                self.verifications += 1
                args = (pair.query_path, pair.other_path, pair.candidate)
                key_of[args] = key  # one pair per (min, max) ids, so one key per arguments
                yield (*args, self._previews_of(pair.query_path, pair.other_path))

        matched = []
        # While a check runs, no transaction is open: the daemon's urgent writes run in the meantime.
        checked = self.pool.map_unordered(hashing.verify_pair, checks(), self.cancel, self.between_tasks)
        for args, outcome in checked:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            if isinstance(outcome, ImageError):
                log.warning("verify_failed a=%s b=%s reason=%s", args[0], args[1], outcome.reason)
            elif outcome.matched:
                matched.append(key_of[args[:3]])
        return [
            edge_for(p.query_id, p.other_id, "near", p.candidate.distance, p.candidate.orientation)
            for key in matched
            for p in sharing[key]
        ]

    def neighbours_of(self, file_ids: Collection[int]) -> set[int]:
        """Given file ids, return them with every file they share a match edge with."""
        found = set(file_ids)
        for match in self.index.matches_touching(file_ids):
            found.update((match.file_a, match.file_b))
        return found

    def unlink(self, file_ids: Collection[int]) -> set[int]:
        """Given ids of files now missing, mark them so, drop their edges; return the files to regroup."""
        affected = self.neighbours_of(file_ids)
        with self.index.transaction():
            self.index.mark_missing(file_ids)
        if self._hash_index is not None:
            for file_id in file_ids:
                self._hash_index.remove(file_id)
        return affected

    def regroup(self, file_ids: Collection[int]) -> int:
        """Given files whose edges changed, recompute the groups of their connected components.

        Return the number of groups stored for those components.
        """
        if not file_ids:
            return 0
        component = self.index.component_of(file_ids)
        for stored in self.index.groups_of(component):
            component.update(m.file_id for m in stored.group.members)
        facts = self.index.file_facts(component, self.options.reference_roots, states=("ok",))
        groups = matching.group_matches(
            facts, self.index.matches_touching(component), self.index.not_duplicate_pairs(component)
        )
        groups = [decisions.mark_suggestions(group, facts) for group in groups]
        with self.index.transaction():
            self.index.replace_groups(component, groups, self.clock())
        return len(groups)
