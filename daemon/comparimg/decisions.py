"""The decisions room (pure): which member of a duplicate group to keep, and the rules of the decision
queue (what may be queued, cancelled and applied, and how a decision's state follows its action's).

Keep rules, in order: every file in a reference folder is kept; otherwise the single keeper is the file
with the most pixels, then the biggest file, then the oldest mtime, then the shortest path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from comparimg.model import (
    ActionKind,
    ActionState,
    Conflict,
    Decision,
    DecisionAction,
    DecisionState,
    FileFacts,
    Group,
    Refused,
)


def keeper_key(facts: FileFacts) -> tuple:
    """Given a file's facts, return its sort key in keeper order (first = best to keep): reference files,
    then more pixels, a bigger file, an older mtime, a shorter path, then path and id."""
    return (
        not facts.reference,
        -facts.width * facts.height,
        -facts.size,
        facts.mtime_ns,
        len(facts.path),
        facts.path,
        facts.file_id,
    )


def suggest_keeper(members: Sequence[FileFacts]) -> int:
    """Given a group's members (at least one), return the file id of the one to keep by the keep rules
    (the first reference file when there are reference files; all of them are kept, see `keepers`).
    Raise ValueError for an empty group."""
    if not members:
        raise ValueError("a group has at least one member")
    return min(members, key=keeper_key).file_id


def keepers(members: Sequence[FileFacts]) -> frozenset[int]:
    """Given a group's members, return the ids of the files to keep: every reference file, else the one
    `suggest_keeper` picks."""
    references = frozenset(facts.file_id for facts in members if facts.reference)
    return references or frozenset({suggest_keeper(members)})


def mark_suggestions(group: Group, files: Mapping[int, FileFacts]) -> Group:
    """Given a group and the facts of (at least) its members, return the group with each member's
    `suggested` set to "keep" or "trash" by the keep rules. Raise KeyError for a member without facts.

    A `similar` group (shots of one scene) suggests nothing for the trash: every member is "keep", and the
    shot to pick (`pick_shot`) carries the reason in `reason`."""
    if group.kind == "similar":
        return pick_shot(group, files)
    keep = keepers([files[member.file_id] for member in group.members])
    members = tuple(
        replace(member, suggested="keep" if member.file_id in keep else "trash") for member in group.members
    )
    return replace(group, members=members)


WELL_EXPOSED = 0.8  # a shot whose exposure is below this share of the best one's is not picked for sharpness


def pick_shot(group: Group, files: Mapping[int, FileFacts]) -> Group:
    """Given a `similar` group and its members' facts, return it with every member "keep" and the best shot's
    `reason` set: the sharpest of the well-exposed shots (exposure at least WELL_EXPOSED of the best) when
    the quality of every shot was measured, else the keep rules' choice."""
    facts = [files[member.file_id] for member in group.members]
    count = len(facts)
    if all(fact.quality is not None for fact in facts):
        best_exposure = max(fact.quality.exposure for fact in facts)
        exposed = [fact for fact in facts if fact.quality.exposure >= WELL_EXPOSED * best_exposure]
        best = max(exposed, key=lambda fact: (fact.quality.sharpness, fact.quality.exposure))
        sharpest = max(facts, key=lambda fact: fact.quality.sharpness)
        if best is sharpest:
            reason = f"sharpest of {count} shots"
        else:
            reason = f"sharpest well-exposed of {count} shots"
        chosen = best.file_id
    else:
        chosen = suggest_keeper(facts)
        reason = f"kept by the keep rules (quality not measured) of {count} shots"
    members = tuple(
        replace(member, suggested="keep", reason=reason if member.file_id == chosen else "")
        for member in group.members
    )
    return replace(group, members=members)


# --- decisions by rule (many groups at once) ------------------------------------------------------------

RULE_KINDS = ("exact", "near", "similar")
DEFAULT_RULE_KINDS = ("exact", "near")  # `similar` (same scene, another shot) only when named
RULE_ACTIONS = ("trash", "move")


