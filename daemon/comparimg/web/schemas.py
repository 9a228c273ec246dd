"""The API's shapes, once: request bodies and queries (validated with these very models), responses and the
server-sent events. The OpenAPI document (web/openapi.py) is generated from them and from the route table
(web/routes.py); limits and enums come from the rooms that own them.

To add a field: add it to its model here. To add a request body or query: a model here, named by the route.
"""

import enum
import os
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    WithJsonSchema,
    create_model,
)

from comparimg.config import Threshold
from comparimg.decisions import DEFAULT_RULE_KINDS, RULE_ACTIONS, RULE_KINDS
from comparimg.export import STATS_KEYS
from comparimg.index import review
from comparimg.index.bulk import ITEM_STATES
from comparimg.model import ACTION_KINDS, ACTION_STATES, DECISION_ACTIONS, DECISION_STATES
from comparimg.service.jobs import JobState
from comparimg.web import bulk

MAX_ID = 2**63 - 1
MAX_IDS = 10_000
MAX_OFFSET = 10**9


def _enum(name: str, values: tuple[str, ...] | list[str]) -> type[enum.StrEnum]:
    """Return a string enum of the given values (the names a room owns), e.g. DecisionState.queued."""
    return enum.StrEnum(name, [(value, value) for value in values])


DecisionAction = _enum("DecisionAction", DECISION_ACTIONS)
DecisionState = _enum("DecisionState", DECISION_STATES)
ActionKind = _enum("ActionKind", ACTION_KINDS)
ActionState = _enum("ActionState", ACTION_STATES)
GroupKind = _enum("GroupKind", ["exact", "near", "similar"])
GroupState = _enum("GroupState", review.STATES)
GroupSort = _enum("GroupSort", list(review.SORTS))
RuleKind = _enum("RuleKind", RULE_KINDS)
RuleAction = _enum("RuleAction", RULE_ACTIONS)
ItemState = _enum("ItemState", ITEM_STATES)
BatchState = _enum("BatchState", bulk.BATCH_STATES)
Suggestion = _enum("Suggestion", ["keep", "trash"])


def _text(max_length: int, file_name: bool = False, absolute: bool = False) -> Any:
    """Return a text type: 1 to `max_length` characters, no NUL. Checked in Python, as pydantic's own string
    type refuses the lone surrogates (`\\udcXX` escapes) that stand for the bytes of a file name that is not
    UTF-8; with `file_name`, only those (U+DC80..U+DCFF) are let through. `absolute`: starts with `/`."""

    def check(value: object) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= max_length or "\x00" in value:
            raise ValueError(f"must be a non-empty string of at most {max_length} characters, without NUL")
        if absolute and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        if file_name:
            try:
                os.fsencode(value)
            except UnicodeEncodeError as error:
                raise ValueError(f"holds a character no file name can hold: {error.reason}") from None
        return value

    pattern = "^/[^\\x00]*$" if absolute else "^[^\\x00]*$"
    schema = {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern}
    return Annotated[str, PlainValidator(check), WithJsonSchema(schema)]


Id = Annotated[int, Strict(), Field(ge=1, le=MAX_ID)]
Text = _text(4096)
Name = _text(200)
FilePath = _text(4096, file_name=True, absolute=True)
Flag = Annotated[bool, Strict()]


class Shape(BaseModel):
    """A model of the API. Its validator is built when first used (defer_build), not at import: the
    response models serve the OpenAPI document, made on its first request, and start-up stays short."""

    model_config = ConfigDict(defer_build=True)


class Request(Shape):
    """A request body or query: unknown fields are refused, no type is coerced (bodies)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Query(Shape):
    """A query string: values arrive as text and become the declared type; unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


# --- requests


class JobRequest(Request):
    path: FilePath = Field(description="absolute folder under `http.allowed_scan_roots`")
    recursive: Flag = True
    threshold: Threshold | None = Field(None, description="default: matching.threshold")
    orientations: Flag | None = Field(None, description="default: matching.orientations")


class DecisionRequest(Request):
    action: Literal[DECISION_ACTIONS]  # request enums are Literals: strict validation of parsed JSON
    file_id: Id | None = Field(None, description="the file to keep, trash or move")
    file_ids: Annotated[list[Id], Field(min_length=2, max_length=MAX_IDS)] | None = Field(
        None, description="not_duplicates: the files that are not copies of one another"
    )
    group_id: Id | None = None
    target: Name | None = Field(None, description="move: the name of a move target")


class ApplyRequest(Request):
    ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)] | None = Field(
        None, description="the queued decisions to apply (default: all)"
    )


