"""From fingerprints to verified match edges and duplicate groups, kept in step with the index.

`Linker` holds the in-memory `matching.HashIndex` of every `ok` file (built once from the index), queries it
for each new or changed file, treats equal content hashes as exact duplicates, judges every other candidate,
stores the edges, and recomputes the groups of the affected connected components (`matching.group_matches`,
`matching.similar_groups`, `decisions.mark_suggestions`).

How a candidate is judged depends on `MatchOptions.mode` (docs/verifier.md, "In the daemon"):

- `hash`: the hash neighbours; each pair's pixel check (`hashing.verify_pair`, in a worker) decides. No model
  is loaded.
- `hash+model`: the hash neighbours and the embedding neighbours (`EmbeddingIndex`, kept in step like the
  HashIndex). The learned verifier judges each pair on its fingerprints and embedding cosine; when it is not
  sure (confidence < SURE), the pixel check runs in a worker and the verifier judges again with it.
- `model`: the embedding neighbours only, judged by the verifier on the fingerprints and cosine; no pixel
  check.

A *duplicate* verdict is a `near` edge, *similar* a `similar` edge, *different* none; each edge keeps the
verdict and its confidence.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from comparimg import decisions, hashing, matching
from comparimg.embedding import unpack_embedding
from comparimg.hashing import pictures
from comparimg.index import HashArrays, Index
from comparimg.model import ORIENTATION_STEPS, Candidate, Fingerprint, ImageError, Match, ModelError
from comparimg.model import Verdict as PixelVerdict
from comparimg.scanner.embedding_load import LOADING, BackgroundEmbeddingIndex, read_embedding_index
from comparimg.verdicts import LABELS, Verdict, Verifier, best_orientation, pair_features
from comparimg.verdicts.features import FINE_SIDE, MIN_FINE_SIDE, global_distances
from comparimg.workers import Cancelled, WorkerPool

log = logging.getLogger(__name__)


def no_task_between() -> None:
    """The default `between_tasks`: nothing waits to run between two pair checks."""


PREVIEW_BYTES = 64 << 20  # previews kept for checks in other workers (~700 at 256 px)
MODES = ("hash", "hash+model", "model")
# Mode hash+model (measured on the public benchmark with hard negatives: docs/verifier.md, "In the daemon"):
# a verdict on the fingerprints and the cosine is taken without the pixel check when it is at least this sure
# (SURE_DUPLICATE for a duplicate: the hard negatives that fool the cheap stage score up to 0.988 there)...
SURE = 0.95
SURE_DUPLICATE = 0.99
# ...and, once the pixel check ran and found no match, a duplicate verdict needs this much to overrule it;
# below, the pair takes the likelier of the two other labels.
OVERRULE = 0.97
# A turned pair (the hashes' best orientation is not the identity) is judged without the cosine: when its
# upright embeddings are at least this alike, a `different` verdict on the hashes alone is not taken without
# the pixel check (a square crop's hashes are far apart in every orientation, the best one is noise, and
# the cheap verdict says `different` at 0.97-1.0 although the embedding finds the pair at 0.87-0.91).
ALIKE_COSINE = 0.75
NEIGHBOURS = 16  # embedding neighbours asked for each file
# below this, an embedding neighbour is not a candidate. A photo shown in a viewer's screenshot scores only
# 0.54-0.77 against it (stretch benchmark), but a floor of 0.5 makes a query ~5x slower (45 ms against 3-15
# ms over 250 000 synthetic embeddings, 16 answers a query, not 1: docs/verifier.md, "Square crops and
# screenshots"): those need a candidate source of their own.
MIN_COSINE = 0.75
EDGE_KINDS = {"duplicate": "near", "similar": "similar"}  # verdict label -> edge kind ("different": none)
# A `similar` edge needs at least this probability: a weak "similar" is no relation. On the verifier's
# held-out pairs (all evidence) 38 of 39 true "similar" verdicts reach it and 1 of the 2 wrong ones; on the
# stretch benchmark every same-scene edge is >= 0.91, the unrelated ones 0.62-0.66 (docs/verifier.md).
MIN_SIMILAR = 0.7
# Two pictures of the same size that the pixel check aligns at the same scale (both within SHOT_SCALE) but
# shifted by at least SHOT_SHIFT of the long side are two shots (stretch bursts: 1.2-11 %), not one picture.
SHOT_SHIFT = 0.006
SHOT_SCALE = 0.01


@dataclass(frozen=True, slots=True)
class MatchOptions:
    """How near duplicates are found: Hamming threshold, turned copies, crop-aware (window) hashes, and the
    mode (MODES: `hash` as before the model stage, `hash+model`, `model`; see the module docstring)."""

    threshold: int = 10
    orientations: bool = True
    crops: bool = True
    reference_roots: tuple[str, ...] = ()
    mode: str = "hash"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"matching mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def uses_model(self) -> bool:
        return self.mode != "hash"


@functools.cache
def shipped_verifier() -> Verifier:
    """Return the shipped verifier, loaded once per process (raise ModelError naming its file)."""
    return Verifier.load()


VerifierSource = Callable[[], Verifier]  # "the current verifier": a retrained one may replace it any time


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


def embedding_of(fingerprint: Fingerprint | None) -> np.ndarray | None:
    """Given a fingerprint, return its embedding as float32, or None when it has none."""
    if fingerprint is None or not fingerprint.embedding:
        return None
    return unpack_embedding(fingerprint.embedding)


def load_embedding_index(index: Index):
    """Given the index, return the EmbeddingIndex of every `ok` file with an embedding (empty when none has
    one; its dimensions are the first batch's, or taken from the first file added)."""
    embeddings = read_embedding_index(index)
    return embeddings if embeddings is not None else _LazyEmbeddingIndex()


class _LazyEmbeddingIndex:
    """An empty EmbeddingIndex whose dimensions are not known yet: it becomes one at the first `add`."""

    def __init__(self):
        self._inner = None

    def __len__(self) -> int:
        return 0 if self._inner is None else len(self._inner)

    def add(self, file_id: int, vector: np.ndarray) -> None:
        if self._inner is None:
            from comparimg.embedding.neighbours import EmbeddingIndex

            self._inner = EmbeddingIndex(len(vector))
        self._inner.add(file_id, vector)

    def remove(self, file_id: int) -> None:
        if self._inner is not None:
            self._inner.remove(file_id)

    def query(self, vector: np.ndarray, **options) -> list[tuple[int, float]]:
        return [] if self._inner is None else self._inner.query(vector, **options)


@dataclass(slots=True)
class _Found:
    """What one link pass learnt of the files it met: paths, content hashes and fingerprints by id."""

    paths: dict[int, str] = dataclasses.field(default_factory=dict)
    contents: dict[int, str] = dataclasses.field(default_factory=dict)
    fingerprints: dict[int, Fingerprint] = dataclasses.field(default_factory=dict)

    def learn(self, index: Index, file_ids: Iterable[int]) -> None:
        """Given the index and file ids, read the rows of those not known yet."""
        rows = index.files_by_ids({fid for fid in file_ids if fid not in self.paths})
        for fid, row in rows.items():
            self.paths[fid] = row.path
            if row.fingerprint:
                self.contents[fid] = row.fingerprint.content_hash
                self.fingerprints[fid] = row.fingerprint


@dataclass(frozen=True, slots=True)
class PairEvidence:
    """What the verifier is shown of a pair: both fingerprints (the queried file is A), the orientation
    turning A into B (the hashes' best one, as the verifier was trained), and the embedding cosine when it
    is meaningful: both files have an embedding and the pair is upright (the stored embeddings are of the
    upright pictures; a turned pair's cosine is left out and the pixel check carries it)."""

    a: Fingerprint
    b: Fingerprint
    orientation: int
    cosine: float | None
    upright_cosine: float | None = None  # the stored embeddings' cosine, whatever the orientation

    @classmethod
    def of(cls, pair: PairToVerify, found: _Found) -> PairEvidence:
        a, b = found.fingerprints[pair.query_id], found.fingerprints[pair.other_id]
        orientation = best_orientation(a, b)
        first, second = embedding_of(a), embedding_of(b)
        upright = None
        if first is not None and second is not None and len(first) == len(second):
            upright = float(np.clip(np.dot(first, second), -1.0, 1.0))
        return cls(a, b, orientation, upright if orientation == 0 else None, upright)

    def features(self, pixels=None) -> np.ndarray:
        """Given the pixel check's Verdict when it ran, return the pair's feature vector."""
        return pair_features(self.a, self.b, self.cosine, pixels, self.orientation)

    def check_candidate(self) -> Candidate:
        """Return the Candidate the pixel check is run with: the verifier's orientation."""
        distance = int(global_distances(self.a, self.b)[self.orientation])
        return Candidate(0, distance, self.orientation)


def is_sure(verdict: Verdict) -> bool:
    """Given the verdict on the fingerprints and the cosine, return whether it is taken without the pixel
    check (SURE, SURE_DUPLICATE for a duplicate)."""
    return verdict.confidence >= (SURE_DUPLICATE if verdict.label == "duplicate" else SURE)


def taken_unchecked(verdict: Verdict, evidence: PairEvidence) -> bool:
    """Given the verdict on the fingerprints and the cosine and that evidence, return whether it is taken
    without the pixel check: it is sure (`is_sure`), and it is not a `different` verdict on a turned pair
    whose upright embeddings are ALIKE_COSINE alike (the verdict never saw that cosine)."""
    if not is_sure(verdict):
        return False
    unseen_cosine = evidence.cosine is None and evidence.upright_cosine is not None
    return not (verdict.label == "different" and unseen_cosine and evidence.upright_cosine >= ALIKE_COSINE)


def checked_verdict(verdict: Verdict, pixels_matched: bool, shifted_shot: bool = False) -> Verdict:
    """Given the verdict on all the evidence, whether the pixel check matched and whether it found another
    shot (`is_shifted_shot`), return the verdict that stands: a duplicate against a pixel check that found
    no match needs OVERRULE, and a duplicate that is a shifted shot is none; else the pair takes the
    likelier of `similar` and `different` (with its probability)."""
    if verdict.label != "duplicate" or (pixels_matched and not shifted_shot):
        return verdict
    if verdict.confidence >= OVERRULE and not shifted_shot:
        return verdict
    probabilities = dict(zip(LABELS, verdict.probabilities, strict=True))
    label = max(("similar", "different"), key=lambda name: probabilities[name])
    return Verdict(label, probabilities[label], verdict.probabilities)


def is_shifted_shot(evidence: PairEvidence, pixels: PixelVerdict) -> bool:
    """Given a pair's evidence and the pixel check's Verdict, return whether the check aligned two pictures
    of the same size at the same scale (both within SHOT_SCALE) but shifted by at least SHOT_SHIFT of the
    long side: each shows, along an edge, what the other lacks, so it is another shot of the scene (a
    burst, the next frame), not an edit of one picture. An edit that keeps the size keeps the framing
    (measured: the 1 515 same-size copy pairs of the public corpus all align at offset 0), and a turned or
    tilted copy's shift is its placement's before the turn (reason "turned or tilted"): neither counts."""
    if not pixels.matched or pixels.reason or abs(np.log(max(pixels.scale, 1e-6))) > SHOT_SCALE:
        return False
    a, b = evidence.a, evidence.b
    width, height = (a.height, a.width) if ORIENTATION_STEPS[evidence.orientation][0] else (a.width, a.height)
    if abs(width - b.width) > SHOT_SCALE * b.width or abs(height - b.height) > SHOT_SCALE * b.height:
        return False
    side = float(np.clip(max(width, height), MIN_FINE_SIDE, FINE_SIDE))  # the check's fine grid
    return max(abs(pixels.offset[0]), abs(pixels.offset[1])) >= SHOT_SHIFT * side


def judged_edges(pairs: Iterable[PairToVerify], verdict: Verdict) -> list[Match]:
    """Given the pairs one verdict decides and the verdict, return their edges: `near` for a duplicate,
    `similar` for another shot of the scene (at least MIN_SIMILAR sure), none for different pictures."""
    kind = EDGE_KINDS.get(verdict.label)
    if kind is None or (kind == "similar" and verdict.confidence < MIN_SIMILAR):
        return []
    confidence = round(float(verdict.confidence), 4)
    return [
        dataclasses.replace(
            edge_for(p.query_id, p.other_id, kind, p.candidate.distance, p.candidate.orientation),
            verdict=verdict.label,
            confidence=confidence,
        )
        for p in pairs
    ]


def _edges_of(sharing: dict[tuple, list[PairToVerify]], verdicts: dict[tuple, Verdict]) -> list[Match]:
    return [edge for key, verdict in verdicts.items() for edge in judged_edges(sharing[key], verdict)]


class Linker:
    """The matching state of one index: its HashIndex (and EmbeddingIndex with the model), and the steps that
    turn new files into groups.

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
        verifier: VerifierSource = shipped_verifier,
    ):
        self.index = index
        # Called while pair checks run in the workers, when no transaction is open (the daemon runs its
        # urgent writer jobs there, so a decision does not wait for minutes of checks).
        self.between_tasks = between_tasks
        self.cancel = cancel  # once set, `link` raises Cancelled without storing anything
        self.pool = pool
        self.options = options
        self.clock = clock
        self.verifier = verifier  # asked at each link: a retrained model is used from the next one
        self._hash_index: matching.HashIndex | None = None
        self._embedding_index = None  # EmbeddingIndex, loaded on first use in the model modes
        # ...or loaded on a thread of its own (`load_embeddings_in_background`, the daemon): until it is
        # ready, files are linked by their hash candidates and wait here, unmarked, for their embedding
        # neighbours (`link`).
        self._embedding_loader: BackgroundEmbeddingIndex | None = None
        self.waiting: set[int] = set()
        self.verifications = 0  # verify_pair tasks run so far (for reports)
        self.judged = 0  # distinct pairs the learned verifier judged (for reports)
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

    @property
    def embedding_index(self):
        """Return the EmbeddingIndex of every `ok` file with an embedding, loading it on first use; None
        while it loads in the background (or when that load failed)."""
        if self._embedding_loader is not None:
            return self._embedding_loader.ready_index()
        if self._embedding_index is None:
            self._embedding_index = load_embedding_index(self.index)
        return self._embedding_index

    def load_embeddings_in_background(self) -> BackgroundEmbeddingIndex:
        """Start loading the EmbeddingIndex on a thread of its own (the writer thread goes on meanwhile);
        return the loader (its `state` is the status's)."""
        self._embedding_loader = BackgroundEmbeddingIndex(self.index, self.cancel, _LazyEmbeddingIndex)
        self._embedding_index = self._embedding_loader  # files linked or unlinked meanwhile go to it
        return self._embedding_loader

    @property
    def embeddings_pending(self) -> bool:
        """Return whether the EmbeddingIndex is still loading in the background."""
        return self._embedding_loader is not None and self._embedding_loader.state == LOADING

    def _current_verifier(self) -> Verifier | None:
        """Return the verifier to judge with, or None (then pairs are judged as in mode `hash`) when the
        options do not use the model or it cannot be loaded (logged, naming the file)."""
        if not self.options.uses_model:
            return None
        try:
            return self.verifier()
        except ModelError as error:
            log.error("verifier_unavailable reason=%s: pairs are judged by the pixel check alone", error)
            return None

    def link(self, file_ids: Collection[int], match: MatchOptions | None = None) -> set[int]:
        """Given ids of files whose fingerprint is new or changed, find, judge and store their edges.

        With `match`, query with its threshold and orientations instead of the linker's own (an API job's
        options: the same HashIndex, searched wider or narrower). Return every file whose groups may have
        changed (the files, their old and their new neighbours).
        """
        file_ids = self._not_waiting(file_ids)
        rows = {fid: row for fid, row in self.index.files_by_ids(file_ids).items() if row.state == "ok"}
        self._keep_indexes_in_step(rows)
        refused = self.index.not_duplicate_pairs(rows)
        same_bytes = self._same_bytes(rows)
        exact = [
            edge_for(file_id, other, "exact", 0, 0)
            for file_id, others in same_bytes.items()
            for other in others
            if (min(file_id, other), max(file_id, other)) not in refused
        ]
        verifier = self._current_verifier()
        found = _Found()
        try:
            # Pairs are judged as they are found: the workers start while the other files are queried.
            pairs = self._candidate_pairs(rows, refused, same_bytes, found, verifier is not None, match)
            if verifier is None:
                near = self._verified_edges(pairs)
            else:
                near = self._judged_edges(pairs, found, verifier)
        finally:
            if self.previews is not None:  # they served this pass (even a cancelled one): not kept
                self.previews.clear()
        self._stop_if_asked()  # the last moment a stop leaves nothing stored (the files keep `needs_link`)
        edges_of: dict[int, dict[tuple[int, int], Match]] = {file_id: {} for file_id in file_ids}
        for match in [*near, *exact]:  # an exact edge replaces a near one for the same pair
            for end in (match.file_a, match.file_b):
                edges_of.setdefault(end, {})[(match.file_a, match.file_b)] = match
        affected = self.neighbours_of(file_ids)
        with self.index.transaction():
            for file_id in file_ids:
                self.index.replace_matches(file_id, edges_of[file_id].values())
            self.index.mark_linked([file_id for file_id in file_ids if file_id not in self.waiting])
        return affected | set(edges_of)

    def _not_waiting(self, file_ids: Collection[int]) -> Collection[int]:
        """Given files to link, return those to link now: while the EmbeddingIndex loads, not those already
        linked by their hashes and waiting for it; once it is loaded, all (they stop waiting)."""
        if self.embeddings_pending:
            return [file_id for file_id in file_ids if file_id not in self.waiting]
        self.waiting.difference_update(file_ids)
        return file_ids

    def _stop_if_asked(self) -> None:
        """Raise Cancelled once the stop event is set. `link` calls it between its steps and before each
        file's queries (with thousands of files to link, most without a candidate, nothing else would look
        at the event for minutes), and the pair checks between two checks."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def _same_bytes(self, rows: dict) -> dict[int, set[int]]:
        """Given the rows to link, return each one's other `ok` files of the same bytes."""
        found = {}
        for file_id, row in rows.items():
            self._stop_if_asked()
            found[file_id] = set(self.index.ok_files_with_content_hash(row.fingerprint.content_hash))
            found[file_id].discard(file_id)
        return found

    def _keep_indexes_in_step(self, rows: dict) -> None:
        """Given the rows to link, add them to the in-memory indexes already loaded (a first use loads them
        from the index, where these files already are)."""
        if self._hash_index is not None:
            for file_id, row in rows.items():
                self._hash_index.add(file_id, query_fingerprint(row.fingerprint, self.options))
        if self._embedding_index is not None:
            for file_id, row in rows.items():
                self._embedding_index.remove(file_id)
                vector = embedding_of(row.fingerprint)
                try:
                    if vector is not None:
                        self._embedding_index.add(file_id, vector)
                except ValueError as error:  # another model's length: found by its hashes only
                    log.warning("embedding_not_indexed file=%s reason=%s", file_id, error)

    def _candidate_pairs(
        self, rows, refused, same_bytes, found: _Found, model: bool, match: MatchOptions | None = None
    ) -> Iterator[PairToVerify]:
        """Given the rows to link, the refused pairs, each row's files of the same bytes, where to keep what
        is learnt of the other files, whether the model is used and optionally a pass's own matching options
        (an API job's threshold and orientations, over the same HashIndex), yield each candidate pair once,
        as the indexes find it: the hash neighbours (not in mode `model`) and, with the model, the
        embedding neighbours."""
        seen: set[tuple[int, int]] = set()
        options = match or self.options
        wider = {} if match is None else {"threshold": match.threshold, "window_threshold": match.threshold}
        for file_id, row in rows.items():
            self._stop_if_asked()
            found.fingerprints[file_id] = row.fingerprint
            exclude = same_bytes[file_id] | {file_id}
            candidates = []
            if self.options.mode != "model":
                fingerprint = query_fingerprint(row.fingerprint, options)
                candidates = self.hash_index.query(fingerprint, exclude=exclude, **wider)
            neighbours = self._embedding_neighbours(row.fingerprint, exclude) if model else []
            if model and row.fingerprint.embedding and self.embeddings_pending:
                self.waiting.add(file_id)  # linked again, with its embedding neighbours, once loaded
            found.learn(self.index, [c.file_id for c in candidates] + [other for other, _ in neighbours])
            candidates += self._embedding_candidates(row.fingerprint, neighbours, found, candidates)
            for candidate in candidates:
                other_id = candidate.file_id
                pair = (min(file_id, other_id), max(file_id, other_id))
                if pair in refused or pair in seen or other_id not in found.paths:
                    continue
                if model and other_id not in found.fingerprints:  # the verifier needs both fingerprints
                    continue
                seen.add(pair)
                yield PairToVerify(
                    file_id,
                    row.path,
                    other_id,
                    found.paths[other_id],
                    candidate,
                    (row.fingerprint.content_hash, found.contents.get(other_id, "")),
                )

    def _embedding_neighbours(self, fingerprint: Fingerprint, exclude: set[int]) -> list[tuple[int, float]]:
        vector, embeddings = embedding_of(fingerprint), self.embedding_index
        if vector is None or embeddings is None or len(embeddings) == 0:
            return []
        try:
            return embeddings.query(vector, k=NEIGHBOURS, min_cosine=MIN_COSINE, exclude=exclude)
        except ValueError as error:  # another model's length: found by its hashes only
            log.warning("embedding_not_queried reason=%s", error)
            return []

    @staticmethod
    def _embedding_candidates(fingerprint, neighbours, found: _Found, hash_candidates) -> list[Candidate]:
        """Given the queried fingerprint, its embedding neighbours and the hash candidates, return a
        Candidate for each neighbour the hashes did not find, in the hashes' best orientation."""
        known = {c.file_id for c in hash_candidates}
        made = []
        for other_id, _ in neighbours:
            other = found.fingerprints.get(other_id)
            if other_id in known or other is None:
                continue
            distances = global_distances(fingerprint, other)
            orientation = int(np.argmin(distances))
            made.append(Candidate(other_id, int(distances[orientation]), orientation, "embedding"))
        return made

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
            self._stop_if_asked()
            if isinstance(outcome, ImageError):
                log.warning("verify_failed a=%s b=%s reason=%s", args[0], args[1], outcome.reason)
            elif outcome.matched:
                matched.append(key_of[args[:3]])
        return [
            edge_for(p.query_id, p.other_id, "near", p.candidate.distance, p.candidate.orientation)
            for key in matched
            for p in sharing[key]
        ]

    def _judged_edges(self, pairs: Iterable[PairToVerify], found: _Found, verifier: Verifier) -> list[Match]:
        """Given candidate pairs (consumed lazily), what is known of their files and the verifier, judge each
        distinct pair (pairs of the same two contents met the same way share one verdict) on the
        fingerprints and the cosine; when the verdict is not sure and the mode allows, run the pixel check in
        a worker and judge again with it. Return the edges of the pairs judged duplicate or similar."""
        sharing: dict[tuple, list[PairToVerify]] = {}  # verdict key -> the pairs it decides
        verdicts: dict[tuple, Verdict] = {}
        waiting: dict[tuple, tuple] = {}  # verify_pair arguments -> (key, the pair's evidence so far)
        checks_allowed = self.options.mode == "hash+model"

        def unsure() -> Iterator[tuple]:
            for pair in pairs:
                self._stop_if_asked()
                key = pair.verdict_key()
                if key in sharing:
                    sharing[key].append(pair)
                    continue
                sharing[key] = [pair]
                evidence = PairEvidence.of(pair, found)
                verdict = verifier.judge(evidence.features())
                self.judged += 1
                if taken_unchecked(verdict, evidence) or not checks_allowed:
                    verdicts[key] = verdict
                    continue
                self.verifications += 1
                args = (pair.query_path, pair.other_path, evidence.check_candidate())
                waiting[args] = (key, evidence, verdict)
                yield (*args, self._previews_of(pair.query_path, pair.other_path))

        if not checks_allowed:
            for _ in unsure():  # nothing is ever yielded: every pair is judged on the cheap evidence
                pass
            return _edges_of(sharing, verdicts)
        # While a check runs, no transaction is open: the daemon's urgent writes run in the meantime.
        checked = self.pool.map_unordered(hashing.verify_pair, unsure(), self.cancel, self.between_tasks)
        for args, outcome in checked:
            self._stop_if_asked()
            key, evidence, cheap = waiting.pop(args[:3])
            if isinstance(outcome, ImageError):  # the cheaper verdict, as if the check found no match
                log.warning("verify_failed a=%s b=%s reason=%s", args[0], args[1], outcome.reason)
                verdicts[key] = checked_verdict(cheap, pixels_matched=False)
            else:
                full = verifier.judge(evidence.features(outcome))
                verdicts[key] = checked_verdict(full, outcome.matched, is_shifted_shot(evidence, outcome))
        return _edges_of(sharing, verdicts)

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
        for file_id in file_ids:
            self.waiting.discard(file_id)
            if self._hash_index is not None:
                self._hash_index.remove(file_id)
            if self._embedding_index is not None:
                self._embedding_index.remove(file_id)
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
        edges, refused = self.index.matches_touching(component), self.index.not_duplicate_pairs(component)
        duplicates = matching.group_matches(facts, edges, refused)
        groups = duplicates + matching.similar_groups(facts, edges, duplicates, refused)
        groups = [decisions.mark_suggestions(group, facts) for group in groups]
        with self.index.transaction():
            self.index.replace_groups(component, groups, self.clock())
        return len(groups)
