"""The matching room (pure): find candidate duplicates among indexed hashes, and group verified matches.

`HashIndex` answers "which indexed images come within `threshold` bits of this one?" in a few milliseconds
among a million, with multi-index hashing: every 64-bit hash is cut into 4 chunks of 16 bits, and two
hashes within r bits agree within floor(r / 4) bits on at least one chunk (pigeonhole). A query enumerates
the chunk values within that radius of each of its chunks, reads their buckets (CSR offsets over keys
`(chunk, table, value)`), and checks the few entries found with an exact popcount.

Each image contributes one entry per hash: table 0 holds the global hash (identity orientation), table
1 + k holds window slot k (`Fingerprint.windows[k]`, see the hashing room). A query compares:

- its global hash in all 8 orientations with the global hashes (`via="global"`);
- its global hash in all 8 orientations with every window slot (the query is a crop of the indexed image,
  perhaps turned);
- each of its windows in all 8 orientations with the global hashes (the indexed image is a crop of the
  query, perhaps turned): fingerprints carry their windows upright and flipped / rotated by 180°
  (`TURNED_WINDOWS`), the transposed orientations are the same hashes with their bits transposed;
- each of its windows in all 8 orientations with the slot where that turn puts them (both lost different
  parts: caption bar, watermark, border; `SLOT_AFTER_TURN`).

A candidate's orientation is the one of the query hash that met (it turns the query into the indexed image).
Orientations of the windows are used only when the query gives all 8 orientations of its global hash.
Window comparisons are 264 of the 272 comparisons of a query, so their chunk search radius is
`window_radius` (1 by default): a window pair within `window_threshold` bits is found when one of its 16-bit
chunks differs by at most 1 bit — always up to 7 bits, most pairs up to 10 — at an eighth of the cost of
radius 2. True copies match several windows at a few bits (measured: almost all at <= 6), so the loss is
small.

A `HashIndex(lone_window_margin=m)` with m > 0 asks more of a candidate met by window rules alone: two
distinct rules within `window_threshold`, or one within `window_threshold - m`. With 264 window comparisons
a query, lone near misses at the threshold were most of the candidates of a big generated library
(docs/performance.md: 41 745 of 45 297 pairs among 20 000 pictures, each a pixel check; m = 2 cuts them by
74 %); but on the stretch benchmark of real photos m = 2 loses 3 of 110 true copies (screenshots, a meme),
so the daemon keeps m = 0 (LONE_WINDOW_MARGIN): every window candidate is judged.
Entries live in segments (immutable CSR structures, merged like a binary counter) plus a small pending
list scanned by brute force, so `add` is cheap and `add_many` builds one segment for a bulk load. A segment
holds 9 bytes an entry in each of the 4 chunk tables, plus its bucket table sized to it (`_Segment`): about
420 bytes an image with 10 windows among a million (tests/benchmarks/test_hash_index_memory.py).
"""

from __future__ import annotations

import collections
import ctypes
import functools
import heapq
import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from comparimg.decisions import keeper_key
from comparimg.model import (
    ABSENT,
    ORIENTATION_STEPS,
    TURNED_WINDOWS,
    WINDOW_SLOTS,
    WINDOW_TRIMS,
    Candidate,
    FileFacts,
    Fingerprint,
    Group,
    GroupMember,
    Match,
)

CHUNKS = 4
CHUNK_BITS = 16
MAX_WINDOWS = WINDOW_SLOTS  # window slots per picture, upright (the layout: model.TURNED_WINDOWS)
STRIDE = 1 + MAX_WINDOWS  # entries per image: global hash, then window slots
_MASK16 = np.uint64(0xFFFF)
# Per chunk, the bits of a hash outside it (a segment entry holds its row's low bits in its chunk's place).
_KEEP = tuple(np.uint64(~(0xFFFF << (chunk * CHUNK_BITS)) & (2**64 - 1)) for chunk in range(CHUNKS))
_PENDING_LIMIT = 1024
# The orientation that undoes each one (model.ORIENTATIONS order): rot90 and rot270 undo each other.
INVERSE_ORIENTATION = (0, 3, 2, 1, 4, 5, 6, 7)
_MERGE_RATIO = 4
LONE_WINDOW_MARGIN = 0  # a window candidate met by one rule alone: within window_threshold minus this
_ALL_ORIENTATIONS = range(8)