class BulkRule(Request):
    kinds: Annotated[list[Literal[RULE_KINDS]], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_RULE_KINDS),
        description="group kinds to act on (default exact and near; `similar` only when named)",
    )
    folder: Text | None = Field(None, description="absolute folder prefix: groups with a member below it")
    reference_only: Flag = Field(False, description="only groups holding a file under a reference root")
    action: Literal[RULE_ACTIONS] = Field("trash", description="what happens to the copies")
    target: Name | None = Field(None, description="move target (action move)")
    min_confidence: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None,
        description="only groups whose lowest verifier confidence on a member's edge is at least this (a "
        "group with an edge the verifier did not judge never matches)",
    )


class BulkPreviewRequest(Request):
    dry_run: Literal[True]
    rule: BulkRule


class BulkRunRequest(Request):
    dry_run: Literal[False]
    preview_id: Id


BulkRequest = Annotated[
    BulkPreviewRequest | BulkRunRequest,
    Field(
        description="A dry run `{dry_run: true, rule}` stores and returns a preview; the real run "
        "`{dry_run: false, preview_id}` applies exactly the previewed set as one batch."
    ),
]


# PATCH /api/config: a partial YAML-shaped mapping, validated by the configuration's own schema
# (comparimg.config.apply_patch); the document describes the keys web/config_patch.py lets the API change.
ConfigPatch = dict[str, Any]


class EmptyRequest(Request):
    """No fields: the body may be left out or be `{}`."""


# --- queries


class GroupQuery(Query):
    kind: GroupKind | None = None
    state: GroupState | None = None
    folder: _text(512) | None = None
    sort: GroupSort = GroupSort("id")
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class DecisionQuery(Query):
    state: DecisionState | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class ActionQuery(Query):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class VerdictQuery(Query):
    a: Annotated[int, Field(ge=1, le=MAX_ID, description="a file id")]
    b: Annotated[int, Field(ge=1, le=MAX_ID, description="a file id")]


class EventsQuery(Query):
    max_events: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="end the stream after this many events (default: never)"
    )


# --- responses (every field is always present; `None` where the type allows it)


class ErrorDetail(Shape):
    code: str
    message: str


class Error(Shape):
    error: ErrorDetail


class RootStatus(Shape):
    path: str
    state: str
    observer: str


class ModelStageStatus(Shape):
    """The model stage: the mode `matching.mode` asks for, the mode in use (`hash` while the model cannot be
    loaded), the model file (or `shipped`), its dimensions and the error naming the file."""

    wanted_mode: str
    mode: str
    model: str | None
    dimensions: int | None
    error: str | None
    embedding_index: str | None  # loading, ready, failed, stopped; null in mode hash
    waiting_for_embeddings: int  # files linked by hashes alone while it loads, linked again once ready


class Status(Shape):
    state: str
    version: str
    counts: dict[str, Any]
    decisions_queued: int
    queue_depth: int
    pending: int
    hashed: int
    roots: list[RootStatus]
    paused_roots: list[str]
    last_errors: Annotated[list[str], Field(max_length=10)]
    error_count: int
    problems: list[dict[str, Any]]
    uptime_seconds: float
    model: ModelStageStatus | None


class Job(Shape):
    id: int
    path: str
    root: str
    recursive: bool
    threshold: int
    orientations: bool
    state: JobState
    total: int | None
    done: int
    hashed: int
    errors: int
    groups: int
    error: str | None
    started: float
    finished: float | None


class JobList(Shape):
    jobs: list[Job]


class Decision(Shape):
    id: int
    action: DecisionAction
    file_id: int | None
    file_ids: list[int] | None
    group_id: int | None
    target: str | None
    path: str | None
    size: int | None
    state: DecisionState
    reason: str | None
    action_id: int | None
    created: float
    updated: float


class DecisionList(Shape):
    decisions: list[Decision]
    total: int


class Member(Shape):
    file_id: int
    path: str
    size: int
    width: int
    height: int
    format: str
    mtime_ns: int
    distance: int
    orientation: str
    suggested: Suggestion
    state: str
    reference: bool
    decision: Decision | None
    thumbnail_url: str
    content_url: str
    verdict: Literal["duplicate", "similar"] | None = Field(
        description="the learned verifier's, on the edge to the leader (null: not judged)"
    )
    confidence: Annotated[float, Field(ge=0, le=1)] | None
    reason: str | None = Field(description="why this is the pick of a similar group")


class Group(Shape):
    id: int
    kind: GroupKind
    leader: int
    state: GroupState
    created: float
    decided: int
    freed: int
    members: list[Member]


class GroupPage(Shape):
    groups: list[Group]
    total: int
    limit: int
    offset: int


class Outcome(Shape):
    decision_id: int
    file_id: int | None
    action: str
    state: str
    action_id: int | None
    source: str | None
    dest: str | None
    reason: str | None


class ApplyResult(Shape):
    outcomes: list[Outcome]
    applied: int
    refused: int
    failed: int


class ActionResult(Shape):
    action_id: int | None
    kind: ActionKind
    state: ActionState
    source: str
    dest: str | None
    reason: str | None
    decision_id: int | None
    file_id: int | None
    undo_of: int | None


