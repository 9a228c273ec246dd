"""The precise check behind a hash match: are two files the same picture, or only alike at 8×8?

A 64-bit hash cannot tell a copy from a mirror-symmetric neighbour or from the next quadrant of the same
photo. So both files are decoded again (JPEG draft mode; a picture decoded moments ago in the same process,
or sent along with the check by the parent, comes from `pictures.CACHE`) and compared at fine resolution:

0. the pictures as they are, then (when that fails and one has a uniform border: frame, letterbox) without
   their borders;
1. the queried picture A is turned by the candidate's orientation (then upright, when that fails: a
   nearly symmetric picture may meet its copy's hash best in a wrong orientation); B stretched onto A's
   frame is tried first (resized, re-encoded, recoloured copies end there);
2. alignment: the normalised cross-correlation (NCC) of the overlap over a grid of scales at a coarse
   size finds where B lies in A (B may be a crop of A, A a crop of B, either may have a border), only
   among placements where each picture covers at least `MIN_COVER` of the other in each dimension; the
   best coarse placements are refined at a middle size (nearby offsets and scales), then scale and
   translation at the fine size from the local shifts of a 3×3 grid of regions (phase correlation per
   region, least squares). The overlap of a placement is a rectangle, so Padfield's masked NCC needs
   only the sums of A, A², B and B² over it, read from integral images, and the sums of A·B: for the
   coarse search one FFT correlation of A with all the scaled B's at once, at the smallest FFT shape
   that does not wrap the searched offsets; for the refinement directly over the 7×7 nearby offsets;
3. evidence: the aligned pictures are band-pass filtered (fine detail, no shading) and cut into blocks;
   the score is the fraction of textured blocks whose detail correlates (Pearson r ≥ `BLOCK_R`).
   A watermark or caption bar spoils only the blocks it covers; a different picture spoils nearly all.
   Blocks count only when both sides have detail there (a watermark on a flat sky neither helps nor
   hurts). Pictures with too little detail fall back on the correlation of the smooth overlap;
   a frame is not detail: blocks within EDGE_BAND of A's edges do not count, and the smooth correlation
   leaves out the sides where A has a uniform strip (different dark or flat pictures in one frame matched
   on the frame's edge alone: the stretch benchmark's 28 unrelated pixel matches, none left);
4. turns and tilts: when the aligned picture does not match (and has detail), the local shifts of a 4×4
   grid of regions fit a turn (two rounds), then a homography (two rounds), each fit kept only while it
   stays a small turn (≤ TURN_MAX_DEGREES) and tilt (corners within TILT_MAX of the turn) of the
   placement; B warped by it is scored as in 3. A straightened (turned by 2-4° and cropped) or keystone
   tilted copy ends there (reason "turned or tilted"); ~15-20 ms, only for pairs that got this far;
5. one picture wholly inside the other: when nothing above matched, the search of 2 runs again over the
   placements where the inner picture lies inside the outer one (at least CONTAINED_INNER) and spans as
   little as CONTAINED_SIDE of its width or height (a square crop of a 3:2 photo spans 0.67 of its width;
   a photo shown in a viewer's screenshot ~0.6-0.8 of it). Only a coarse placement with NCC of at least
   CONTAINED_NCC is refined; it matches (reason "inside the other") when the inner picture lies at least
   CONTAINED_FINAL_INNER inside, covers CONTAINED_AREA of the outer's area or CONTAINED_DETAIL of its
   textured blocks (the rest of a screenshot is a flat surround), and CONTAINED_SCORE of the blocks
   agree. A photo's quadrant (a quarter of it), two crops sharing less than half (neither inside the
   other) and another shot of the scene (shifted, so not inside) stay apart.

Measured on the public corpora (21 photos, 16 edits; quadrants as hard negatives): true copies score
0.55-1.0 (nearly all 1.0; the lowest is a big watermark over a low-detail clock), different pictures that
reach verification score at most ~0.2, hence MIN_SCORE = 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from comparimg.hashing.filters import band_pass, erode, fast_fft_length, gaussian
from comparimg.hashing.perceptual import content_box, turn_array
from comparimg.hashing.pictures import verification_picture
from comparimg.model import Candidate, ImageError, Verdict

FINE_SIDE = 256  # long side of the pictures compared block by block (less when one picture is smaller)
MIN_FINE_SIDE = 96
MID_SIDE = 128
COARSE_SIDE = 64
MIN_COVER = 0.7  # each picture covers at least this share of the other's width and height (search)
# A picture wholly inside the other (a square crop of a 3:2 photo, a photo shown in a screenshot) may cover
# less of it than MIN_COVER: step 5 places the inner picture at least CONTAINED_INNER inside and covering
# CONTAINED_SIDE of the outer's width and height, and keeps it only when it covers CONTAINED_AREA of the
# outer's area (or CONTAINED_DETAIL of the outer's textured blocks: the rest is a flat surround, as a
# viewer's window) and its detail agrees strongly (CONTAINED_SCORE). A photo's quadrant (a quarter of its
# area and detail) or two crops sharing < 50 % (neither inside the other) stay apart.
CONTAINED_INNER = 0.9  # searched (coarse offsets are whole pixels at 64 px)
CONTAINED_FINAL_INNER = 0.96  # once aligned: a crop lies wholly inside its original
CONTAINED_SIDE = 0.5
CONTAINED_AREA = 0.5
CONTAINED_DETAIL = 0.75
CONTAINED_SCORE = 0.7
# Step 5 runs only for pictures whose aspect ratios differ by more than this (as a log ratio): for two of
# one aspect, an inner picture under MIN_COVER of the outer's width is under it in height too, so only a
# flat surround could make it match, and the search doubled the cost of every failed check (300 noise
# pictures of one size: 67 s -> 137 s for their scan).
CONTAINED_MIN_ASPECT_CHANGE = 0.04
# ... and only a coarse placement that correlates this well is refined (inner copies: 0.84-1.0 on the
# stretch benchmark; most other pairs stop here, which keeps step 5 cheap)
CONTAINED_NCC = 0.8
FINAL_COVER = 0.75  # ... and this share once aligned: a crop of 10 % per border against a small border
SCALE_STEP = 1.035
COARSE_KEEP = 2  # coarse placements refined at the middle size
MID_STEPS = (-0.01, 0.0, 0.01)
BLOCK = 16  # at FINE_SIDE; proportionally smaller for smaller pictures
MIN_BLOCK = 8
BLOCK_R = 0.6
MIN_SCORE = 0.5  # fraction of textured blocks that must agree
MIN_TEXTURED = 8
EDGE_BAND = 0.08  # share of each side along A's edges whose blocks are not compared (a frame's edge)
FRAME_PROBE = 0.02  # A's outermost strip of this share of a side, when uniform (std < FRAME_STD), is a frame:
FRAME_STD = 4.0  # ... the smooth correlation of flat pictures leaves out EDGE_BAND there
FIT_GRID = 3  # regions per side whose local shifts correct the scale and translation
FIT_MIN_REGIONS = 4
FIT_ROUNDS = 2
FIT_MAX_SHIFT = 4.0
TEXTURE_STD = 0.7
# A copy turned by a few degrees (straightened) or tilted in perspective (keystone): when the aligned
# picture does not match, the local shifts of a grid of regions fit a turn, then a homography.
TURN_GRID = 4
TURN_MIN_REGIONS = 5
TILT_MIN_REGIONS = 8
TURN_MAX_SHIFT = 12.0  # at the fine size: a 4° turn moves a corner of a 256-pixel picture ~9 pixels
TURN_MAX_DEGREES = 5.0
TURN_MAX_RESCALE = 0.08  # how far (log) the turn's scale may stray from the placement's: a tilt shrinks
TILT_MAX = 0.08  # how far (share of B's long side) a corner may land from where a turn puts it
TURN_PAD = 16
# Longest over shortest side a picture may have: beyond, its fine picture is less than one block across
# (FINE_SIDE / BLOCK = 16, MIN_FINE_SIDE / MIN_BLOCK = 12) and there is no detail to compare.
MAX_ASPECT = 12


@dataclass(frozen=True, slots=True)
class _CoverRule:
    """Which placements a search tries: the overlap spans at least `of_a` of A's width and height and
    `of_b` of B's (B at its placed scale)."""

    of_a: float
    of_b: float