@functools.cache
def _chunk_masks(radius: int) -> np.ndarray:
    masks = [0]
    for flips in range(1, radius + 1):
        masks += [sum(1 << bit for bit in bits) for bits in itertools.combinations(range(CHUNK_BITS), flips)]
    return np.array(masks, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Rules:
    """The query hashes, each with the table it is compared with, its orientation and whether it is global."""

    hashes: np.ndarray  # uint64
    tables: np.ndarray  # int64
    orientations: np.ndarray  # int64
    is_global: np.ndarray  # bool: the query's global hash against global hashes
    thresholds: np.ndarray  # int64
    radii: np.ndarray  # int64: chunk radius searched (below thresholds // CHUNKS the search is partial)


def _turned_slot(slot: int, orientation: int) -> int:
    # The slot of the turned picture that holds window `slot` of the upright picture, turned (the content
    # slot, past the trimmed windows, stays where it is).
    if slot >= len(WINDOW_TRIMS):
        return slot
    left, top, right, bottom = WINDOW_TRIMS[slot]
    transpose, reverse_rows, reverse_columns = ORIENTATION_STEPS[orientation]
    if transpose:
        left, top, right, bottom = top, left, bottom, right
    if reverse_rows:
        top, bottom = bottom, top
    if reverse_columns:
        left, right = right, left
    return WINDOW_TRIMS.index((left, top, right, bottom))


# SLOT_AFTER_TURN[orientation][slot]: where window `slot` lies once the picture is turned by `orientation`.
SLOT_AFTER_TURN = tuple(tuple(_turned_slot(slot, k) for slot in range(MAX_WINDOWS)) for k in range(8))
# The transposed orientations (rot90, rot270, transpose, transverse) as the bit transposition of the hashes
# of a stored one: transposing a DCT block keeps its median (model.ORIENTATIONS ids).
_TRANSPOSED_FROM = {1: 4, 3: 5, 6: 0, 7: 2}


def transpose_bits(hashes: np.ndarray) -> np.ndarray:
    """Given 64-bit hashes (uint64), return them with their 8×8 bit matrix (first bit most significant,
    row by row) transposed: the hashes of the transposed DCT blocks."""
    bits = np.unpackbits(np.asarray(hashes, dtype=">u8").view(np.uint8).reshape(-1, 8), axis=1)
    turned = np.packbits(bits.reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 64), axis=1)
    return turned.view(">u8").ravel().astype(np.uint64)


