"""Domain values and exceptions shared by every room.

This module imports nothing from the project and no I/O library: every other room may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

# The eight orientation variants of a picture, in the order every room uses (index = orientation id).
# Each name says how to turn the *stored* image to get the *other* one: a copy made by rotating the
# original 90 degrees counter-clockwise matches the original's "rot90" variant.
ORIENTATIONS: tuple[str, ...] = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_h",
    "flip_v",
    "transpose",
    "transverse",
)
# Per orientation (same order as ORIENTATIONS): transpose first, then reverse rows, then columns.
ORIENTATION_STEPS: tuple[tuple[bool, bool, bool], ...] = (
    (False, False, False),  # identity
    (True, True, False),  # rot90 (counter-clockwise, PIL ROTATE_90)
    (False, True, True),  # rot180
    (True, False, True),  # rot270
    (False, False, True),  # flip_h
    (False, True, False),  # flip_v
    (True, False, False),  # transpose
    (True, True, True),  # transverse
)

# The layout of Fingerprint.windows, written by the hashing room and read by the matching room.
# Window hashes by slot: trims (left, top, right, bottom) as fractions of the picture. A copy cropped by up
# to 10 % per border hashes like one of these windows of its original; a caption bar or a watermark in one
# part leaves the other windows of both files alike.
WINDOW_TRIMS: tuple[tuple[float, float, float, float], ...] = (
    (0.05, 0.05, 0.05, 0.05),  # centre, 5 % per border
    (0.10, 0.10, 0.10, 0.10),  # centre, 10 % per border
    (0.10, 0.0, 0.0, 0.0),  # without the left tenth
    (0.0, 0.0, 0.10, 0.0),  # without the right tenth
    (0.0, 0.10, 0.0, 0.0),  # without the top tenth
    (0.0, 0.0, 0.0, 0.10),  # without the bottom tenth
    (0.10, 0.10, 0.0, 0.0),  # bottom-right part (top-left corner trimmed)
    (0.0, 0.10, 0.10, 0.0),  # bottom-left part
    (0.10, 0.0, 0.0, 0.10),  # top-right part
    (0.0, 0.0, 0.10, 0.10),  # top-left part
)
# One more slot, filled only when the picture has a uniform border: the hash of what lies inside it.
CONTENT_SLOT = len(WINDOW_TRIMS)
WINDOW_SLOTS = CONTENT_SLOT + 1
# Fingerprint.windows holds WINDOW_SLOTS positional slots (the content slot holds ABSENT when there is no
# border), then, for each of TURNED_WINDOWS, the hashes of the same WINDOW_SLOTS windows turned that way
# (from each window's DCT block, as the orientation variants). The transposed orientations are not stored:
# transposing a picture transposes its DCT block, which keeps the median, so their hashes are these with
# the 8×8 bit matrix transposed (the matching room does that). Older fingerprints hold only the upright
# slots (10, or 11 with the content slot).
TURNED_WINDOWS: tuple[int, ...] = (4, 5, 2)  # flip_h, flip_v, rot180 (ORIENTATIONS ids)
ABSENT = 0  # a DCT hash is 0 only when no coefficient exceeds the median (a blank window): never a match

# The version of what a stored Fingerprint holds and how it is computed. Bump it whenever the hashing room
# changes either (a new hash, a new window layout, a different resize...): every `ok` row of the index
# records the version that wrote it, and the scanner reads again a file whose row is older, even when the
# file itself is unchanged, so an index never keeps matching with hashes the current code would not make.
#
#   1  rows written before the index recorded a version (schema migration 4): 10 or 11 upright windows
#   2  44 window slots: the upright windows and content slot, then the same windows turned three ways
#
# Every row written before migration 4 counts as version 1, even one whose window list already has the
# version-2 length: the length alone does not prove how the hashes were made, and reading each old file
# once again costs one scan, while a wrong guess would hide matches for good.
FINGERPRINT_VERSION: int = 2


class ComparImgError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(ComparImgError):
    """A configuration that cannot be used. The message names the file, the key path and the value, one line
    per problem: `problems` holds every problem found (this error first), `line` this one's line."""

    def __init__(self, source: str, key_path: str, value: object, reason: str):
        self.source = source
        self.key_path = key_path
        self.value = value
        self.reason = reason
        self.line = f"{source}: at '{key_path or '<top>'}': {reason} (got {value!r})"
        self.problems: tuple[ConfigError, ...] = (self,)
        super().__init__(self.line)

    @classmethod
    def every(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """Given the problems of one document (at least one), return the first carrying all of them: its
        message is their lines."""
        first = problems[0]
        first.problems = tuple(problems)
        first.args = ("\n".join(problem.line for problem in problems),)
        return first


class ImageError(ComparImgError):
    """A file that cannot be hashed; `reason` is short and meant for people (stored in the error row)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class ModelError(ComparImgError):
    """A model file that cannot be used (missing, corrupt, checksum or input shape not as expected) or that
    fails on an input; the message names the file, `reason` says what is wrong."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"model file {path}: {reason}")


class NotFound(ComparImgError):
    """An id (file, group, job, decision, action) that does not exist."""


class Refused(ComparImgError):
    """A request that is understood but not allowed: path outside the roots, file changed, bad target..."""


class Conflict(ComparImgError):
    """A request that clashes with the current state (already applied, already undone...)."""


class IndexFull(ComparImgError):
    """A write refused because the index's disk (or its quota) is full: nothing was written, the same write
    works again once there is room."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """What tells us a file has not changed since we last read it (`os.stat` fields)."""

    device: int
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Everything the hashing room learns from one image file.

    `phash` holds the 64-bit DCT perceptual hash of the picture (EXIF orientation applied) for each of
    the eight ORIENTATIONS, identity first; `windows` holds extra perceptual hashes of sub-windows and of
    border-stripped content (opaque to every room but hashing and matching). Hashes are unsigned ints.
    `embedding` is the model stage's L2-normalised image embedding of the upright picture, packed as
    little-endian float16 (`embedding.pack_embedding` / `unpack_embedding`); empty when not computed (mode
    `hash`, or the model failed). `quality` is how well the picture is taken, for choosing a keeper among
    shots of one scene; None when not measured.
    """

    content_hash: str
    width: int
    height: int
    format: str
    phash: tuple[int, ...]
    windows: tuple[int, ...] = ()
    embedding: bytes = b""
    quality: Quality | None = None


@dataclass(frozen=True, slots=True)
class Quality:
    """How well one picture is taken: `sharpness` (variance of the Laplacian of the gray picture at the
    fingerprint's decode size, higher is sharper) and `exposure` in [0, 1] (1 = no clipped shadows or
    highlights and a mid-tone mean; lower as more of the picture is crushed or blown)."""

    sharpness: float
    exposure: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """An indexed file whose hashes come close to a queried image's hashes (not yet verified)."""

    file_id: int
    distance: int
    orientation: int
    via: str = "global"  # "global" | "window": which hashes met


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the precise check (`hashing.verify_pair`) says of a candidate pair: whether the two files hold
    the same picture; `score` in [0, 1] is the share of agreeing detail blocks, `scale` and `offset` place B
    (in A's fine grid, after turning A by the orientation). It lives here, not beside the check, so the
    process that receives it need not load what the check needs."""

    matched: bool
    score: float
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Match:
    """A verified relation between two files (file_a < file_b): the same bytes ("exact"), the same picture
    ("near") or the same scene, another shot ("similar", only from the learned verifier). `verdict` and
    `confidence` are the learned verifier's label and probability of it ("" and None when it did not judge
    the pair: mode `hash`, or the same bytes)."""

    file_a: int
    file_b: int
    kind: str  # "exact" | "near" | "similar"
    distance: int
    orientation: int
    verdict: str = ""
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What the keeper rules and the grouping need to know about one indexed file."""

    file_id: int
    path: str
    size: int
    width: int
    height: int
    mtime_ns: int
    format: str = ""
    content_hash: str = ""
    reference: bool = False
    quality: Quality | None = None


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One file of a group. `verdict` and `confidence` are the learned verifier's on the edge between the
    member and its leader (empty for the leader and for pairs it did not judge); `reason` says why the member
    is the suggested pick of a `similar` group ("sharpest of 4 shots"), empty otherwise."""

    file_id: int
    distance: int = 0
    orientation: int = 0
    suggested: str = "trash"  # "keep" | "trash"
    verdict: str = ""
    confidence: float | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    """A set of related files; `leader` is the member every other member was matched against. `kind` is
    "exact" or "near" for duplicates, "similar" for shots of one scene (never counted as duplicates)."""

    kind: str
    leader: int
    members: tuple[GroupMember, ...] = field(default_factory=tuple)


DecisionAction = Literal["keep", "trash", "move", "not_duplicates"]
DecisionState = Literal["queued", "applied", "refused", "cancelled", "failed", "undone"]
ActionKind = Literal["trash", "move", "restore"]
ActionState = Literal["open", "done", "rolled_back", "refused", "failed", "undone"]
DECISION_ACTIONS: tuple[DecisionAction, ...] = get_args(DecisionAction)
DECISION_STATES: tuple[DecisionState, ...] = get_args(DecisionState)
ACTION_KINDS: tuple[ActionKind, ...] = get_args(ActionKind)
ACTION_STATES: tuple[ActionState, ...] = get_args(ActionState)  # "open" is the only one recovery looks at


@dataclass(frozen=True, slots=True)
class Decision:
    """One row of the decision queue as the index stores it: what a person decided for a file (or, for
    not-duplicates, a set of files), the file's identity when decided, and how it ended."""

    id: int
    action: DecisionAction
    state: DecisionState
    file_id: int | None = None
    file_ids: tuple[int, ...] | None = None  # a not-duplicates decision's files
    group_id: int | None = None
    target: str | None = None
    path: str | None = None
    device: int | None = None
    inode: int | None = None
    size: int | None = None
    mtime_ns: int | None = None
    content_hash: str | None = None
    reason: str | None = None
    action_id: int | None = None
    created: float = 0.0
    updated: float = 0.0

    @property
    def identity(self) -> FileIdentity:
        """The file's identity when the decision was queued (a keep / trash / move decision)."""
        return FileIdentity(self.device or 0, self.inode or 0, self.size or 0, self.mtime_ns or 0)


@dataclass(frozen=True, slots=True)
class Action:
    """One row of the sorter's journal: a trash, move or restore of one file, from intent to outcome."""

    id: int
    kind: ActionKind
    state: ActionState
    source: str
    dest: str
    cross_fs: bool
    device: int
    inode: int
    size: int
    mtime_ns: int
    content_hash: str
    decision_id: int | None = None
    undo_of: int | None = None
    file_id: int | None = None
    temp: str | None = None
    info_path: str | None = None
    reason: str | None = None
    batch_id: int | None = None
    created: float = 0.0
    updated: float = 0.0

    @property
    def identity(self) -> FileIdentity:
        """The file's identity journaled with the intent."""
        return FileIdentity(self.device, self.inode, self.size, self.mtime_ns)