EACH_OTHER = _CoverRule(MIN_COVER, MIN_COVER)  # steps 2-4
B_INSIDE_A = _CoverRule(CONTAINED_SIDE, CONTAINED_INNER)  # step 5: B a crop of A, or A a screenshot of B
A_INSIDE_B = _CoverRule(CONTAINED_INNER, CONTAINED_SIDE)


@dataclass(frozen=True, slots=True)
class _Placement:
    scale: float  # B pixels to A pixels, both at the same working size
    dy: float
    dx: float
    ncc: float


def verify_pair(path_a: str, path_b: str, candidate: Candidate) -> Verdict:
    """Given the queried file, an indexed file and the Candidate that links them (its orientation turns
    A into B), return the Verdict of a fine comparison. Raise ImageError when either cannot be decoded or is
    too elongated to compare (a panorama of more than MAX_ASPECT:1)."""
    a = _verifiable(path_a, verification_picture(path_a)).astype(np.float32)
    b = _verifiable(path_b, verification_picture(path_b)).astype(np.float32)
    orientations = [candidate.orientation] if candidate.orientation == 0 else [candidate.orientation, 0]
    verdict = Verdict(False, 0.0)
    for first, second in _attempts(a, b):
        for orientation in orientations:
            found = compare_arrays(np.ascontiguousarray(turn_array(first, orientation)), second)
            if found.matched:
                return found
            verdict = max(verdict, found, key=lambda v: v.score)
    for orientation in orientations:  # step 5: one picture wholly inside the other, covering less of it
        turned = np.ascontiguousarray(turn_array(a, orientation))
        if not _aspects_differ(turned.shape, b.shape):
            continue
        found = compare_contained(turned, b)
        if found.matched:
            return found
    return verdict