def window_orientations(windows: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Given Fingerprint.windows, return {orientation: its MAX_WINDOWS window hashes turned that way} (uint64,
    ABSENT where a slot is empty): identity only for a fingerprint without turned windows."""
    slots = np.zeros(MAX_WINDOWS, dtype=np.uint64)
    upright = windows[:MAX_WINDOWS]
    slots[: len(upright)] = upright
    turned = {0: slots}
    if len(windows) != MAX_WINDOWS * (1 + len(TURNED_WINDOWS)):
        return turned
    for position, orientation in enumerate(TURNED_WINDOWS, start=1):
        block = windows[position * MAX_WINDOWS : (position + 1) * MAX_WINDOWS]
        turned[orientation] = np.array(block, dtype=np.uint64)
    for orientation, source in _TRANSPOSED_FROM.items():
        transposed = transpose_bits(turned[source])
        transposed[turned[source] == ABSENT] = ABSENT
        turned[orientation] = transposed
    return dict(sorted(turned.items()))


def _query_rules(fp: Fingerprint, threshold: int, window_threshold: int, window_radius: int) -> _Rules:
    # Global hashes in every orientation given against the global hashes and against every window slot;
    # windows in every orientation against the global hashes and against the slot where the turn puts them
    # (only when the global orientations are given: turned copies are wanted).
    rows = [(h, 0, k, True, threshold) for k, h in enumerate(fp.phash)]
    slots = range(MAX_WINDOWS)
    rows += [(h, 1 + slot, k, False, window_threshold) for k, h in enumerate(fp.phash) for slot in slots]
    if fp.windows:
        turned = window_orientations(fp.windows)
        if len(fp.phash) < len(_ALL_ORIENTATIONS):
            turned = {0: turned[0]}
        for k, hashes in turned.items():
            rows += [(h, 0, k, False, window_threshold) for h in hashes.tolist() if h != ABSENT]
            rows += [
                (h, 1 + SLOT_AFTER_TURN[k][slot], k, False, window_threshold)
                for slot, h in enumerate(hashes.tolist())
                if h != ABSENT
            ]
    rows = [row for row in rows if row[4] >= 0]  # a negative threshold turns a kind of rule off
    columns = list(zip(*rows, strict=True))
    return _Rules(
        hashes=np.array(columns[0], dtype=np.uint64),
        tables=np.array(columns[1], dtype=np.int64),
        orientations=np.array(columns[2], dtype=np.int64),
        is_global=np.array(columns[3], dtype=bool),
        thresholds=np.array(columns[4], dtype=np.int64),
        radii=np.array(
            [r[4] // CHUNKS if r[3] else min(r[4] // CHUNKS, window_radius) for r in rows], np.int64
        ),
    )


def fingerprint_entries(fp: Fingerprint) -> tuple[np.ndarray, np.ndarray]:
    """Given a Fingerprint, return its STRIDE entry hashes (uint64) and which of them are present (bool)."""
    hashes = np.zeros(STRIDE, dtype=np.uint64)
    present = np.zeros(STRIDE, dtype=bool)
    windows = fp.windows[:MAX_WINDOWS]
    hashes[0] = fp.phash[0]
    hashes[1 : 1 + len(windows)] = windows
    present[: 1 + len(windows)] = True
    present[1:] &= hashes[1:] != ABSENT
    return hashes, present


class _Probe:
    """The bucket keys one query reads, chunk-major, each with its rule, the query hash, the bits its chunk
    value differs from the query's (`flips`) and the rule's threshold; computed once for every segment."""

    def __init__(self, rules: _Rules):
        keys, rule_ids, flips, chunk_starts = [], [], [], [0]
        for chunk in range(CHUNKS):
            for radius in np.unique(rules.radii).tolist():
                chosen = np.flatnonzero(rules.radii == radius)
                masks = _chunk_masks(radius)
                values = _keys(chunk, rules.tables[chosen], rules.hashes[chosen])
                keys.append((values[:, None] ^ masks[None, :]).ravel())
                rule_ids.append(np.repeat(chosen, len(masks)))
                flips.append(np.tile(np.bitwise_count(masks).astype(np.int64), len(chosen)))
            chunk_starts.append(sum(len(k) for k in keys))
        self.keys = np.concatenate(keys)
        self.rules = np.concatenate(rule_ids)
        self.flips = np.concatenate(flips)
        self.hashes = rules.hashes[self.rules]
        self.thresholds = rules.thresholds[self.rules]
        self.chunk_starts = np.array(chunk_starts, dtype=np.int64)
        self.chunk_of = np.repeat(np.arange(CHUNKS, dtype=np.uint64), np.diff(self.chunk_starts))
        self.max_threshold = int(rules.thresholds.max())


def _keys(chunk: int, tables: np.ndarray, values: np.ndarray) -> np.ndarray:
    # Bucket keys (chunk, table, chunk value) as one int: ((chunk * STRIDE + table) << 16) | value.
    chunk_values = ((values >> np.uint64(chunk * CHUNK_BITS)) & _MASK16).astype(np.int64)
    return ((chunk * STRIDE + tables) << CHUNK_BITS) | chunk_values


_NO_HITS = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))


class _Segment:
    """An immutable multi-index over a block of images, rows in file id order.

    Each (chunk, table) block holds its entries sorted by that chunk's 16-bit value (CSR buckets keyed
    `(chunk, table, value)`), one uint64 per entry: the entry's hash with the chunk's own 16 bits — known from
    the bucket — replaced by the low 16 bits of its row, so a query reads its buckets sequentially and checks
    the other 48 bits there. The high bits of the row are kept aside (`high`, only past 65 536 rows): 9 bytes
    an entry (8 below 65 536 rows). Bucket starts are a dense uint32 table over every key for a large segment,
    else the starts of the used keys only, found by rank in a bitmap of the used keys, so a small segment
    stays small.
    """

    def __init__(self, owners: np.ndarray, hashes: np.ndarray, present: np.ndarray):
        if len(owners) > 1 and not np.all(owners[1:] > owners[:-1]):
            order = np.argsort(owners, kind="stable")
            owners, hashes, present = owners[order], hashes[order], present[order]
        self.owners = owners  # int64 file ids, one per row, each id once, ascending
        self.alive = np.ones(len(owners), dtype=bool)
        present = present.copy()
        present[:, 1:] &= hashes[:, 1:] != ABSENT  # an empty window slot (no border: no content hash)
        per_table = present.sum(axis=0).astype(np.int64)
        block_starts = np.concatenate(([0], np.cumsum(np.tile(per_table, CHUNKS))))  # chunk-major
        self.entries = np.empty(int(block_starts[-1]), dtype=np.uint64)
        wide = len(owners) > 1 << CHUNK_BITS
        self.high = np.empty(len(self.entries), _high_dtype(owners)) if wide else None
        counts = np.zeros((CHUNKS, STRIDE, 1 << CHUNK_BITS), dtype=np.int64)
        for table in range(STRIDE):
            rows = np.flatnonzero(present[:, table])
            values = np.ascontiguousarray(hashes[rows, table])
            for chunk in range(CHUNKS):
                start = int(block_starts[chunk * STRIDE + table])
                counts[chunk, table] = self._fill(chunk, rows, values, start)
        self._set_starts(counts.ravel())

    def _fill(self, chunk: int, rows: np.ndarray, values: np.ndarray, start: int) -> np.ndarray:
        # Write one (chunk, table) block from `start`, sorted by chunk value; return the bucket sizes.
        shift = np.uint64(chunk * CHUNK_BITS)
        chunk_values = (values >> shift).astype(np.uint16)
        order = np.argsort(chunk_values, kind="stable")  # a 16-bit stable argsort is a fast radix sort
        sorted_rows = rows[order]
        block = self.entries[start : start + len(rows)]
        np.bitwise_and(values[order], _KEEP[chunk], out=block)
        block |= (sorted_rows & 0xFFFF).astype(np.uint64) << shift
        if self.high is not None:
            self.high[start : start + len(rows)] = sorted_rows >> CHUNK_BITS
        return np.bincount(chunk_values, minlength=1 << CHUNK_BITS)

    def _set_starts(self, counts: np.ndarray) -> None:
        dtype = np.uint32 if len(self.entries) < 1 << 32 else np.int64
        used = np.flatnonzero(counts)
        # Dense (one start per key: 12.6 MB) from about 9 000 images on, where it costs at most 32 bytes an
        # entry and saves the rank computation below.
        if 8 * len(self.entries) >= len(counts) or 2 * len(used) >= len(counts):
            self.used = self.ranks = None
            self.starts = np.concatenate(([0], np.cumsum(counts))).astype(dtype)
        else:  # sparse: the starts of the used keys only, found by rank in a bitmap of the used keys
            self.used = np.packbits(counts > 0, bitorder="little").view(np.uint64)  # 384 KB
            self.ranks = np.concatenate(([0], np.cumsum(np.bitwise_count(self.used))))[:-1].astype(np.uint32)
            self.starts = np.concatenate(([0], np.cumsum(counts[used]))).astype(dtype)

    def _rank(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Given keys (int64, below the key count), return how many used keys lie below each and whether
        # each is used (a sparse segment).
        words = self.used[keys >> 6]
        bits = (keys & 63).astype(np.uint64)
        below = self.ranks[keys >> 6].astype(np.int64)
        below += np.bitwise_count(words & ((np.uint64(1) << bits) - np.uint64(1)))
        return below, ((words >> bits) & np.uint64(1)).astype(bool)

    def _buckets(self, probe: _Probe) -> tuple[np.ndarray, np.ndarray]:
        # The (start, end) of each probed key's bucket.
        if self.used is None:
            return self.starts[probe.keys].astype(np.int64), self.starts[probe.keys + 1].astype(np.int64)
        places, used = self._rank(probe.keys)
        starts = self.starts[places].astype(np.int64)
        ends = self.starts[np.where(used, places + 1, places)].astype(np.int64)
        return starts, ends

    def _block(self, chunk: int, table: int) -> tuple[int, int, np.ndarray]:
        # The (start, stop) of a (chunk, table) block and the chunk value of each of its entries.
        base = (chunk * STRIDE + table) << CHUNK_BITS
        keys = np.arange(base, base + (1 << CHUNK_BITS))
        if self.used is None:
            starts = self.starts[base : base + (1 << CHUNK_BITS) + 1].astype(np.int64)
            values = np.repeat(keys - base, np.diff(starts)).astype(np.uint64)
            return int(starts[0]), int(starts[-1]), values
        places, used = self._rank(keys)
        first, last = int(places[0]), int(places[-1] + used[-1])
        values = np.repeat(keys[used] - base, np.diff(self.starts[first : last + 1])).astype(np.uint64)
        return int(self.starts[first]), int(self.starts[last]), values

    def _rows(self, positions: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        # The rows of the entries at `positions`, each in a block of the chunk given.
        shift = chunks * np.uint64(CHUNK_BITS)
        rows = ((self.entries[positions] >> shift) & _MASK16).astype(np.int64)
        if self.high is not None:
            rows |= self.high[positions].astype(np.int64) << CHUNK_BITS
        return rows

    def live_rows(self, file_ids: np.ndarray) -> np.ndarray:
        """Given file ids, return the rows where they live in this segment (absent or dead ids left out)."""
        if not len(self.owners):
            return np.empty(0, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.owners, file_ids), len(self.owners) - 1)
        rows = rows[self.owners[rows] == file_ids]
        return rows[self.alive[rows]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the (rows, STRIDE) entry hashes and presence this segment was built from."""
        hashes = np.zeros((len(self.owners), STRIDE), dtype=np.uint64)
        present = np.zeros((len(self.owners), STRIDE), dtype=bool)
        for table in range(STRIDE):  # chunk 0's blocks hold every entry once
            start, stop, values = self._block(0, table)
            positions = np.arange(start, stop)
            rows = self._rows(positions, np.zeros(len(positions), dtype=np.uint64))
            hashes[rows, table] = (self.entries[start:stop] & _KEEP[0]) | values
            present[rows, table] = True
        return hashes, present

    def __len__(self) -> int:
        return len(self.owners)

    def nbytes(self) -> int:
        arrays = (self.owners, self.alive, self.entries, self.high, self.used, self.ranks, self.starts)
        return sum(array.nbytes for array in arrays if array is not None)

    def search(self, probe: _Probe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Given a query's probe, return (rule index, row, distance) of every live entry within its
        threshold."""
        starts, ends = self._buckets(probe)
        counts = ends - starts
        ends_at = np.cumsum(counts)
        total = int(ends_at[-1]) if len(ends_at) else 0
        if total == 0:
            return _NO_HITS
        positions = np.arange(total, dtype=np.int64)
        positions += np.repeat(starts - ends_at + counts, counts)
        xor = self.entries[positions]
        xor ^= np.repeat(probe.hashes, counts)
        chunk_bounds = np.concatenate(([0], ends_at))[probe.chunk_starts]
        for chunk in range(CHUNKS):  # the bits left to compare: the chunk's own bits hold the row
            xor[chunk_bounds[chunk] : chunk_bounds[chunk + 1]] &= _KEEP[chunk]
        other_bits = np.bitwise_count(xor)
        near = np.flatnonzero(other_bits <= probe.max_threshold)  # few: most entries differ by ~24 bits
        key_of = np.searchsorted(ends_at, near, side="right")
        distances = other_bits[near].astype(np.int64) + probe.flips[key_of]
        within = distances <= probe.thresholds[key_of]
        near, key_of, distances = near[within], key_of[within], distances[within]
        rows = self._rows(positions[near], probe.chunk_of[key_of])
        live = self.alive[rows]
        return probe.rules[key_of][live], rows[live], distances[live]


def _high_dtype(owners: np.ndarray) -> type:
    # Row bits past the low 16: 8 of them up to 16 777 216 rows.
    return np.uint8 if len(owners) <= 1 << 24 else np.uint32


def release_free_heap() -> None:
    """Give the memory freed on the C heap back to the system where the C library can (glibc's
    `malloc_trim`); elsewhere do nothing. After a bulk load the freed rows and batch arrays lie between
    live blocks, and glibc keeps them resident (~170 MB for a million files) until asked."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc, or no C library to open by that name
        return
    trim(0)


class HashIndex:
    """A multi-index of fingerprints by file id; see the module docstring."""

    def __init__(
        self,
        threshold: int = 10,
        window_threshold: int | None = None,
        window_radius: int = 1,
        lone_window_margin: int = LONE_WINDOW_MARGIN,
    ):
        self.threshold = threshold
        self.lone_window_margin = lone_window_margin
        self.window_threshold = threshold if window_threshold is None else window_threshold
        self.window_radius = window_radius
        self._segments: list[_Segment] = []
        self._pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._pending) + sum(int(segment.alive.sum()) for segment in self._segments)

    def __contains__(self, file_id: object) -> bool:
        if not isinstance(file_id, int | np.integer):
            return False
        ids = np.array([file_id], dtype=np.int64)
        return file_id in self._pending or any(len(s.live_rows(ids)) for s in self._segments)

    def nbytes(self) -> int:
        """Return the memory held by the index arrays, in bytes (pending entries excluded)."""
        return sum(segment.nbytes() for segment in self._segments)

    def add(self, file_id: int, fp: Fingerprint) -> None:
        """Given a file id and its Fingerprint, index it (replacing what that id had)."""
        self.remove(file_id)
        self._pending[file_id] = fingerprint_entries(fp)
        if len(self._pending) >= _PENDING_LIMIT:
            self._flush()

    def add_many(self, items: Iterable[tuple[int, Fingerprint]]) -> None:
        """Given (file id, Fingerprint) pairs, index them all at once (a bulk load builds one segment)."""
        file_ids, rows, lengths = [], [], []
        for file_id, fp in items:
            windows = fp.windows[:MAX_WINDOWS]
            file_ids.append(file_id)
            rows.append((fp.phash[0], *windows, *(0,) * (MAX_WINDOWS - len(windows))))
            lengths.append(1 + len(windows))
        hashes = np.array(rows, dtype=np.uint64).reshape(-1, STRIDE)
        present = np.arange(STRIDE)[None, :] < np.array(lengths, dtype=np.int64)[:, None]
        self.add_arrays(np.array(file_ids, dtype=np.int64), hashes, present)

    def add_arrays(self, file_ids: np.ndarray, hashes: np.ndarray, present: np.ndarray) -> None:
        """Given file ids (n,), entry hashes (n, STRIDE) uint64 — global hash then window slots — and
        which entries are present (n, STRIDE) bool, index them at once (the fastest bulk load)."""
        file_ids = np.asarray(file_ids, dtype=np.int64)
        self._forget(file_ids)
        self._flush()
        if len(file_ids) > 1 and not np.all(file_ids[1:] > file_ids[:-1]):  # else no copy (a load by id)
            _, first = np.unique(file_ids[::-1], return_index=True)  # the last row of a repeated id wins
            keep = len(file_ids) - 1 - first  # by id
            file_ids, hashes, present = file_ids[keep], hashes[keep], present[keep]
        self._segments.append(_Segment(file_ids, hashes, present))
        self._merge_tail()

    def remove(self, file_id: int) -> None:
        """Given a file id, forget it; an unknown id is ignored."""
        self._forget(np.array([file_id], dtype=np.int64))

    def _forget(self, file_ids: np.ndarray) -> None:
        if self._pending:
            for file_id in set(self._pending).intersection(file_ids.tolist()):
                del self._pending[file_id]
        for segment in self._segments:
            segment.alive[segment.live_rows(file_ids)] = False

    def query(
        self,
        fp: Fingerprint,
        exclude: Collection[int] | int | None = None,
        threshold: int | None = None,
        window_threshold: int | None = None,
    ) -> list[Candidate]:
        """Given a Fingerprint, return the indexed files whose hashes come within the thresholds (see the
        module docstring), one Candidate per file, best first (global matches before window matches), without
        the ids in `exclude`. A candidate's orientation turns the queried picture into the indexed one."""
        rules = _query_rules(
            fp,
            self.threshold if threshold is None else threshold,
            self.window_threshold if window_threshold is None else window_threshold,
            self.window_radius,
        )
        best: dict[int, tuple[int, int, int, int]] = {}
        window_rules: collections.Counter[int] = collections.Counter()
        probe = _Probe(rules) if self._segments else None
        for owners, (rule_of, rows, distances) in self._search_all(rules, probe):
            _keep_best(best, owners[rows], rule_of, distances, rules)
            _count_window_rules(window_rules, owners[rows], rule_of, rules)
        excluded = {exclude} if isinstance(exclude, int) else set(exclude or ())
        window_threshold = int(rules.thresholds[~rules.is_global].max(initial=0))
        lone_threshold = max(window_threshold - self.lone_window_margin, 0)
        found = [
            Candidate(file_id, distance, orientation, "global" if rank == 0 else "window")
            for file_id, (rank, distance, orientation, _) in best.items()
            if file_id not in excluded
            and (rank == 0 or distance <= lone_threshold or window_rules[file_id] >= 2)
        ]
        return sorted(found, key=lambda c: (c.via != "global", c.distance, c.file_id))

    def _search_all(
        self, rules: _Rules, probe: _Probe | None
    ) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
        for segment in self._segments:
            yield segment.owners, segment.search(probe)
        if self._pending:
            yield self._scan_pending(rules)

    def _pending_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        owners = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
        hashes = np.stack([entry[0] for entry in self._pending.values()])
        present = np.stack([entry[1] for entry in self._pending.values()])
        return owners, hashes, present

    def _scan_pending(self, rules: _Rules) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        owners, hashes, present = self._pending_arrays()
        xor = hashes[:, rules.tables] ^ rules.hashes[None, :]
        within = present[:, rules.tables] & (np.bitwise_count(xor) <= rules.thresholds[None, :])
        rows, rule_of = np.nonzero(within)
        near = np.ascontiguousarray(xor[rows, rule_of])  # few: the chunk radius is checked on these only
        closest_chunk = np.bitwise_count(near[:, None].view(np.uint16)).min(axis=1)
        found = closest_chunk <= rules.radii[rule_of]
        distances = np.bitwise_count(near[found]).astype(np.int64)
        return owners, (rule_of[found], rows[found], distances)

    def _flush(self) -> None:
        if not self._pending:
            return
        owners, hashes, present = self._pending_arrays()
        self._pending = {}
        self._segments.append(_Segment(owners, hashes, present))
        self._merge_tail()

    def _merge_tail(self) -> None:
        # Like a binary counter (an older segment up to _MERGE_RATIO times larger absorbs the newer one); a
        # small segment with a sparse bucket table always absorbs it, so there is at most one such segment
        # (rebuilding it, under ~9 000 images, is cheap).
        while len(self._segments) > 1 and (
            len(self._segments[-2]) <= _MERGE_RATIO * len(self._segments[-1])
            or self._segments[-2].used is not None
        ):
            newer, older = self._segments.pop(), self._segments.pop()
            parts = [(s.owners[s.alive], *(array[s.alive] for array in s.arrays())) for s in (older, newer)]
            owners, hashes, present = (np.concatenate(column) for column in zip(*parts, strict=True))
            self._segments.append(_Segment(owners, hashes, present))


