"""The sorter: the only room that moves files.

Each action is journaled before anything moves (`synchronous=FULL`), re-checks that the file is the one that
was decided on (device, inode, size, mtime_ns, content hash), never replaces an existing name (a suffix is
added), crosses file systems by copy → fsync → verify → link → unlink, and is recorded done at the end.
`recover()` finishes or rolls back whatever a crash left open; `undo()` puts a file back byte-identical.
The pure rules (where a file goes, names, recovery decisions) live in `sorter.plan`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from comparimg.index import (
    Database,  # the writer connection the index room hands out
    journal,
)
from comparimg.model import Conflict, FileIdentity, Refused
from comparimg.sorter import files
from comparimg.sorter.files import crash_point
from comparimg.sorter.plan import (
    Observation,
    Placement,
    candidate_paths,
    move_placement,
    recovery_decision,
    temp_path_for,
    trash_placement,
    trashinfo_text,
)

HashFile = Callable[[str], str]


@dataclasses.dataclass(frozen=True, slots=True)
class SortRequest:
    """One file to trash or move, with what it was when the decision was taken."""

    kind: str  # "trash" | "move"
    source: Path
    identity: FileIdentity
    content_hash: str
    target: str | None = None
    decision_id: int | None = None
    file_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened to one action: state is done, refused, rolled_back or failed."""

    action_id: int | None
    kind: str
    state: str
    source: str
    dest: str | None
    reason: str | None = None
    decision_id: int | None = None
    file_id: int | None = None
    undo_of: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the result as a plain dict (the API shape)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class _Job:
    kind: str
    source: Path
    placement: Placement
    base: Path
    identity: FileIdentity
    content_hash: str
    decision_id: int | None = None
    file_id: int | None = None
    undo_of: int | None = None