def _aspects_differ(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> bool:
    """Given two arrays' shapes, return whether their aspect ratios differ by more than
    CONTAINED_MIN_ASPECT_CHANGE (a square crop of a 3:2 photo, a photo in a screenshot's window)."""
    change = (shape_a[1] * shape_b[0]) / (shape_a[0] * shape_b[1])
    return abs(math.log(change)) > CONTAINED_MIN_ASPECT_CHANGE


def _verifiable(path: str, pixels: np.ndarray) -> np.ndarray:
    """Given a file and its verification picture, return the picture. Raise ImageError naming the file when
    it is too elongated to compare block by block."""
    height, width = pixels.shape
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise ImageError(
            f"{path}: too elongated to verify ({width}×{height} decoded, more than {MAX_ASPECT}:1)"
        )
    return pixels


def _attempts(a: np.ndarray, b: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Given A and B, yield the pictures to compare: as they are, then (only when asked again, and when
    either has one: a frame or letterbox added to one copy) without their borders."""
    yield a, b
    without = (_without_border(a), _without_border(b))
    if without[0].shape != a.shape or without[1].shape != b.shape:
        yield without


def _without_border(pixels: np.ndarray) -> np.ndarray:
    """Given a grayscale array, return it without its uniform border (letterbox, frame), if it has one."""
    box = content_box(pixels)
    if box is None:
        return pixels
    left, top, right, bottom = box
    return np.ascontiguousarray(pixels[top:bottom, left:right])


def compare_arrays(a: np.ndarray, b: np.ndarray) -> Verdict:
    """Given two grayscale arrays (A already turned), return the Verdict of aligning B onto A and comparing
    their fine detail."""
    fine = _fine_pictures(a, b)
    if fine is None:
        return Verdict(False, 0.0, reason="too thin to compare block by block")
    a_fine, b_fine = fine
    detail_a = _band_pass(a_fine)
    same_frame = _same_frame_score(a_fine, detail_a, b_fine)
    if same_frame >= MIN_SCORE:
        return Verdict(
            True, round(same_frame, 4), round(a_fine.shape[1] / b_fine.shape[1], 4), reason="same frame"
        )
    placements = _coarse_placements(a_fine, b_fine)
    if not placements:
        return Verdict(False, 0.0, reason="sizes cannot overlap enough")
    placement = _refine_scale(a_fine, b_fine, placements[:COARSE_KEEP])
    for _ in range(FIT_ROUNDS):
        warped, mask = _warp(b_fine, a_fine.shape, placement)
        placement = _refine_fit(a_fine, warped, mask, placement)
    if _cover(placement, a_fine.shape, b_fine.shape) < FINAL_COVER:
        return Verdict(False, 0.0, round(float(placement.scale), 4), reason="overlap too small")
    warped, mask = _warp(b_fine, a_fine.shape, placement)
    score, textured = _detail_score(detail_a, warped, mask)
    if textured < MIN_TEXTURED:
        score = _flat_score(a_fine, warped, mask)
    offset = (round(float(placement.dy), 2), round(float(placement.dx), 2))
    if score < MIN_SCORE and textured >= MIN_TEXTURED:
        turned = _turned_score(a_fine, detail_a, b_fine, placement)
        if turned >= MIN_SCORE:
            scale = round(float(placement.scale), 4)
            return Verdict(True, round(turned, 4), scale, offset, reason="turned or tilted")
    return Verdict(bool(score >= MIN_SCORE), round(float(score), 4), round(float(placement.scale), 4), offset)


def _fine_pictures(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Given A and B, return both at the long side they are compared at (the smaller picture's: a
    thumbnail has no detail finer than its own pixels), or None when either is then thinner than a block
    (a border-less attempt that cut a thin strip)."""
    side = int(np.clip(min(max(a.shape), max(b.shape)), MIN_FINE_SIDE, FINE_SIDE))
    a_fine, b_fine = _resized(a, side), _resized(b, side)
    if min(*a_fine.shape, *b_fine.shape) < _block_side(side):
        return None
    return a_fine, b_fine


def compare_contained(a: np.ndarray, b: np.ndarray) -> Verdict:
    """Given two grayscale arrays (A already turned), return the Verdict of placing one wholly inside the
    other (B_INSIDE_A, then A_INSIDE_B) where it covers less than MIN_COVER of the other's width or height:
    a square crop of a wide photo, a photo shown in a screenshot. Matched only when the inner picture covers
    CONTAINED_AREA of the outer's area or CONTAINED_DETAIL of its textured blocks, and its detail agrees
    at least CONTAINED_SCORE (reason "inside the other")."""
    fine = _fine_pictures(a, b)
    if fine is None:
        return Verdict(False, 0.0, reason="too thin to compare block by block")
    a_fine, b_fine = fine
    detail_a = _band_pass(a_fine)
    verdict = Verdict(False, 0.0, reason="sizes cannot overlap enough")
    for rule in (B_INSIDE_A, A_INSIDE_B):
        found = _contained_verdict(a_fine, detail_a, b_fine, rule)
        if found.matched:
            return found
        verdict = max(verdict, found, key=lambda v: v.score)
    return verdict


def _contained_verdict(
    a_fine: np.ndarray, detail_a: np.ndarray, b_fine: np.ndarray, rule: _CoverRule
) -> Verdict:
    """Given A, its detail, B and a containment rule, return the Verdict of the best placement of the inner
    picture in the outer one under that rule."""
    placements = _coarse_placements(a_fine, b_fine, rule)
    if not placements:
        return Verdict(False, 0.0, reason="sizes cannot overlap enough")
    if placements[0].ncc < CONTAINED_NCC:
        return Verdict(False, 0.0, reason="no placement inside correlates")
    placement = _refine_scale(a_fine, b_fine, placements[:COARSE_KEEP], rule)
    for _ in range(FIT_ROUNDS):
        warped, mask = _warp(b_fine, a_fine.shape, placement)
        placement = _refine_fit(a_fine, warped, mask, placement)
    scale, offset = (
        round(float(placement.scale), 4),
        (round(float(placement.dy), 2), round(float(placement.dx), 2)),
    )
    if not _inside_enough(a_fine, detail_a, b_fine, placement, rule):
        return Verdict(False, 0.0, scale, offset, reason="not inside the other")
    warped, mask = _warp(b_fine, a_fine.shape, placement)
    score, textured = _detail_score(detail_a, warped, mask)
    if textured < MIN_TEXTURED:  # too little detail to tell a crop from a neighbouring part
        return Verdict(False, 0.0, scale, offset, reason="too little detail inside")
    matched = score >= CONTAINED_SCORE
    return Verdict(matched, round(score, 4), scale, offset, reason="inside the other" if matched else "")


def _inside_enough(
    a_fine: np.ndarray, detail_a: np.ndarray, b_fine: np.ndarray, placement: _Placement, rule: _CoverRule
) -> bool:
    """Given A, its detail, B, an aligned placement and the containment rule it was searched under, return
    whether the inner picture lies at least CONTAINED_FINAL_INNER inside the outer, spans CONTAINED_SIDE of
    its width and height, and covers CONTAINED_AREA of its area or CONTAINED_DETAIL of its textured
    blocks."""
    rows_a, columns_a, rows_b, columns_b = _shares(placement, a_fine.shape, b_fine.shape)
    if rule is B_INSIDE_A:
        inner, outer = (rows_b, columns_b), (rows_a, columns_a)
    else:
        inner, outer = (rows_a, columns_a), (rows_b, columns_b)
    if min(inner) < CONTAINED_FINAL_INNER or min(outer) < CONTAINED_SIDE:
        return False
    if outer[0] * outer[1] >= CONTAINED_AREA:
        return True
    s, dy, dx = placement.scale, placement.dy, placement.dx
    if rule is B_INSIDE_A:  # B's footprint in A's grid
        height, width = b_fine.shape
        share = _textured_share(detail_a, (dy, dx, dy + s * height, dx + s * width))
    else:  # A's footprint in B's grid
        height, width = a_fine.shape
        box = (-dy / s, -dx / s, (height - dy) / s, (width - dx) / s)
        share = _textured_share(_band_pass(b_fine), box)
    return share >= CONTAINED_DETAIL


def _textured_share(detail: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Given a picture's detail (`_band_pass`) and a box (top, left, bottom, right) in its grid, return the
    share of its textured blocks whose centre lies in the box widened by a block (the blocks the box's edge
    crosses are textured by that edge itself: a photo's edge against a viewer's surround); 0.0 when it has
    no textured block."""
    block = _block_side(max(detail.shape))
    rows, columns = detail.shape[0] // block, detail.shape[1] // block
    blocks = detail[: rows * block, : columns * block].reshape(rows, block, columns, block)
    textured = blocks.std(axis=(1, 3)) > TEXTURE_STD
    if not textured.any():
        return 0.0
    centres_y = (np.arange(rows) + 0.5) * block
    centres_x = (np.arange(columns) + 0.5) * block
    top, left, bottom, right = box[0] - block, box[1] - block, box[2] + block, box[3] + block
    inside = ((centres_y >= top) & (centres_y <= bottom))[:, None] & (
        (centres_x >= left) & (centres_x <= right)
    )
    return float((textured & inside).sum() / textured.sum())


def _turned_score(
    a_fine: np.ndarray, detail_a: np.ndarray, b_fine: np.ndarray, placement: _Placement
) -> float:
    """Given A and its detail, B and the aligned placement that did not match, return the detail score of
    B warped by the homography fitted to the local shifts of a grid of regions (a small turn first, then a
    perspective tilt), or 0.0 when no fit within TURN_MAX_DEGREES and TILT_MAX holds."""
    homography = _similarity_matrix(placement)
    for fit in TURN_FITS:
        warped, mask = _warp_projective(b_fine, a_fine.shape, homography)
        pairs = _region_shifts(a_fine, warped, mask, homography)
        if len(pairs[0]) < TURN_MIN_REGIONS:
            return 0.0
        fitted = fit(*pairs)
        if fitted is None or not _plausible(fitted, placement, b_fine.shape):
            return 0.0
        homography = fitted
    warped, mask = _warp_projective(b_fine, a_fine.shape, homography)
    if _cover_of(mask) < FINAL_COVER:
        return 0.0
    score, textured = _detail_score(detail_a, warped, mask)
    return score if textured >= MIN_TEXTURED else 0.0


def _similarity_matrix(placement: _Placement) -> np.ndarray:
    """Given a placement, return the 3×3 matrix taking B's (x, y, 1) to A's."""
    s = placement.scale
    return np.array([[s, 0.0, placement.dx], [0.0, s, placement.dy], [0.0, 0.0, 1.0]])


def _warp_projective(b: np.ndarray, shape: tuple[int, ...], homography: np.ndarray):
    """Given B, A's shape and the matrix taking B's points to A's, return B drawn in A's grid (past B's
    edges, its edge pixels repeated, so filtering sees no false edge) and where B really is (eroded by 2)."""
    padded = np.pad(b, TURN_PAD, mode="edge")
    shift = np.array([[1.0, 0.0, TURN_PAD], [0.0, 1.0, TURN_PAD], [0.0, 0.0, 1.0]])
    inverse = shift @ np.linalg.inv(homography)
    inverse /= inverse[2, 2]
    data = tuple(inverse.ravel()[:8].tolist())
    size = (shape[1], shape[0])
    image = Image.fromarray(padded, mode="F").transform(
        size, Image.Transform.PERSPECTIVE, data, Image.Resampling.BILINEAR
    )
    ones = np.zeros(padded.shape, dtype=np.float32)
    ones[TURN_PAD:-TURN_PAD, TURN_PAD:-TURN_PAD] = 1.0
    cover = Image.fromarray(ones, mode="F").transform(
        size, Image.Transform.PERSPECTIVE, data, Image.Resampling.NEAREST
    )
    return np.asarray(image, dtype=np.float32), _erode_2d(np.asarray(cover) > 0.5, 2)


def _erode_2d(mask: np.ndarray, times: int) -> np.ndarray:
    eroded = mask.copy()
    for _ in range(times):
        previous = eroded.copy()
        eroded[1:] &= previous[:-1]
        eroded[:-1] &= previous[1:]
        eroded[:, 1:] &= previous[:, :-1]
        eroded[:, :-1] &= previous[:, 1:]
        eroded[[0, -1]] = False
        eroded[:, [0, -1]] = False
    return eroded


def _cover_of(mask: np.ndarray) -> float:
    """Given where B lies in A's grid, return the smaller share of A's rows and columns it reaches."""
    return float(min(mask.any(axis=1).mean(), mask.any(axis=0).mean()))


def _too_small(mask: np.ndarray) -> bool:
    """Given where B lies in A's grid, return whether it spans fewer than 32 rows or columns."""
    return int(mask.any(axis=1).sum()) < 32 or int(mask.any(axis=0).sum()) < 32


def _local_shifts(a: np.ndarray, warped: np.ndarray, mask: np.ndarray, grid: int, max_shift: float):
    """Given A, B warped onto it and where B lies, yield (row, column, dy, dx) for each textured region of a
    grid × grid split of B's extent: the region's centre in A's grid and B's local shift there (regions
    mostly outside B, flat, or shifted more than `max_shift` are skipped). Nothing for too small an extent."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if _too_small(mask):
        return
    for top, bottom in _spans(rows[0], rows[-1] + 1, grid):
        for left, right in _spans(columns[0], columns[-1] + 1, grid):
            region = mask[top:bottom, left:right]
            part_a, part_b = a[top:bottom, left:right], warped[top:bottom, left:right]
            if region.mean() < 0.9 or _masked_std(part_a, region) < 2 or _masked_std(part_b, region) < 2:
                continue
            dy, dx = _phase_shift(part_a, part_b, region)
            if abs(dy) <= max_shift and abs(dx) <= max_shift:
                yield (top + bottom - 1) / 2, (left + right - 1) / 2, dy, dx


def _region_shifts(a: np.ndarray, warped: np.ndarray, mask: np.ndarray, homography: np.ndarray):
    """Given A, B warped onto it by `homography` and where B lies, return matching points (B's, A's;
    each n×2 in x, y) from the local shift of each textured region of a TURN_GRID × TURN_GRID grid."""
    inverse = np.linalg.inv(homography)
    points_b, points_a = [], []
    for row, column, dy, dx in _local_shifts(a, warped, mask, TURN_GRID, TURN_MAX_SHIFT):
        centre = np.array([column, row, 1.0])
        source = inverse @ (centre - (dx, dy, 0.0))
        points_b.append(source[:2] / source[2])
        points_a.append(centre[:2])
    return np.array(points_b).reshape(-1, 2), np.array(points_a).reshape(-1, 2)


def _fit_turn(points_b: np.ndarray, points_a: np.ndarray) -> np.ndarray | None:
    """Given matching points, return the least-squares similarity with a turn (x' = a x - b y + tx,
    y' = b x + a y + ty) as a 3×3 matrix."""
    count = len(points_b)
    design = np.zeros((2 * count, 4))
    design[:count] = np.column_stack([points_b[:, 0], -points_b[:, 1], np.ones(count), np.zeros(count)])
    design[count:] = np.column_stack([points_b[:, 1], points_b[:, 0], np.zeros(count), np.ones(count)])
    target = np.concatenate([points_a[:, 0], points_a[:, 1]])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def _fit_homography(points_b: np.ndarray, points_a: np.ndarray) -> np.ndarray | None:
    """Given matching points (at least 6), return the least-squares homography (last entry 1), or None
    when there are too few."""
    if len(points_b) < TILT_MIN_REGIONS:
        return None
    rows, values = [], []
    for (x, y), (u, v) in zip(points_b, points_a, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    return np.append(solution, 1.0).reshape(3, 3)


def _plausible(homography: np.ndarray, placement: _Placement, shape_b: tuple[int, ...]) -> bool:
    """Given a fitted matrix, the placement it started from and B's shape, return whether it is a small
    turn (at most TURN_MAX_DEGREES) and tilt of that placement: B's corners land within TILT_MAX of B's
    size of where the placement's scale and a turn put them."""
    degrees = np.degrees(np.arctan2(homography[1, 0], homography[0, 0]))
    if abs(degrees) > TURN_MAX_DEGREES:
        return False
    height, width = shape_b
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], dtype=np.float64)
    mapped = corners @ homography.T
    if np.any(mapped[:, 2] <= 0):
        return False
    mapped = mapped[:, :2] / mapped[:, 2:]
    turn = _fit_turn(corners[:, :2], mapped)
    if abs(np.log(np.hypot(turn[0, 0], turn[1, 0]) / placement.scale)) > TURN_MAX_RESCALE:
        return False
    residual = np.abs(corners @ turn.T - np.column_stack([mapped, np.ones(4)]))[:, :2]
    return bool(residual.max() <= TILT_MAX * placement.scale * max(height, width))


def _same_frame_score(a_fine: np.ndarray, detail_a: np.ndarray, b_fine: np.ndarray) -> float:
    """Given A at the fine size, its detail (`_band_pass`) and B at the fine size, return the detail score
    of B stretched onto A's frame: the cheap first hypothesis, right for resized (even to another aspect
    ratio), re-encoded, recoloured copies."""
    stretched = Image.fromarray(b_fine, mode="F").resize(
        (a_fine.shape[1], a_fine.shape[0]), Image.Resampling.BILINEAR
    )
    warped = np.asarray(stretched, dtype=np.float32)
    mask = np.ones(a_fine.shape, dtype=bool)
    score, textured = _detail_score(detail_a, warped, mask)
    return score if textured >= MIN_TEXTURED else _flat_score(a_fine, warped, mask)


def _resized(pixels: np.ndarray, long_side: int) -> np.ndarray:
    height, width = pixels.shape
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(pixels.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)


def _cover(placement: _Placement, shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> float:
    """Given a placement of B in A, return the smallest share of either picture's width or height that
    the other covers."""
    return min(_shares(placement, shape_a, shape_b))


def _shares(
    placement: _Placement, shape_a: tuple[int, ...], shape_b: tuple[int, ...]
) -> tuple[float, float, float, float]:
    """Given a placement of B in A, return the shares of A's height and width, then of B's (placed), that
    the overlap spans."""
    overlaps = []
    for axis, offset in ((0, placement.dy), (1, placement.dx)):
        extent_b = placement.scale * shape_b[axis]
        overlaps.append((min(shape_a[axis], offset + extent_b) - max(0.0, offset), extent_b))
    (rows, extent_rows), (columns, extent_columns) = overlaps
    return (
        float(rows / shape_a[0]),
        float(columns / shape_a[1]),
        float(rows / extent_rows),
        float(columns / extent_columns),
    )


def _scales(shape_a: tuple[int, ...], shape_b: tuple[int, ...], rule: _CoverRule = EACH_OTHER) -> np.ndarray:
    # B's extent times the scale must cover `rule.of_a` of A's and stay within 1 / `rule.of_b` of it; the
    # exact size ratios (a plain resize) are always tried.
    low = max(rule.of_a * shape_a[0] / shape_b[0], rule.of_a * shape_a[1] / shape_b[1])
    high = min(shape_a[0] / (rule.of_b * shape_b[0]), shape_a[1] / (rule.of_b * shape_b[1]))
    if low > high:
        return np.empty(0)
    count = max(1, int(np.ceil(np.log(high / low) / np.log(SCALE_STEP))) + 1)
    ratios = [shape_a[0] / shape_b[0], shape_a[1] / shape_b[1]]
    exact = [ratio for ratio in ratios if low <= ratio <= high]
    return np.unique(np.concatenate([np.geomspace(low, high, count), exact]))


class _Level:
    """A and B smoothed at one working size, with A's integral images (sums and sums of squares) ready for
    the overlap of any placement of B."""

    def __init__(self, a_fine: np.ndarray, b_fine: np.ndarray, side: int, rule: _CoverRule = EACH_OTHER):
        self.rule = rule  # the placements searched
        # Working in float64 keeps the sums exact enough for the difference of large terms in the NCC.
        self.a = gaussian(_resized(a_fine, side), 0.7).astype(np.float64)
        self.b = gaussian(_resized(b_fine, side), 0.7)
        self.b_image = Image.fromarray(self.b, mode="F")  # made once: B is resized for many scales
        self.factor = self.a.shape[1] / a_fine.shape[1]
        self.b_factor = self.b.shape[1] / b_fine.shape[1]
        self.a_sums = _integral(np.stack([self.a, self.a * self.a]))  # of values and of squares

    def scaled_b(self, scale: float) -> np.ndarray:
        """Given a scale (fine B pixels to fine A pixels), return B at this level resized by it."""
        return _scaled(self.b_image, scale * self.factor / self.b_factor).astype(np.float64)

    def ncc(self, b: np.ndarray, dys: np.ndarray, dxs: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Given B (already scaled), offsets of its origin in A (rows and columns) and `products`, the sums
        of A·B over the overlap for each offset, return the NCC of the overlap for each offset (Padfield's
        formula, the other sums from integral images: the overlap is a rectangle)."""
        height_a, width_a = self.a.shape
        height_b, width_b = b.shape
        tops, bottoms = np.maximum(0, dys), np.minimum(height_a, dys + height_b)
        lefts, rights = np.maximum(0, dxs), np.minimum(width_a, dxs + width_b)
        area = np.maximum(np.outer(bottoms - tops, rights - lefts), 1).astype(np.float64)
        span_a = (tops, bottoms, lefts, rights)
        span_b = (tops - dys, bottoms - dys, lefts - dxs, rights - dxs)
        sum_a, squares_a = _box_sums(self.a_sums, *span_a)
        sum_b, squares_b = _box_sums(_integral(np.stack([b, b * b])), *span_b)
        var_a = squares_a - sum_a * sum_a / area
        var_b = squares_b - sum_b * sum_b / area
        numerator = products - sum_a * sum_b / area
        return numerator / np.sqrt(np.maximum(var_a * var_b, 1e-6 * area * area))

    def best(self, scale: float, b: np.ndarray, dys: np.ndarray, dxs: np.ndarray, products) -> _Placement:
        """Given a scale, B scaled by it, offsets and the sums of products there, return the placement of
        highest NCC."""
        ncc = self.ncc(b, dys, dxs, products)
        row, column = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
        factor = self.factor
        return _Placement(float(scale), dys[row] / factor, dxs[column] / factor, float(ncc[row, column]))

    def place_all(self, scales: np.ndarray) -> list[_Placement]:
        """Given scales (fine B pixels to fine A pixels), return for each the best placement of B that keeps
        both covered as the level's rule asks (none for a scale where no placement does)."""
        scaled = [self.scaled_b(float(scale)) for scale in scales]
        offsets = [self._allowed_offsets(b) for b in scaled]
        searched = [
            (float(scale), b, dys, dxs)
            for scale, b, (dys, dxs) in zip(scales, scaled, offsets, strict=True)
            if len(dys) and len(dxs)
        ]
        if not searched:
            return []
        products = _overlap_products(self.a, [(b, dys, dxs) for _, b, dys, dxs in searched])
        return [
            self.best(scale, b, dys, dxs, window)
            for (scale, b, dys, dxs), window in zip(searched, products, strict=True)
        ]

    def place_near(self, scale: float, near: _Placement) -> _Placement | None:
        """Given a scale and a placement, return the best placement of B at that scale within 3 pixels of
        it that keeps both covered as the level's rule asks, or None."""
        b = self.scaled_b(scale)
        dys = _near_offsets(near.dy * self.factor)
        dxs = _near_offsets(near.dx * self.factor)
        dys = dys[_cover_ok(dys, self.a.shape[0], b.shape[0], self.rule)]
        dxs = dxs[_cover_ok(dxs, self.a.shape[1], b.shape[1], self.rule)]
        if not len(dys) or not len(dxs):
            return None
        return self.best(scale, b, dys, dxs, self._products_near(b, dys, dxs))

    def _allowed_offsets(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dys = np.arange(1 - b.shape[0], self.a.shape[0])
        dxs = np.arange(1 - b.shape[1], self.a.shape[1])
        return (
            dys[_cover_ok(dys, self.a.shape[0], b.shape[0], self.rule)],
            dxs[_cover_ok(dxs, self.a.shape[1], b.shape[1], self.rule)],
        )

    def _products_near(self, b: np.ndarray, dys: np.ndarray, dxs: np.ndarray) -> np.ndarray:
        # A (zero outside) under every offset of the small contiguous neighbourhood: a "valid" correlation.
        height, width = len(dys) + b.shape[0] - 1, len(dxs) + b.shape[1] - 1
        region = _window(self.a, int(dys[0]), int(dxs[0]), height, width)
        return np.einsum("yxij,ij->yx", sliding_window_view(region, b.shape), b)


def _window(pixels: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Given an array and a rectangle that may reach past it, return the rectangle's pixels (zero outside)."""
    window = np.zeros((height, width))
    rows = slice(max(0, top), min(pixels.shape[0], top + height))
    columns = slice(max(0, left), min(pixels.shape[1], left + width))
    window[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left] = pixels[
        rows, columns
    ]
    return window


def _overlap_products(a: np.ndarray, searches: list) -> list[np.ndarray]:
    """Given A and, for each of several B's, B and the offsets of its origin in A to search (rows,
    columns: contiguous), return for each the sums of A·B over the overlap at every searched offset (one
    FFT correlation of A with all the B's)."""
    shape = _correlation_shape(a.shape, [(b.shape, dys, dxs) for b, dys, dxs in searches])
    stack = np.zeros((len(searches), *shape))
    for layer, (b, _, _) in zip(stack, searches, strict=True):
        layer[: b.shape[0], : b.shape[1]] = b
    correlations = np.fft.irfft2(np.fft.rfft2(a, shape) * np.conj(np.fft.rfft2(stack)), shape)
    # the circular correlation wraps negative offsets round to the end of each axis
    return [
        layer[np.ix_(dys % shape[0], dxs % shape[1])]
        for layer, (_, dys, dxs) in zip(correlations, searches, strict=True)
    ]


def _correlation_shape(shape_a: tuple[int, ...], searches: list) -> tuple[int, int]:
    """Given A's shape and, for each scaled B, its shape and the offsets searched (rows, columns), return
    the smallest fast FFT shape whose circular correlation gives the sums of products at those offsets
    without wrapping: A's zero padding must absorb B's pixels that fall before or past A."""
    size = []
    for axis in range(2):
        needed = [
            max(shape_a[axis] - int(offsets[axis][0]), shape_b[axis] + int(offsets[axis][-1]), shape_b[axis])
            for shape_b, *offsets in searches
        ]
        size.append(fast_fft_length(max(needed)))
    return size[0], size[1]


def _integral(layers: np.ndarray) -> np.ndarray:
    """Given a stack of 2-D arrays, return their integral images, each with a leading row and column of
    zeros."""
    integral = np.zeros((layers.shape[0], layers.shape[1] + 1, layers.shape[2] + 1))
    integral[:, 1:, 1:] = layers
    integral.cumsum(axis=2, out=integral)
    return integral.cumsum(axis=1, out=integral)


def _box_sums(integral: np.ndarray, tops, bottoms, lefts, rights) -> np.ndarray:
    """Given integral images (`_integral`) and the spans of rectangles (rows for the second axis of the
    result, columns for the third), return the sum over each rectangle in each layer."""
    rows = integral[:, bottoms] - integral[:, tops]
    return rows[:, :, rights] - rows[:, :, lefts]


def _coarse_placements(
    a_fine: np.ndarray, b_fine: np.ndarray, rule: _CoverRule = EACH_OTHER
) -> list[_Placement]:
    """Given A and B at the fine size (and the placements to search), return the best coarse placement of B
    for each scale, best first."""
    scales = _scales(a_fine.shape, b_fine.shape, rule)
    if not len(scales):
        return []
    level = _Level(a_fine, b_fine, min(COARSE_SIDE, max(a_fine.shape)), rule)
    return sorted(level.place_all(scales), key=lambda placement: -placement.ncc)


def _refine_scale(
    a_fine: np.ndarray, b_fine: np.ndarray, placements: list[_Placement], rule: _CoverRule = EACH_OTHER
) -> _Placement:
    """Given A, B and coarse placements (searched under `rule`), return the best of their refinements at the
    middle size."""
    level = _Level(a_fine, b_fine, min(MID_SIDE, max(a_fine.shape)), rule)
    best = placements[0]
    best_ncc = -np.inf
    for placement in placements:
        for step in MID_STEPS:
            found = level.place_near(placement.scale * (1 + step), placement)
            if found is not None and found.ncc > best_ncc:
                best, best_ncc = found, found.ncc
    return best


def _near_offsets(centre: float) -> np.ndarray:
    return np.arange(int(np.ceil(centre - 3)), int(np.floor(centre + 3)) + 1)


def _scaled(image: Image.Image, scale: float) -> np.ndarray:
    width, height = image.size
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _cover_ok(offsets: np.ndarray, size_a: int, size_b: int, rule: _CoverRule = EACH_OTHER) -> np.ndarray:
    overlap = np.minimum(size_a, offsets + size_b) - np.maximum(0, offsets)
    return (overlap >= rule.of_a * size_a) & (overlap >= rule.of_b * size_b)


def _warp(b: np.ndarray, shape: tuple[int, ...], placement: _Placement) -> tuple[np.ndarray, np.ndarray]:
    # Output pixel (x, y) of A's grid reads B at ((x - dx) / s, (y - dy) / s).
    inverse = 1.0 / placement.scale
    data = (inverse, 0.0, -placement.dx * inverse, 0.0, inverse, -placement.dy * inverse)
    size = (shape[1], shape[0])
    image = Image.fromarray(b, mode="F").transform(
        size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
    )
    ones = Image.new("F", (b.shape[1], b.shape[0]), 1.0)
    cover = np.asarray(ones.transform(size, Image.Transform.AFFINE, data, Image.Resampling.NEAREST)) > 0.5
    # B's footprint is a rectangle, so eroding it is eroding its rows and its columns.
    rows = erode(cover.any(axis=1), 2)
    columns = erode(cover.any(axis=0), 2)
    return np.asarray(image, dtype=np.float32), rows[:, None] & columns[None, :]


def _phase_shift(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Given A, B in A's grid and where B is valid, return the (dy, dx) that moves B's content onto A's."""
    centred = np.stack([_centred(a, mask), _centred(b, mask)])
    fa, fb = np.fft.rfft2(centred)
    cross = fa * np.conj(fb)
    surface = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-9), a.shape)
    row, column = np.unravel_index(int(np.argmax(surface)), surface.shape)
    return _peak_offset(surface, row, column, axis=0), _peak_offset(surface, row, column, axis=1)


def _centred(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # less the mean where valid, zero elsewhere
    if mask.all():
        return (pixels - pixels.mean()).astype(np.float64)
    return ((pixels - pixels[mask].mean()) * mask).astype(np.float64)


def _refine_fit(a: np.ndarray, warped: np.ndarray, mask: np.ndarray, placement: _Placement) -> _Placement:
    """Given A, B warped by `placement` and its mask, return the placement corrected by the local shifts of
    a grid of regions (least-squares scale and translation), or by one global shift when too few regions
    are usable."""
    if _too_small(mask):
        return placement
    points_a, points_b = [], []
    for row, column, dy, dx in _local_shifts(a, warped, mask, FIT_GRID, FIT_MAX_SHIFT):
        centre = np.array([row, column])
        points_a.append(centre)
        points_b.append((centre - np.array([dy, dx]) - (placement.dy, placement.dx)) / placement.scale)
    if len(points_a) < FIT_MIN_REGIONS:
        dy, dx = _phase_shift(a, warped, mask)
        if abs(dy) > FIT_MAX_SHIFT or abs(dx) > FIT_MAX_SHIFT:
            return placement
        return _Placement(placement.scale, placement.dy + dy, placement.dx + dx, placement.ncc)
    return _fit_similarity(np.array(points_a), np.array(points_b), placement)


def _masked_std(pixels: np.ndarray, mask: np.ndarray) -> float:
    return float(pixels.std() if mask.all() else pixels[mask].std())


def _spans(start: int, stop: int, count: int) -> list[tuple[int, int]]:
    edges = np.linspace(start, stop, count + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _fit_similarity(points_a: np.ndarray, points_b: np.ndarray, placement: _Placement) -> _Placement:
    # Least squares for A = scale * B + (dy, dx); kept only when it stays close to the placement.
    count = len(points_a)
    design = np.zeros((2 * count, 3))
    design[:count, 0], design[:count, 1] = points_b[:, 0], 1.0
    design[count:, 0], design[count:, 2] = points_b[:, 1], 1.0
    target = np.concatenate([points_a[:, 0], points_a[:, 1]])
    (scale, dy, dx), *_ = np.linalg.lstsq(design, target, rcond=None)
    if not 0.97 < scale / placement.scale < 1.03:
        return placement
    return _Placement(float(scale), float(dy), float(dx), placement.ncc)


def _peak_offset(surface: np.ndarray, row: int, column: int, axis: int) -> float:
    size = surface.shape[axis]
    index = row if axis == 0 else column

    def at(i: int) -> float:
        return float(surface[i % size, column] if axis == 0 else surface[row, i % size])

    left, middle, right = at(index - 1), at(index), at(index + 1)
    denominator = left - 2 * middle + right
    fraction = 0.5 * (left - right) / denominator if denominator < 0 else 0.0
    signed = index if index <= size // 2 else index - size
    return signed + float(np.clip(fraction, -0.5, 0.5))


def _fill_outside(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Given a picture and where it is valid (a rectangle, as `_warp` makes), return it with every pixel
    outside taking the nearest valid value, so filtering does not see a false edge."""
    if mask.all() or not mask.any():
        return pixels
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    inside = pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    pad = ((rows[0], len(mask) - 1 - rows[-1]), (columns[0], mask.shape[1] - 1 - columns[-1]))
    return np.pad(inside, pad, mode="edge")


def _band_pass(pixels: np.ndarray) -> np.ndarray:
    return band_pass(pixels, 1.0, 3.0)


def _detail_score(detail_a: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    """Given A's detail (`_band_pass`), B warped onto A and the overlap mask, return (share of agreeing
    textured blocks, number of textured blocks). The band along A's edges (`_away_from_edges`) does not
    count: there, two different pictures in the same frame share the frame's edge."""
    mask = _away_from_edges(mask)
    a = detail_a
    detail_b = _band_pass(_fill_outside(warped, mask))
    block = _block_side(max(a.shape))
    rows, columns = a.shape[0] // block, a.shape[1] // block

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[: rows * block, : columns * block].reshape(rows, block, columns, block).swapaxes(1, 2)

    block_a = blocks(detail_a).reshape(rows * columns, -1).astype(np.float64)
    block_b = blocks(detail_b).reshape(rows * columns, -1).astype(np.float64)
    inside = blocks(mask).reshape(rows * columns, -1).all(axis=1)
    block_a -= block_a.mean(axis=1, keepdims=True)
    block_b -= block_b.mean(axis=1, keepdims=True)
    std_a, std_b = block_a.std(axis=1), block_b.std(axis=1)
    textured = inside & (np.minimum(std_a, std_b) > TEXTURE_STD)
    if not textured.any():
        return 0.0, 0
    r = (block_a * block_b).mean(axis=1) / np.maximum(std_a * std_b, 1e-9)
    return float(np.mean(r[textured] >= BLOCK_R)), int(textured.sum())


def _away_from_edges(mask: np.ndarray) -> np.ndarray:
    """Given an overlap mask on A's grid, return it without the band of EDGE_BAND of each side along A's
    edges, where a frame or letterbox lies. A frame's edge is detail that two different pictures in the
    same frame share: dark or flat pictures in one white or black frame matched on it alone (stretch
    benchmark: 28 unrelated pairs; docs/verifier.md)."""
    height, width = mask.shape
    rows, columns = max(1, round(height * EDGE_BAND)), max(1, round(width * EDGE_BAND))
    inner = np.zeros_like(mask)
    inner[rows : height - rows, columns : width - columns] = True
    return mask & inner


def _block_side(long_side: int) -> int:
    """Given the long side of the fine pictures, return the side of the blocks they are compared by."""
    return max(MIN_BLOCK, round(BLOCK * long_side / FINE_SIDE))


def _framed_sides_off(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Given A and an overlap mask on its grid, return the mask without the band of EDGE_BAND along each
    side where A's outermost strip (FRAME_PROBE of the side) is uniform: a frame or letterbox, whose step to
    the picture would make two different flat pictures in the same frame correlate."""
    height, width = mask.shape
    probe_rows, probe_columns = max(2, round(height * FRAME_PROBE)), max(2, round(width * FRAME_PROBE))
    rows, columns = max(1, round(height * EDGE_BAND)), max(1, round(width * EDGE_BAND))
    sides = (
        (np.s_[:probe_rows, :], np.s_[:rows, :]),
        (np.s_[height - probe_rows :, :], np.s_[height - rows :, :]),
        (np.s_[:, :probe_columns], np.s_[:, :columns]),
        (np.s_[:, width - probe_columns :], np.s_[:, width - columns :]),
    )
    kept = mask.copy()
    for strip, band in sides:
        if a[strip].std() < FRAME_STD:
            kept[band] = False
    return kept


def _flat_score(a: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> float:
    # Pictures with almost no fine detail: fall back on the correlation of the smooth overlap, without A's
    # frame (`_framed_sides_off`).
    mask = _framed_sides_off(a, mask)
    if mask.sum() < 16:
        return 0.0
    x, y = a[mask].astype(np.float64), warped[mask].astype(np.float64)
    if x.std() < 1e-6 or y.std() < 1e-6:
        return float(abs(x.mean() - y.mean()) < 8)
    correlation = float(np.corrcoef(x, y)[0, 1])
    return 1.0 if correlation >= 0.98 else max(0.0, correlation - 0.5)


TURN_FITS = (_fit_turn, _fit_turn, _fit_homography, _fit_homography)