@dataclass(frozen=True, slots=True)
class BulkRule:
    """A filter over groups and what to do with each matching group's copies.

    A group matches when its kind is in `kinds`, at least one member lies under `folder` (when given), it
    holds a file under a reference root (when `reference_only`) and the verifier's confidence is at least
    `min_confidence` (when given; a group without a confidence never matches then). The suggested copy
    (and every reference file) is kept; the other members are trashed, or moved to the configured `target`.
    """

    kinds: tuple[str, ...] = DEFAULT_RULE_KINDS
    folder: str | None = None
    reference_only: bool = False
    action: str = "trash"
    target: str | None = None
    min_confidence: float | None = None

    def __post_init__(self) -> None:
        if not self.kinds or any(kind not in RULE_KINDS for kind in self.kinds):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(RULE_KINDS)}")
        if self.action not in RULE_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(RULE_ACTIONS)}")
        if (self.action == "move") != bool(self.target):
            raise ValueError("a move needs a target, and only a move has one")
        if self.folder is not None and not self.folder.startswith("/"):
            raise ValueError("folder must be an absolute path")

    def as_dict(self) -> dict:
        """Return the rule as plain JSON-ready values."""
        return {
            "kinds": list(self.kinds),
            "folder": self.folder,
            "reference_only": self.reference_only,
            "action": self.action,
            "target": self.target,
            "min_confidence": self.min_confidence,
        }


@dataclass(frozen=True, slots=True)
class CandidateMember:
    """One member of a group as a rule sees it, with the identity the sorter re-checks before acting."""

    file_id: int
    path: str
    state: str  # the file row's state: ok, error, missing
    suggested: str  # "keep" | "trash"
    reference: bool
    size: int
    device: int = 0
    inode: int = 0
    mtime_ns: int = 0
    content_hash: str = ""
    picked: bool = False  # the best shot of a `similar` group (its member `reason` is set)


@dataclass(frozen=True, slots=True)
class CandidateGroup:
    """One stored group as a rule sees it."""

    group_id: int
    kind: str
    members: tuple[CandidateMember, ...]
    decided: bool  # some member already has a queued or applied decision
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """What a rule does to one group: the files kept and the files trashed or moved."""

    group_id: int
    kind: str
    keepers: tuple[CandidateMember, ...]
    removed: tuple[CandidateMember, ...]


def rule_matches(rule: BulkRule, group: CandidateGroup) -> bool:
    """Given a rule and a group, return whether the group passes the rule's filter (kind, folder,
    reference, confidence). A `similar` group never matches a rule that does not name that kind."""
    if group.kind not in rule.kinds:
        return False
    if rule.folder is not None:
        prefix = rule.folder.rstrip("/") + "/"
        if not any(member.path.startswith(prefix) for member in group.members):
            return False
    if rule.reference_only and not any(member.reference for member in group.members):
        return False
    if rule.min_confidence is not None:
        return group.confidence is not None and group.confidence >= rule.min_confidence
    return True


def plan_bulk(rule: BulkRule, groups: Sequence[CandidateGroup]) -> tuple[list[GroupPlan], dict[str, int]]:
    """Given a rule and the candidate groups, return (the plan of every group it acts on, by group id;
    the number of matching groups left alone, by reason).

    Left alone: a group with a decision already ("decided"), one sharing a file with a group planned before
    it ("shared_file"), one whose keeper is not a present file ("keeper_not_present") and one with nothing to
    remove ("nothing_to_remove"). A reference file is always a keeper and never removed; members that are
    not present files are never removed.
    """
    plans: list[GroupPlan] = []
    skipped: dict[str, int] = {}
    claimed: set[int] = set()
    for group in sorted(groups, key=lambda g: g.group_id):
        if not rule_matches(rule, group):
            continue
        reason = _why_left_alone(group, claimed)
        if reason is None:
            plan = _plan_group(group)
            reason = None if plan.removed else "nothing_to_remove"
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        claimed.update(member.file_id for member in group.members)
        plans.append(plan)
    return plans, skipped


def _why_left_alone(group: CandidateGroup, claimed: set[int]) -> str | None:
    if group.decided:
        return "decided"
    if any(member.file_id in claimed for member in group.members):
        return "shared_file"
    keep = [m for m in group.members if _kept(group, m)]
    if not keep or any(member.state != "ok" for member in keep):
        return "keeper_not_present"
    return None