class JournalEntry(Shape):
    id: int
    kind: ActionKind
    decision_id: int | None
    undo_of: int | None
    file_id: int | None
    source: str
    dest: str
    size: int
    state: ActionState
    reason: str | None
    batch_id: int | None
    created: float
    updated: float


class ActionList(Shape):
    actions: list[JournalEntry]


class BulkFile(Shape):
    file_id: int
    path: str
    thumbnail_url: str
    size: int = 0
    state: ItemState | None = None
    reason: str | None = None


class FolderCount(Shape):
    folder: str
    files: int
    bytes: int


class SampleGroup(Shape):
    group_id: int
    keep: list[BulkFile]
    remove: list[BulkFile]


Progress = create_model("Progress", __base__=Shape, total=int, **dict.fromkeys(ITEM_STATES, int))


class Batch(Shape):
    id: int
    preview_id: int
    state: BatchState
    running: bool
    rule: dict[str, Any]
    reason: str | None
    created: float
    updated: float
    expires: float
    groups: int
    files: int
    bytes: int
    folders: int
    per_folder: list[FolderCount]
    skipped: dict[str, int]
    progress: Progress  # type: ignore[valid-type]
    sample: list[SampleGroup]


class BatchSummary(Shape):
    id: int
    state: str
    rule: dict[str, Any]


class BatchList(Shape):
    batches: list[BatchSummary]


class ExportError(Shape):
    path: str
    error: str


ExportStats = create_model("ExportStats", __base__=Shape, **dict.fromkeys(STATS_KEYS, Any))


class Export(Shape):
    version: int
    groups: list[dict[str, Any]]
    errors: list[ExportError]
    stats: ExportStats  # type: ignore[valid-type]


# --- the verifier model (GET /api/model, retrain, restore, verdicts, a person's labels)

LabelName = Literal["duplicate", "similar", "different"]
ModelSource = Literal["shipped", "user"]


class VerifierInUse(Shape):
    source: ModelSource | None  # null: no verifier could be loaded (`problem`); the daemon runs in hash mode
    sha256: str | None
    adopted: float | None
    problem: str | None
    validation: dict[str, Any]


class RetrainSummary(Shape):
    at: float
    labels: int
    adopted: bool
    reason: str
    figures: dict[str, Any] | None


class RetrainOutcome(RetrainSummary):
    verifier: VerifierInUse


class LabelCounts(Shape):
    total: int
    needed: int
    by_label: dict[str, int]
    by_source: dict[str, int]


class Retraining(Shape):
    running: bool
    last: RetrainSummary | None


class Model(Shape):
    verifier: VerifierInUse
    previous: ModelSource | None
    labels: LabelCounts
    retraining: Retraining


class Restored(Shape):
    verifier: VerifierInUse
    previous: ModelSource | None


class Probabilities(Shape):
    duplicate: float
    similar: float
    different: float


class PairVerdict(Shape):
    a: int
    b: int
    label: LabelName
    confidence: float
    probabilities: Probabilities
    source: ModelSource


class GroupLabelled(Shape):
    group_id: int
    label: LabelName
    file_ids: list[int]


# --- server-sent events: `event: KIND` and `data: {"type": KIND, ...}` (JSON), one model per kind


class HelloEvent(Shape):
    type: Literal["hello"]
    status: Status


class GroupEvent(Shape):
    type: Literal["group"]
    groups: int | None = Field(None, description="groups in the index (after an ingest)")
    last_id: int | None = Field(None, description="the newest group's id")
    job: int | None = Field(None, description="the job whose files were grouped")


class JobEvent(Job):
    type: Literal["job"]


class DecisionEvent(Shape):
    type: Literal["decision"]
    decision: Decision


class DecisionAppliedEvent(Shape):
    type: Literal["decision_applied"]
    outcomes: list[Outcome]


class UndoneEvent(Shape):
    type: Literal["undone"]
    action: ActionResult


class BatchEvent(Shape):
    type: Literal["batch"]
    batch: Batch


class RetrainNews(Shape):
    adopted: bool
    reason: str


class ModelEvent(Shape):
    type: Literal["model"]
    retrain: RetrainNews | None = Field(None, description="a retraining ended")
    restored: ModelSource | None = Field(None, description="the model now in use after a restore")


class StatusEvent(Shape):
    type: Literal["status"]
    state: str | None = Field(None, description="the daemon's new state")
    reason: str | None = Field(None, description="why, when it is not a new state (`config`)")


Event = Annotated[
    HelloEvent
    | GroupEvent
    | JobEvent
    | DecisionEvent
    | DecisionAppliedEvent
    | UndoneEvent
    | BatchEvent
    | StatusEvent
    | ModelEvent,
    Field(discriminator="type"),
]
EVENT_KINDS = ("hello", "group", "job", "decision", "decision_applied", "undone", "batch", "status", "model")