class Sorter:
    """Applies trash / move actions to files, journaled in the index database."""

    def __init__(
        self,
        db: Database,
        roots: tuple[Path, ...],
        settings: Any,
        hash_file: HashFile,
        on_done: Callable[[ActionResult], None] | None = None,
        uid: int | None = None,
    ):
        """Given the writer Database, the root folders, `SorterSettings`, the content-hash function (the same
        one the index uses) and an optional callback run after each completed action."""
        self.db = db
        self.roots = tuple(Path(root) for root in roots)
        self.settings = settings
        self.hash_file = hash_file
        self.on_done = on_done
        self.uid = os.getuid() if uid is None else uid
        self.lock = threading.Lock()

    # --- public ---------------------------------------------------------------------------------------

    def apply(self, request: SortRequest) -> ActionResult:
        """Trash or move one file. Return the result (done / refused / failed). Raise Refused for a source
        outside the roots, an unknown target or a destination that escapes its folder."""
        try:
            placement, base = self._placement(request)
        except ValueError as error:
            raise Refused(str(error)) from error
        job = _Job(
            request.kind,
            request.source,
            placement,
            base,
            request.identity,
            request.content_hash,
            request.decision_id,
            request.file_id,
        )
        with self.lock:
            return self._execute(job)

    def undo(self, action_id: int) -> ActionResult:
        """Put the file of a done trash/move action back at its original path (a suffix if the name is taken
        meanwhile). Raise NotFound, Conflict when the action is not done, Refused when the file changed."""
        with self.lock:
            row = journal.get_action(self.db, action_id)
            if row["kind"] == "restore" or row["state"] != "done":
                raise Conflict(f"action {action_id} is a {row['state']} {row['kind']}; only done moves undo")
            where = Path(row["dest"])
            identity = files.identity_of(where)
            if identity is None:
                raise Refused(f"{where} is no longer there")
            original = Path(row["source"])
            job = _Job(
                "restore",
                where,
                Placement(original),
                original.parent,
                identity,
                row["content_hash"],
                row["decision_id"],
                row["file_id"],
                undo_of=action_id,
            )
            return self._execute(job)

    def recover(self) -> list[ActionResult]:
        """Finish or roll back every action a crash left open; return what was done with each."""
        with self.lock:
            return [self._resolve(row) for row in journal.open_actions(self.db)]

    # --- planning -------------------------------------------------------------------------------------

    def _placement(self, request: SortRequest) -> tuple[Placement, Path]:
        if request.kind == "trash":
            trash = Path(self.settings.trash_dir)
            layout = self.settings.trash_layout
            return trash_placement(request.source, self.roots, trash, layout, self.uid), trash
        if request.kind == "move":
            targets = {name: Path(path) for name, path in self.settings.move_targets.items()}
            placement = move_placement(request.source, self.roots, targets, request.target or "")
            return placement, targets[request.target or ""]
        raise ValueError(f"unknown action kind {request.kind!r}")

    # --- doing ----------------------------------------------------------------------------------------

    def _execute(self, job: _Job) -> ActionResult:
        try:
            files.make_dirs_inside(job.placement.dest.parent, job.base)
            if job.placement.info_dir is not None:
                files.make_dirs_inside(job.placement.info_dir, job.base)
            cross_fs = not files.same_file_system(job.source, job.placement.dest.parent)
        except (ValueError, OSError) as error:
            raise Refused(f"cannot prepare the destination: {error}") from error
        dest = self._first_free(job.placement)
        action_id = journal.journal_intent(self.db, self._intent_fields(job, dest, cross_fs))
        crash_point("intent")
        problem = self._recheck(job)
        if problem:
            journal.journal_update(self.db, action_id, state="refused", reason=problem)
            self._after_refusal(job, problem)
            return self._result(action_id, job, "refused", None, problem)
        try:
            dest = self._place(action_id, job, dest, cross_fs)
        except OSError as error:
            return self._resolve(journal.get_action(self.db, action_id), f"{type(error).__name__}: {error}")
        return self._complete(journal.get_action(self.db, action_id), dest)

    def _intent_fields(self, job: _Job, dest: Path, cross_fs: bool) -> dict[str, Any]:
        identity = job.identity
        return {
            "kind": job.kind,
            "decision_id": job.decision_id,
            "undo_of": job.undo_of,
            "file_id": job.file_id,
            "source": str(job.source),
            "dest": str(dest),
            "info_path": self._info_path(job.placement, dest),
            "cross_fs": int(cross_fs),
            "device": identity.device,
            "inode": identity.inode,
            "size": identity.size,
            "mtime_ns": identity.mtime_ns,
            "content_hash": job.content_hash,
        }

    def _recheck(self, job: _Job) -> str | None:
        """Return why the file is not the one decided on, or None when it is."""
        current = files.identity_of(job.source)
        if current is None:
            return f"{job.source} is gone or is not a regular file"
        if job.kind != "restore" and not files.inside_roots(job.source, self.roots):
            return f"{job.source} resolves outside every root"
        if current != job.identity:
            return "file changed since the decision (device, inode, size or mtime)"
        if self.hash_file(str(job.source)) != job.content_hash:
            return "file content changed since the decision"
        return None

    def _place(self, action_id: int, job: _Job, dest: Path, cross_fs: bool) -> Path:
        """Put the file at a free name (journaling each name tried) and unlink the source; return the name."""
        linked_from = job.source
        if cross_fs:
            linked_from = temp_path_for(dest, action_id)
            files.copy_durably(job.source, linked_from, lambda: crash_point("copying"))
            crash_point("copied")
            if self.hash_file(str(linked_from)) != job.content_hash:
                linked_from.unlink()
                raise OSError("the copy does not match the original's content hash")
        dest = self._link_free_name(action_id, job.placement, dest, linked_from)
        crash_point("linked")
        if not cross_fs and files.inode_of(dest) != job.identity.inode:
            dest.unlink()  # the source was swapped after the re-check: that file is not ours to move
            raise OSError("the file was replaced while being moved")
        if cross_fs:
            linked_from.unlink()
            crash_point("temp_removed")
        files.fsync_dir(dest.parent)
        files.unlink_if_inode(job.source, job.identity.inode)
        files.fsync_dir(job.source.parent)
        crash_point("source_removed")
        return dest

    def _link_free_name(self, action_id: int, placement: Placement, dest: Path, linked_from: Path) -> Path:
        """Link `linked_from` at `dest` or the next free suffixed name; os.link never replaces a file."""
        for candidate in candidate_paths(placement.dest):
            if candidate != dest:
                if self._taken(placement, candidate):
                    continue
                journal.journal_update(
                    self.db, action_id, dest=str(candidate), info_path=self._info_path(placement, candidate)
                )
            dest = candidate
            info = self._info_path(placement, candidate)
            try:
                if info is not None:
                    text = trashinfo_text(self._original(action_id), datetime.now())
                    files.write_exclusive(Path(info), text)
                    crash_point("info_written")
                os.link(linked_from, candidate, follow_symlinks=False)
                return candidate
            except FileExistsError:
                continue
        raise OSError("no free name left for the destination")

    def _complete(self, row: dict[str, Any], dest: Path) -> ActionResult:
        journal.journal_update(self.db, row["id"], state="done", dest=str(dest))
        crash_point("recorded")
        return self._after_done(journal.get_action(self.db, row["id"]))

    # --- recovery -------------------------------------------------------------------------------------

    def _resolve(self, row: dict[str, Any], failure: str | None = None) -> ActionResult:
        """Look at the disk for one open action and finish it or roll it back."""
        seen = self._observe(row)
        verdict = recovery_decision(seen)
        try:
            if verdict == "finish":
                self._finish(row, seen)
                return self._complete(row, Path(row["dest"]))
            if verdict == "rollback":
                self._roll_back(row, seen)
        except OSError as error:
            failure = f"recovery could not finish: {error}"
            verdict = "lost"
        state = "failed" if verdict == "lost" or failure else "rolled_back"
        lost = "neither the source nor the destination holds the file"
        reason = failure or (lost if verdict == "lost" else None)
        journal.journal_update(self.db, row["id"], state=state, reason=reason)
        self._after_rollback(row, state, reason)
        return self._row_result(journal.get_action(self.db, row["id"]))

    def _observe(self, row: dict[str, Any]) -> Observation:
        source, dest = Path(row["source"]), Path(row["dest"])
        cross_fs = bool(row["cross_fs"])
        dest_inode = files.inode_of(dest)
        journaled = FileIdentity(row["device"], row["inode"], row["size"], row["mtime_ns"])
        dest_hash_ok = None
        if cross_fs and dest_inode is not None:
            dest_hash_ok = self._hash_or_none(dest) == row["content_hash"]
        return Observation(
            source_inode=files.inode_of(source),
            dest_inode=dest_inode,
            temp_inode=files.inode_of(temp_path_for(dest, row["id"])) if cross_fs else None,
            dest_hash_ok=dest_hash_ok,
            source_unchanged=files.identity_of(source) == journaled,
            cross_fs=cross_fs,
            journaled_inode=row["inode"],
        )

    def _hash_or_none(self, path: Path) -> str | None:
        try:
            return self.hash_file(str(path))
        except Exception:  # an unreadable destination is simply "not ours"
            return None

    def _finish(self, row: dict[str, Any], seen: Observation) -> None:
        source, dest = Path(row["source"]), Path(row["dest"])
        if seen.temp_inode is not None:
            files.unlink_if_inode(temp_path_for(dest, row["id"]), seen.temp_inode)
        files.fsync_dir(dest.parent)
        files.unlink_if_inode(source, row["inode"])
        files.fsync_dir(source.parent)

    def _roll_back(self, row: dict[str, Any], seen: Observation) -> None:
        dest = Path(row["dest"])
        if seen.temp_inode is not None:
            if seen.dest_inode == seen.temp_inode:
                dest.unlink()
            temp_path_for(dest, row["id"]).unlink()
        if row["info_path"]:
            Path(row["info_path"]).unlink(missing_ok=True)

    # --- bookkeeping ----------------------------------------------------------------------------------

    def _after_done(self, row: dict[str, Any]) -> ActionResult:
        if row["kind"] == "restore":
            original = journal.get_action(self.db, row["undo_of"])
            if original["info_path"]:
                Path(original["info_path"]).unlink(missing_ok=True)
            journal.journal_update(self.db, row["undo_of"], state="undone")
            if row["decision_id"] is not None:
                journal.set_decision_state(self.db, row["decision_id"], "undone")
        elif row["decision_id"] is not None:
            journal.set_decision_state(
                self.db, row["decision_id"], "applied", action_id=row["id"], reason=None
            )
        result = self._row_result(row)
        if self.on_done is not None:
            self.on_done(result)
        return result

    def _after_refusal(self, job: _Job, reason: str) -> None:
        if job.decision_id is not None and job.kind != "restore":
            journal.set_decision_state(self.db, job.decision_id, "refused", reason=reason)

    def _after_rollback(self, row: dict[str, Any], state: str, reason: str | None) -> None:
        if row["decision_id"] is None or row["kind"] == "restore":
            return
        if state == "failed":
            journal.set_decision_state(self.db, row["decision_id"], "failed", reason=reason)
        else:
            reason = "rolled back after a crash"
            journal.set_decision_state(self.db, row["decision_id"], "queued", reason=reason)

    def _first_free(self, placement: Placement) -> Path:
        return next(path for path in candidate_paths(placement.dest) if not self._taken(placement, path))

    def _taken(self, placement: Placement, candidate: Path) -> bool:
        info = self._info_path(placement, candidate)
        return os.path.lexists(candidate) or (info is not None and os.path.lexists(info))

    @staticmethod
    def _info_path(placement: Placement, dest: Path) -> str | None:
        if placement.info_dir is None:
            return None
        return str(placement.info_dir / f"{dest.name}.trashinfo")

    def _original(self, action_id: int) -> Path:
        return Path(journal.get_action(self.db, action_id)["source"])

    @staticmethod
    def _result(action_id: int, job: _Job, state: str, dest: str | None, reason: str | None) -> ActionResult:
        return ActionResult(
            action_id,
            job.kind,
            state,
            str(job.source),
            dest,
            reason,
            job.decision_id,
            job.file_id,
            job.undo_of,
        )

    @staticmethod
    def _row_result(row: dict[str, Any]) -> ActionResult:
        return ActionResult(
            row["id"],
            row["kind"],
            row["state"],
            row["source"],
            row["dest"],
            row["reason"],
            row["decision_id"],
            row["file_id"],
            row["undo_of"],
        )