def _kept(group: CandidateGroup, member: CandidateMember) -> bool:
    """A reference file is kept; in a `similar` group (every member "keep") its picked shot when it has one;
    else the suggested keeper."""
    if group.kind == "similar" and any(m.picked for m in group.members):
        return member.reference or member.picked
    return member.reference or member.suggested == "keep"


def _plan_group(group: CandidateGroup) -> GroupPlan:
    keep = tuple(m for m in group.members if _kept(group, m))
    removed = tuple(m for m in group.members if m not in keep and m.state == "ok")
    return GroupPlan(group.group_id, group.kind, keep, removed)


def summarize_plans(plans: Sequence[GroupPlan], folders: int = 20) -> dict:
    """Given the plans of a rule, return its preview figures: groups, files, bytes freed and, for the
    `folders` folders losing the most bytes, {"folder", "files", "bytes"}."""
    per_folder: dict[str, list[int]] = {}
    files = total = 0
    for plan in plans:
        for member in plan.removed:
            folder = member.path.rsplit("/", 1)[0] or "/"
            entry = per_folder.setdefault(folder, [0, 0])
            entry[0] += 1
            entry[1] += member.size
            files += 1
            total += member.size
    ranked = sorted(per_folder.items(), key=lambda item: (-item[1][1], item[0]))[:folders]
    return {
        "groups": len(plans),
        "files": files,
        "bytes": total,
        "folders": len(per_folder),
        "per_folder": [{"folder": f, "files": n, "bytes": b} for f, (n, b) in ranked],
    }


# --- the decision queue ---------------------------------------------------------------------------------

KEEPING_STATES: tuple[DecisionState, ...] = ("queued", "applied")  # a keep that still stands


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """A decision a person asks for: keep / trash / move one file, or not-duplicates for files or a group."""

    action: DecisionAction
    file_id: int | None = None
    file_ids: tuple[int, ...] = ()
    group_id: int | None = None
    target: str | None = None


def check_queueable(decision: DecisionInput, move_targets: Collection[str]) -> int:
    """Given a keep / trash / move decision and the configured move targets, return its file id.
    Raise Refused for a move to a target that is not configured, ValueError for a decision without a file."""
    if decision.action == "move" and decision.target not in move_targets:
        raise Refused(f"unknown move target {decision.target!r}; configured: {sorted(move_targets)}")
    if decision.file_id is None or decision.action == "not_duplicates":
        raise ValueError(f"a {decision.action} decision to queue needs one file")
    return decision.file_id


def check_not_duplicates(file_ids: Sequence[int]) -> None:
    """Given the files of a not-duplicates decision, raise Refused unless there are at least two."""
    if len(file_ids) < 2:
        raise Refused("not-duplicates needs at least two files")


def check_cancellable(decision: Decision) -> None:
    """Raise Conflict unless the decision is still queued (only a queued decision can be cancelled)."""
    if decision.state != "queued":
        raise Conflict(f"decision {decision.id} is {decision.state}, not queued")


def needs_sorter(decision: Decision) -> bool:
    """Whether applying the (queued) decision moves a file: trash and move do; keep is only recorded."""
    return decision.action in ("trash", "move")


def state_after_action(kind: ActionKind, action_state: ActionState) -> DecisionState:
    """Given the kind of the sorter's action for a decision and the state it ended in, return the decision's
    state: a done trash or move applied it, a done restore undid it, a rolled back action leaves it queued,
    a refused or failed one is that."""
    if kind == "restore" and action_state == "done":
        return "undone"
    states: dict[str, DecisionState] = {"done": "applied", "rolled_back": "queued", "refused": "refused"}
    return states.get(action_state, "failed")


def chosen_keepers(decided: Mapping[int, Decision]) -> set[int]:
    """Given the standing decisions of some files (file id → decision), return the files a person keeps."""
    return {fid for fid, d in decided.items() if d.action == "keep" and d.state in KEEPING_STATES}


def suggested_keepers(suggested: Mapping[int, str], decided: Mapping[int, Decision]) -> set[int]:
    """Given members' suggestions (file id → "keep" / "trash") and their standing decisions, return the
    suggested keepers that no trash or move was decided for."""
    removed = {fid for fid, d in decided.items() if d.action in ("trash", "move")}
    return {fid for fid, s in suggested.items() if s == "keep" and fid not in removed}