def _count_window_rules(
    counts: collections.Counter[int], owners: np.ndarray, rule_of: np.ndarray, rules: _Rules
) -> None:
    # Per file, the distinct window rules that met it (a hit may be found through several chunks).
    window = ~rules.is_global[rule_of]
    if window.any():
        keys = np.unique(owners[window] * len(rules.hashes) + rule_of[window])  # (file, rule) once each
        counts.update((keys // len(rules.hashes)).tolist())


def _keep_best(
    best: dict, owners: np.ndarray, rule_of: np.ndarray, distances: np.ndarray, rules: _Rules
) -> None:
    # Rank 0 for a global match, 1 for a window match; keep the lowest (rank, distance) per file.
    ranks = np.where(rules.is_global[rule_of], 0, 1)
    order = np.lexsort((distances, ranks, owners))
    owners, ranks, distances, rule_of = owners[order], ranks[order], distances[order], rule_of[order]
    first = np.ones(len(owners), dtype=bool)
    first[1:] = owners[1:] != owners[:-1]
    for file_id, rank, distance, rule in zip(
        owners[first].tolist(),
        ranks[first].tolist(),
        distances[first].tolist(),
        rule_of[first].tolist(),
        strict=True,
    ):
        found = (rank, distance, int(rules.orientations[rule]), rule)
        if file_id not in best or found < best[file_id]:
            best[file_id] = found


def group_matches(
    files: Mapping[int, FileFacts],
    matches: Iterable[Match],
    not_duplicates: Collection[tuple[int, int]] = (),
) -> list[Group]:
    """Given the files' facts, verified Match edges and pairs people marked "not duplicates", return the
    duplicate groups, the same whatever the order of the edges.

    Within each connected component, groups are stars: the file directly matched to the most files not yet
    grouped leads (ties in keeper order, `leader_key`) and takes them all; then the next. Every member is
    directly matched to its leader, so a group never holds a file related to it only through a third one,
    and the leader is the copy the others were made from when there is one (an original matches each of
    its edited copies, the copies need not match each other). A group whose members all share one content
    hash is "exact", else "near".
    Edges naming unknown files or marked "not duplicates" are ignored; groups of one file are dropped.
    A Match's orientation turns file_a into file_b; a member's orientation turns the leader into it.
    Suggestions are provisional ("keep" for the leader): decisions.mark_suggestions applies the rules.
    """
    refused = {(min(a, b), max(a, b)) for a, b in not_duplicates}
    edges: dict[tuple[int, int], Match] = {}
    for match in matches:
        pair = (min(match.file_a, match.file_b), max(match.file_a, match.file_b))
        if match.kind not in DUPLICATE_KINDS or pair in refused or pair[0] == pair[1]:
            continue
        if pair[0] not in files or pair[1] not in files:
            continue
        if pair not in edges or _edge_rank(match) < _edge_rank(edges[pair]):
            edges[pair] = match
    return _stars(edges, files)


def similar_groups(
    files: Mapping[int, FileFacts],
    matches: Iterable[Match],
    duplicate_groups: Iterable[Group],
    not_duplicates: Collection[tuple[int, int]] = (),
) -> list[Group]:
    """Given the files' facts, the Match edges, the duplicate groups made of them (`group_matches`) and the
    pairs people marked "not duplicates", return the groups of kind "similar": shots of one scene.

    Only `similar` edges count. A file in a duplicate group stands for it by that group's leader: an edge
    from a copy is an edge from its leader, so a similar group holds at most one file of each duplicate
    group (its leader) and never two files of the same one. Between two such files the surest edge counts
    (highest confidence, then nearest hashes); a member's orientation is kept only when its edge joins the
    two files themselves. Then the star cover of `group_matches`.
    """
    stands_for = {m.file_id: g.leader for g in duplicate_groups for m in g.members}
    refused = {(min(a, b), max(a, b)) for a, b in not_duplicates}
    edges: dict[tuple[int, int], Match] = {}
    for match in matches:
        if match.kind != "similar" or (match.file_a, match.file_b) in refused:
            continue
        a, b = (stands_for.get(end, end) for end in (match.file_a, match.file_b))
        if a == b or a not in files or b not in files or (min(a, b), max(a, b)) in refused:
            continue
        direct = {a, b} == {match.file_a, match.file_b}
        orientation = match.orientation if direct and a < b else 0
        edge = replace(match, file_a=min(a, b), file_b=max(a, b), orientation=orientation)
        pair = (edge.file_a, edge.file_b)
        if pair not in edges or _similar_rank(edge) < _similar_rank(edges[pair]):
            edges[pair] = edge
    return _stars(edges, files, kind="similar")


def _stars(
    edges: Mapping[tuple[int, int], Match], files: Mapping[int, FileFacts], kind: str = ""
) -> list[Group]:
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    groups = []
    for component in _components(neighbours):
        groups += _star_groups(component, files, edges, neighbours, kind)
    return sorted(groups, key=lambda g: (min(m.file_id for m in g.members), g.leader))


def _similar_rank(match: Match) -> tuple[float, int, int]:
    return (-(match.confidence or 0.0), match.distance, match.orientation)


DUPLICATE_KINDS = ("exact", "near")  # the edges of duplicate groups; "similar" edges make similar groups

# Between equally connected files, the one the keeper rules would keep leads.
leader_key = keeper_key


def _edge_rank(match: Match) -> tuple[int, int, int]:
    return (match.kind != "exact", match.distance, match.orientation)


def _components(neighbours: Mapping[int, set[int]]) -> list[list[int]]:
    seen: set[int] = set()
    components = []
    for start in sorted(neighbours):
        if start in seen:
            continue
        stack, component = [start], []
        seen.add(start)
        while stack:
            node = stack.pop()
            component.append(node)
            for other in neighbours[node] - seen:
                seen.add(other)
                stack.append(other)
        components.append(sorted(component))
    return components


def _star_groups(
    component: list[int],
    files: Mapping[int, FileFacts],
    edges: Mapping,
    neighbours: Mapping[int, set[int]],
    kind: str = "",
) -> list[Group]:
    """Greedy star cover of one component: O(edges · log n) with a lazily updated heap of free degrees."""
    free = set(component)
    degree = {node: len(neighbours[node]) for node in component}
    heap = [(-degree[node], leader_key(files[node]), node) for node in component]
    heapq.heapify(heap)
    groups = []
    while heap:
        negative_degree, key, leader = heapq.heappop(heap)
        if leader not in free:
            continue
        if -negative_degree != degree[leader]:
            heapq.heappush(heap, (-degree[leader], key, leader))
            continue
        members = sorted(neighbours[leader] & free, key=lambda node: leader_key(files[node]))
        free.discard(leader)
        if not members:
            continue
        free.difference_update(members)
        for taken in (leader, *members):
            for other in neighbours[taken] & free:
                degree[other] -= 1
        groups.append(_make_group(leader, members, files, edges, kind))
    return groups


def _make_group(
    leader: int, members: list[int], files: Mapping[int, FileFacts], edges: Mapping, kind: str = ""
) -> Group:
    """Given a star, return its Group: of `kind` when given, else "exact" when every member holds the same
    bytes and "near" otherwise. Each member carries its edge to the leader's verdict and confidence."""
    listed = [GroupMember(leader, 0, 0, "keep")]
    for other in members:
        edge = edges[(min(leader, other), max(leader, other))]
        orientation = edge.orientation if leader == edge.file_a else INVERSE_ORIENTATION[edge.orientation]
        listed.append(GroupMember(other, edge.distance, orientation, "trash", edge.verdict, edge.confidence))
    if not kind:
        hashes = {files[member.file_id].content_hash for member in listed}
        kind = "exact" if len(hashes) == 1 and "" not in hashes else "near"
    return Group(kind, leader, tuple(listed))
