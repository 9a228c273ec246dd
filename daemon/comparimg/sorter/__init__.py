"""The sorter: the only room that moves files.

Each action is journaled before anything moves (`synchronous=FULL`), re-checks that the file is the one that
was decided on (device, inode, size, mtime_ns, content hash), never replaces an existing name (a suffix is
added), crosses file systems by copy → fsync → verify → link → unlink, and is recorded done at the end.
Files and folders are reached through directory file descriptors opened without following symlinks
(`sorter.files`), so a name swapped for a symlink during an action makes it fail rather than reach outside.
Right before the source is unlinked it is looked at once more: a file edited or replaced while it was being
copied is kept, the copy dropped, and the decision refused for review.
`recover()` finishes or rolls back whatever a crash left open; `undo()` puts a file back byte-identical.
The pure rules (where a file goes, names, recovery decisions) live in `sorter.plan`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from comparimg.config import deepest_root
from comparimg.decisions import state_after_action
from comparimg.index import (
    Database,  # the writer connection the index room hands out
    journal,
)
from comparimg.model import Action, Conflict, FileIdentity, ImageError, Refused
from comparimg.sorter import files, trash_home
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
ROLLED_BACK = "rolled back after a crash"  # the reason a decision is queued again after recovery


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
    batch_id: int | None = None  # the bulk batch this action belongs to (journaled with it)


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
    identity: FileIdentity
    content_hash: str
    source_base: Path  # the configured folder the source is reached from (a root, the trash, a target)
    dest_base: Path
    decision_id: int | None = None
    file_id: int | None = None
    undo_of: int | None = None
    batch_id: int | None = None


@dataclasses.dataclass(slots=True)
class _Open:
    """The descriptors one action works through."""

    source_dir: int
    dest_dir: int
    info_dir: int | None
    cross_fs: bool
    source: int = -1  # the source file, opened and checked
    seen: os.stat_result | None = None  # its fstat when checked (later looks compare with it)


class SourceChanged(Exception):
    """The source was edited or replaced while the action ran: it is kept and nothing moves."""


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
        one the index uses; it is given `/proc/self/fd/N` paths of files the sorter opened) and an optional
        callback run after each completed action."""
        self.db = db
        self.roots = tuple(Path(root) for root in roots)
        self.settings = settings
        self.hash_file = hash_file
        self.on_done = on_done
        self.uid = os.getuid() if uid is None else uid
        self.lock = threading.Lock()

    # --- public ---------------------------------------------------------------------------------------

    def retarget(self, roots: tuple[Path, ...], settings: Any) -> None:
        """Given the roots and `SorterSettings` now in force (a reload), act only within them from the next
        action on: a source outside the new roots or a target no longer configured is refused."""
        with self.lock:
            self.roots = tuple(Path(root) for root in roots)
            self.settings = settings

    def apply(self, request: SortRequest) -> ActionResult:
        """Trash or move one file. Return the result (done / refused / failed). Raise Refused for a source
        outside the roots, an unknown target, a destination that escapes its folder or a trash folder the
        freedesktop rules forbid."""
        try:
            placement, base = self._placement(request)
            root = Path(deepest_root(str(request.source), self.roots) or "/")
        except ValueError as error:
            raise Refused(str(error)) from error
        job = _Job(
            request.kind,
            request.source,
            placement,
            request.identity,
            request.content_hash,
            root,
            base,
            request.decision_id,
            request.file_id,
            batch_id=request.batch_id,
        )
        with self.lock:
            return self._execute(job)

    def undo(self, action_id: int, batch_id: int | None = None) -> ActionResult:
        """Put the file of a done trash/move action back at its original path (a suffix if the name is taken
        meanwhile); the restore is journaled with `batch_id` when given (a batch undo). Raise NotFound,
        Conflict when the action is not done, Refused when the file changed."""
        with self.lock:
            row = journal.get_action(self.db, action_id)
            if row.kind == "restore" or row.state != "done":
                raise Conflict(
                    f"action {action_id} is a {row.state} {row.kind}; only a done trash or move can be undone"
                )
            where = Path(row.dest)
            found = files.stat_in(self._base_of(where), where)
            if found is None or not stat.S_ISREG(found.st_mode):
                raise Refused(f"{where} is no longer there (or a folder on the way is now a symlink)")
            original = Path(row.source)
            job = _Job(
                "restore",
                where,
                Placement(original),
                files.identity_of_stat(found),
                row.content_hash,
                self._base_of(where),
                self._base_of(original),
                row.decision_id,
                row.file_id,
                undo_of=action_id,
                batch_id=batch_id,
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
            home = trash_home.choose(trash, self.uid) if layout == "freedesktop" else None
            return trash_placement(request.source, self.roots, trash, layout, self.uid, home), trash
        if request.kind == "move":
            targets = {name: Path(path) for name, path in self.settings.move_targets.items()}
            placement = move_placement(request.source, self.roots, targets, request.target or "")
            return placement, targets[request.target or ""]
        raise ValueError(f"unknown action kind {request.kind!r}")

    def _base_of(self, path: Path) -> Path:
        """Return the configured folder (root, trash, move target) `path` is reached from: the deepest one
        holding it, else its own folder (a journaled path whose folder is no longer configured)."""
        bases = (*self.roots, Path(self.settings.trash_dir), *map(Path, self.settings.move_targets.values()))
        inside = deepest_root(str(path), [base for base in bases if str(base) != str(path)])
        return Path(inside) if inside is not None else path.parent

    # --- doing ----------------------------------------------------------------------------------------

    def _execute(self, job: _Job) -> ActionResult:
        with contextlib.ExitStack() as stack:
            try:
                dest_dir, info_dir = self._open_destination(job, stack)
            except (ValueError, OSError) as error:
                raise Refused(f"cannot prepare the destination: {error}") from error
            try:
                relative = job.source.parent.relative_to(job.source_base)
                source_dir = stack.enter_context(files.folder(job.source_base, relative))
            except (ValueError, OSError) as error:
                problem = f"{job.source.parent} cannot be reached without following a symlink: {error}"
                self._after_refusal(job, problem)
                return self._result(None, job, "refused", None, problem)
            cross_fs = os.fstat(source_dir).st_dev != os.fstat(dest_dir).st_dev
            opened = _Open(source_dir, dest_dir, info_dir, cross_fs)
            dest = self._first_free(job.placement, opened)
            action_id = journal.journal_intent(self.db, self._intent_fields(job, dest, cross_fs))
            crash_point("intent")
            return self._act(action_id, job, opened, dest, stack)

    def _act(
        self, action_id: int, job: _Job, opened: _Open, dest: Path, stack: contextlib.ExitStack
    ) -> ActionResult:
        try:
            problem = self._recheck(job, opened)
            if opened.source >= 0:
                stack.callback(os.close, opened.source)
            if problem:
                return self._refuse(action_id, job, problem)
            dest = self._place(action_id, job, opened, dest)
        except SourceChanged as change:
            return self._refuse(action_id, job, str(change))
        except (OSError, ValueError, ImageError) as error:
            return self._resolve(journal.get_action(self.db, action_id), f"{type(error).__name__}: {error}")
        return self._complete(journal.get_action(self.db, action_id), dest)

    def _open_destination(self, job: _Job, stack: contextlib.ExitStack) -> tuple[int, int | None]:
        check, private = None, None
        if job.kind == "trash" and self.settings.trash_layout == "freedesktop":
            check, private = trash_home.folder_check(job.dest_base, self.uid), trash_home.private

        def open_inside(folder: Path) -> int:
            relative = folder.relative_to(job.dest_base)
            # A missing root is never created: it is unmounted, and a new folder would be on another disk.
            create_base = job.kind != "restore"
            return stack.enter_context(
                files.folder(job.dest_base, relative, True, check, private, create_base)
            )

        dest_dir = open_inside(job.placement.dest.parent)
        info_dir = open_inside(job.placement.info_dir) if job.placement.info_dir is not None else None
        return dest_dir, info_dir

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
            "batch_id": job.batch_id,
        }

    def _recheck(self, job: _Job, opened: _Open) -> str | None:
        """Open the source (no symlink) into `opened`; return why it is not the file decided on, or None."""
        try:
            descriptor, seen = files.open_regular(opened.source_dir, job.source.name)
        except FileNotFoundError:
            return f"{job.source} is gone"
        except (OSError, ValueError) as error:
            return f"{job.source} cannot be opened as a regular file: {error}"
        opened.source, opened.seen = descriptor, seen
        if files.identity_of_stat(seen) != job.identity:
            return "file changed since the decision (device, inode, size or mtime)"
        try:
            digest = self.hash_file(files.descriptor_path(descriptor))
        except (ImageError, OSError) as error:
            return f"cannot read {job.source}: {error}"
        if digest != job.content_hash:
            return "file content changed since the decision"
        return None

    def _place(self, action_id: int, job: _Job, opened: _Open, dest: Path) -> Path:
        """Put the file at a free name (journaling each name tried) and unlink the source; return the name.

        Raise SourceChanged (after taking back what was placed) when the source was edited or replaced
        meanwhile, OSError when a step fails.
        """
        if opened.cross_fs:
            temp = temp_path_for(dest, action_id).name
            placed = files.copy_durably(opened.source, opened.dest_dir, temp, lambda: crash_point("copying"))
            crash_point("copied")
            if self._hash_at(opened.dest_dir, temp) != job.content_hash:
                files.unlink_at(opened.dest_dir, temp, placed)
                raise OSError("the copy does not match the original's content hash")
            self._still_unchanged(job, opened, lambda: files.unlink_at(opened.dest_dir, temp, placed))

            def link(name: str) -> None:
                os.link(
                    temp, name, src_dir_fd=opened.dest_dir, dst_dir_fd=opened.dest_dir, follow_symlinks=False
                )

        else:
            placed = job.identity.inode
            self._still_unchanged(job, opened, lambda: None)

            def link(name: str) -> None:
                files.link_open_file(opened.source, opened.dest_dir, name)
                # Our own link changed the source's ctime: later looks compare with this one.
                after = os.fstat(opened.source)
                if (after.st_size, after.st_mtime_ns) == (opened.seen.st_size, opened.seen.st_mtime_ns):
                    opened.seen = after

        dest = self._link_free_name(action_id, job.placement, opened, dest, link)
        crash_point("linked")
        if files.inode_at(opened.dest_dir, dest.name) != placed:
            raise OSError("the destination was replaced while it was being linked")
        if opened.cross_fs:
            files.unlink_at(opened.dest_dir, temp, placed)
            crash_point("temp_removed")
        os.fsync(opened.dest_dir)
        self._still_unchanged(job, opened, lambda: self._take_back(job, opened, dest, placed))
        os.unlink(job.source.name, dir_fd=opened.source_dir)
        os.fsync(opened.source_dir)
        crash_point("source_removed")
        return dest

    def _still_unchanged(self, job: _Job, opened: _Open, take_back: Callable[[], Any]) -> None:
        """Look at the source once more; if it was edited (size, mtime, ctime) or its name now holds another
        file, run `take_back` and raise SourceChanged."""
        assert opened.seen is not None
        try:
            by_name = os.stat(job.source.name, dir_fd=opened.source_dir, follow_symlinks=False)
        except FileNotFoundError:
            by_name = None
        now = os.fstat(opened.source)
        if (
            by_name is not None
            and files.same_version(opened.seen, by_name)
            and files.same_version(opened.seen, now)
        ):
            return
        take_back()
        raise SourceChanged(
            f"{job.source} was edited or replaced while it was being moved; kept, nothing moved"
        )

    def _take_back(self, job: _Job, opened: _Open, dest: Path, placed: int) -> None:
        files.unlink_at(opened.dest_dir, dest.name, placed)
        info = self._info_path(job.placement, dest)
        if info is not None and opened.info_dir is not None:
            name = Path(info).name
            files.unlink_at(opened.info_dir, name, files.inode_at(opened.info_dir, name) or -1)

    def _hash_at(self, parent: int, name: str) -> str | None:
        descriptor, _ = files.open_regular(parent, name)
        try:
            return self.hash_file(files.descriptor_path(descriptor))
        finally:
            os.close(descriptor)

    def _link_free_name(
        self, action_id: int, placement: Placement, opened: _Open, dest: Path, link: Callable[[str], None]
    ) -> Path:
        """Link at `dest` or the next free suffixed name (journaled first); a link never replaces a file."""
        for candidate in candidate_paths(placement.dest):
            if candidate != dest:
                if self._taken(placement, opened, candidate):
                    continue
                journal.journal_update(
                    self.db, action_id, dest=str(candidate), info_path=self._info_path(placement, candidate)
                )
            dest = candidate
            info = self._info_path(placement, candidate)
            if info is not None and opened.info_dir is not None:
                text = trashinfo_text(self._original(action_id), datetime.now())
                try:
                    files.write_exclusive_at(opened.info_dir, Path(info).name, text)
                except FileExistsError:
                    continue
                crash_point("info_written")
            try:
                link(candidate.name)
            except FileExistsError:
                if info is not None and opened.info_dir is not None:  # ours, written just above
                    name = Path(info).name
                    files.unlink_at(opened.info_dir, name, files.inode_at(opened.info_dir, name) or -1)
                continue
            return candidate
        raise OSError("no free name left for the destination")

    def _complete(self, row: Action, dest: Path) -> ActionResult:
        """Record a placed action done, with what it changes elsewhere, in one transaction."""
        decision, undone = None, None
        if row.kind == "restore":
            original = journal.get_action(self.db, row.undo_of)
            if original.info_path:  # before recording: a crash now leaves the restore open, to finish
                info = Path(original.info_path)
                found = files.stat_in(self._base_of(info), info)
                if found is not None:
                    files.unlink_in(self._base_of(info), info, found.st_ino)
            undone = row.undo_of
            if row.decision_id is not None:
                decision = (row.decision_id, {"state": state_after_action(row.kind, "done")})
        elif row.decision_id is not None:
            state = state_after_action(row.kind, "done")
            decision = (row.decision_id, {"state": state, "action_id": row.id, "reason": None})
        fields = {"state": "done", "dest": str(dest)}
        journal.record_outcome(self.db, row.id, fields, decision, undone)
        crash_point("recorded")
        result = self._row_result(journal.get_action(self.db, row.id))
        if self.on_done is not None:
            self.on_done(result)
        return result

    def _refuse(self, action_id: int, job: _Job, problem: str) -> ActionResult:
        decision = None
        if job.decision_id is not None and job.kind != "restore":
            decision = (
                job.decision_id,
                {"state": state_after_action(job.kind, "refused"), "reason": problem},
            )
        journal.record_outcome(self.db, action_id, {"state": "refused", "reason": problem}, decision)
        return self._result(action_id, job, "refused", None, problem)

    # --- recovery -------------------------------------------------------------------------------------

    def _resolve(self, row: Action, failure: str | None = None) -> ActionResult:
        """Look at the disk for one open action and finish it or roll it back."""
        # A trash or move placed a file at this name since: this one never got there, whatever is there now.
        holder = None if row.kind == "restore" else journal.action_holding(self.db, row.dest, row.id)
        try:
            seen = self._observe(row, claimed=holder is not None)
        except OSError as error:  # say so and touch nothing, rather than stop every other action
            reason = f"cannot look at the files: {error}"
            decision = self._decision_after_rollback(row, "failed", reason)
            journal.record_outcome(self.db, row.id, {"state": "failed", "reason": reason}, decision)
            return self._row_result(journal.get_action(self.db, row.id))
        verdict = "rollback" if holder is not None else recovery_decision(seen)
        try:
            if verdict == "finish":
                self._finish(row, seen)
                return self._complete(row, Path(row.dest))
            if verdict == "rollback":
                self._roll_back(row, seen, keep_info=holder is not None)
        except OSError as error:
            failure = f"recovery could not finish: {error}"
            verdict = "lost"
        if holder is not None and failure is None:
            reason = f"superseded by action {holder}, which holds {row.dest}"
            journal.record_outcome(self.db, row.id, {"state": "rolled_back", "reason": reason})
            return self._row_result(journal.get_action(self.db, row.id))
        state = "failed" if verdict == "lost" or failure else "rolled_back"
        lost = "neither the source nor the destination holds the file"
        reason = failure or (lost if verdict == "lost" else None)
        decision = self._decision_after_rollback(row, state, reason)
        journal.record_outcome(self.db, row.id, {"state": state, "reason": reason}, decision)
        return self._row_result(journal.get_action(self.db, row.id))

    def _observe(self, row: Action, claimed: bool = False) -> Observation:
        source, dest = Path(row.source), Path(row.dest)
        source_base, dest_base = self._base_of(source), self._base_of(dest)
        cross_fs = row.cross_fs
        dest_found = None if claimed else files.stat_in(dest_base, dest)
        temp_found = files.stat_in(dest_base, temp_path_for(dest, row.id)) if cross_fs else None
        source_found = files.stat_in(source_base, source)
        journaled = row.identity
        dest_hash_ok = None
        if cross_fs and dest_found is not None:
            dest_hash_ok = self._hash_or_none(dest_base, dest) == row.content_hash
        source_unchanged = source_found is not None and stat.S_ISREG(source_found.st_mode)
        return Observation(
            source_inode=source_found.st_ino if source_found else None,
            dest_inode=dest_found.st_ino if dest_found else None,
            temp_inode=temp_found.st_ino if temp_found else None,
            dest_hash_ok=dest_hash_ok,
            source_unchanged=source_unchanged and files.identity_of_stat(source_found) == journaled,
            cross_fs=cross_fs,
            journaled_inode=row.inode,
        )

    def _hash_or_none(self, base: Path, path: Path) -> str | None:
        try:
            with files.folder(base, path.parent.relative_to(base)) as parent:
                return self._hash_at(parent, path.name)
        except Exception:  # an unreadable destination is simply "not ours"
            return None

    def _finish(self, row: Action, seen: Observation) -> None:
        source, dest = Path(row.source), Path(row.dest)
        dest_base = self._base_of(dest)
        if seen.temp_inode is not None:
            files.unlink_in(dest_base, temp_path_for(dest, row.id), seen.temp_inode)
        with files.folder(dest_base, dest.parent.relative_to(dest_base)) as parent:
            os.fsync(parent)
        files.unlink_in(self._base_of(source), source, row.inode)

    def _roll_back(self, row: Action, seen: Observation, keep_info: bool = False) -> None:
        dest = Path(row.dest)
        dest_base = self._base_of(dest)
        if seen.temp_inode is not None:
            if seen.dest_inode == seen.temp_inode:
                files.unlink_in(dest_base, dest, seen.temp_inode)
            files.unlink_in(dest_base, temp_path_for(dest, row.id), seen.temp_inode)
        if row.info_path and not keep_info:
            info = Path(row.info_path)
            found = files.stat_in(self._base_of(info), info)
            if found is not None:
                files.unlink_in(self._base_of(info), info, found.st_ino)

    # --- bookkeeping ----------------------------------------------------------------------------------

    def _after_refusal(self, job: _Job, reason: str) -> None:
        if job.decision_id is not None and job.kind != "restore":
            journal.set_decision_state(self.db, job.decision_id, "refused", reason=reason)

    @staticmethod
    def _decision_after_rollback(
        row: Action, state: str, reason: str | None
    ) -> tuple[int, dict[str, Any]] | None:
        if row.decision_id is None or row.kind == "restore":
            return None
        after = state_after_action(row.kind, state)  # failed, or queued again after a roll back
        return row.decision_id, {"state": after, "reason": reason if after == "failed" else ROLLED_BACK}

    def _first_free(self, placement: Placement, opened: _Open) -> Path:
        return next(
            path for path in candidate_paths(placement.dest) if not self._taken(placement, opened, path)
        )

    def _taken(self, placement: Placement, opened: _Open, candidate: Path) -> bool:
        info = self._info_path(placement, candidate)
        if files.exists_at(opened.dest_dir, candidate.name):
            return True
        return (
            info is not None
            and opened.info_dir is not None
            and files.exists_at(opened.info_dir, Path(info).name)
        )

    @staticmethod
    def _info_path(placement: Placement, dest: Path) -> str | None:
        if placement.info_dir is None:
            return None
        return str(placement.info_dir / f"{dest.name}.trashinfo")

    def _original(self, action_id: int) -> Path:
        return Path(journal.get_action(self.db, action_id).source)

    @staticmethod
    def _result(
        action_id: int | None, job: _Job, state: str, dest: str | None, reason: str | None
    ) -> ActionResult:
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
    def _row_result(row: Action) -> ActionResult:
        return ActionResult(
            row.id,
            row.kind,
            row.state,
            row.source,
            row.dest,
            row.reason,
            row.decision_id,
            row.file_id,
            row.undo_of,
        )
