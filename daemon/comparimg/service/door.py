"""The one door from the web room to the core: settings, status, reads, decisions, apply, undo,
not-duplicates, decisions by rule, files to serve and scan jobs. The web room holds no settings, index,
sorter or scanner of its own: it asks here (`web.port.Core` is this door as the web sees it).

Writes run on the index's one writer thread (`Service.write`); decisions a person waits for take its
urgent lane, so they never wait for minutes of pair checks. Files that leave or come back through the
sorter are told to the scanner at once, so their rows and groups follow before the next scan.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from comparimg.config import Settings, deepest_root
from comparimg.decisions import DecisionInput
from comparimg.model import Conflict, Decision, FileIdentity
from comparimg.scanner import MatchOptions, Scanner, ScanOptions
from comparimg.service import bulk_actions, labelling
from comparimg.service import decision_queue as dq
from comparimg.service.jobs import JobRunner
from comparimg.service.learning import Learning
from comparimg.sorter import Sorter
from comparimg.sorter.files import open_indexed_file

if TYPE_CHECKING:
    from comparimg.service.daemon import Service

T = TypeVar("T")
Publish = Callable[[str, dict[str, Any]], None]


class Door:
    """The core as the web room reaches it (see the module docstring)."""

    def __init__(self, service: Service):
        self._service = service
        self._listeners: list[Publish] = []
        self.jobs = JobRunner(self, self.publish)
        self.learning = Learning(service.model_store, service.verifier, self.read)

    # ---- settings and status -----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """Return the settings in force (the service's; they change with SIGHUP and PATCH)."""
        return self._service.settings

    async def apply_settings(self, new: Settings) -> None:
        """Apply validated, saved settings to every room (what SIGHUP does after re-reading)."""
        await self._service.apply_settings(new)

    def status(self) -> dict[str, Any]:
        """Return the daemon's state, roots, queue depth, counters, uptime and last errors."""
        return self._service.status()

    def activity(self) -> dict[str, Any]:
        """Return what the daemon did since it started (for `export.daemon_stats`)."""
        return self._service.activity()

    def listen(self, publish: Publish) -> None:
        """Given where events go (the web's event hub), send it every job event from now on."""
        self._listeners.append(publish)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send an event to every listener."""
        for publish in self._listeners:
            publish(kind, data)

    # ---- reads and plain writes --------------------------------------------------------------------

    async def read(self, func: Callable[..., T], *args: Any) -> T:
        """Await `func(reader_index, *args)` on the index's reader pool."""
        readers = self._service.readers
        if readers is None:
            raise Conflict("the daemon's index is not open")
        return await readers.run(func, *args)

    async def write(self, func: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """Await `func(writer_index, *args)` on the index's one writer thread (urgent: between the tasks
        of a long job)."""
        return await self._service.write(_with_index, self._service, func, args, urgent=urgent)

    # ---- decisions ---------------------------------------------------------------------------------

    async def queue_decision(self, decision: DecisionInput) -> Decision:
        """Queue keep / trash / move for one file; return its row. Raise NotFound, Refused."""
        return await self.write(dq.queue_decision, decision, self.settings, urgent=True)

    async def not_duplicates(self, decision: DecisionInput, source: str = "not_duplicates") -> Decision:
        """Remember that no two of the decision's files are duplicates, regroup them, record the decision
        and its pairs' labels (`different`, given by `source`); return it. Raise NotFound, Refused."""
        ids = await self.write(dq.not_duplicates_ids, decision, self.settings, urgent=True)
        await self._service.write(self._with_scanner(_not_duplicates), ids, urgent=True)
        return await self.write(dq.record_not_duplicates, decision, ids, source, urgent=True)

    async def cancel_decision(self, decision_id: int) -> Decision:
        """Cancel a queued decision; return its row. Raise NotFound, Conflict."""
        return await self.write(dq.cancel_decision, decision_id, urgent=True)

    async def apply_decisions(self, ids: list[int] | None) -> list[dict[str, Any]]:
        """Apply queued decisions (all, or those among `ids`) through the sorter; return their outcomes.

        Both steps take the urgent lane: the files only leave, so the index only forgets them."""
        outcomes = await self.write(self._with_sorter(dq.apply_queue), ids, urgent=True)
        gone = [o["file_id"] for o in outcomes if o["state"] == "applied" and o["action_id"]]
        await self._files_moved([(f, None) for f in gone], urgent=True)
        return outcomes

    async def undo(self, action_id: int) -> dict[str, Any]:
        """Undo one action (put the file back); return the restore action. Raise NotFound, Conflict,
        Refused."""
        result = await self._service.write(self._sorter().undo, action_id)
        if result.state == "done" and result.file_id is not None:
            await self._files_moved([(result.file_id, result.dest)])
        return result.as_dict()

    # ---- the verifier model (service.learning) ----------------------------------------------------

    async def model(self) -> dict[str, Any]:
        """Return the verifier in use, the previous one's source, label counts and the last retraining."""
        return await self.learning.describe()

    async def retrain(self) -> dict[str, Any]:
        """Retrain from the user's labels, adopt the candidate if it validates; return the outcome. Raise
        Conflict while one runs."""
        return await self.learning.retrain()

    async def restore_model(self) -> dict[str, Any]:
        """Bring back the previous model; return it. Raise Conflict (none), ModelError (damaged)."""
        return await self.learning.restore()

    async def verdict(self, first: int, second: int) -> dict[str, Any]:
        """Return the verdict of the model in use on two indexed files. Raise NotFound."""
        return await self.learning.verdict(first, second)

    async def confirm_duplicates(self, group_id: int) -> dict[str, Any]:
        """Label a group's pairs (its leader with each member) `duplicate`. Raise NotFound."""
        return await self.write(labelling.label_group, group_id, "duplicate", "confirmed", urgent=True)

    async def not_similar(self, group_id: int) -> dict[str, Any]:
        """Mark a group's files not duplicates (the group goes away) and label their pairs `different`;
        return {"group_id", "label", "file_ids", "decision" (a `Decision`)}. Raise NotFound, Refused."""
        decision = DecisionInput("not_duplicates", group_id=group_id)
        row = await self.not_duplicates(decision, "not_similar")
        ids = list(row.file_ids or ())
        return {"group_id": group_id, "label": "different", "file_ids": ids, "decision": row}

    # ---- decisions by rule -------------------------------------------------------------------------

    async def store_preview(self, rule: Any, plans: list, skipped: dict[str, int]) -> int:
        """Store a rule's preview; return its batch id."""
        return await self.write(bulk_actions.store_preview, rule, plans, skipped)

    async def apply_chunk(self, batch_id: int, limit: int) -> list[dict[str, Any]]:
        """Apply up to `limit` files of a batch through the sorter; return their outcomes."""
        outcomes = await self.write(self._with_sorter(bulk_actions.apply_chunk), batch_id, limit)
        await self._files_moved([(o["file_id"], None) for o in outcomes if o["state"] == "applied"])
        return outcomes

    async def undo_chunk(self, batch_id: int, after: int, limit: int) -> tuple[list, list[str], int]:
        """Undo up to `limit` actions of a batch above `after`; return (restored, problems, last id)."""
        restored, problems, last = await self.write(
            self._with_sorter(bulk_actions.undo_chunk), batch_id, after, limit
        )
        await self._files_moved(restored)
        return restored, problems, last

    # ---- files to serve ----------------------------------------------------------------------------

    async def open_file(self, path: str, identity: FileIdentity) -> int:
        """Return a read-only descriptor of an indexed file inside the roots in force, opened without
        following symlinks and matched with its identity. Raise NotFound, Refused, Conflict."""
        roots = self.settings.root_paths()
        return await asyncio.to_thread(open_indexed_file, path, identity, roots)

    # ---- jobs (`service.jobs.Daemon`) --------------------------------------------------------------

    def scan_options(self) -> ScanOptions:
        """Return the scanner's options in force. Raise Conflict when the pipeline is not running."""
        return self._scanner().options

    async def ingest_files(self, found: list[tuple[str, str]], match: MatchOptions) -> dict[str, Any]:
        """Ingest (path, root) pairs through the daemon's one scanner with these matching options."""
        report = await self._service.write(self._with_scanner(Scanner.ingest_files), found, match)
        return report.as_dict()

    def count_report(self, report: dict[str, Any]) -> None:
        """Add a job batch's report to the daemon's totals."""
        self._service.count_report(report)

    async def close(self) -> None:
        """Cancel every job and wait for them to stop."""
        await self.jobs.close()

    # ---- internals ---------------------------------------------------------------------------------

    def _sorter(self) -> Sorter:
        sorter = self._service.sorter
        if sorter is None:
            raise Conflict("the daemon's sorter is not running")
        return sorter

    def _scanner(self) -> Scanner:
        pipeline = self._service.pipeline
        scanner = getattr(pipeline, "scanner", None)
        if scanner is None:
            raise Conflict("the daemon's pipeline is not running")
        return scanner

    def _with_sorter(self, func: Callable[..., T]) -> Callable[..., T]:
        """Given func(index, sorter, *args), return func(index, *args) with the sorter in force."""
        return lambda index, *args: func(index, self._sorter(), *args)

    def _with_scanner(self, func: Callable[..., T]) -> Callable[..., T]:
        """Given func(scanner, *args), return func(*args) run with the scanner in force (read on the
        writer thread, where a reload swaps it)."""
        return lambda *args: func(self._scanner(), *args)

    async def _files_moved(self, moves: list[tuple[int, str | None]], urgent: bool = False) -> None:
        """Tell the index that files left their path (None: trashed or moved out of the roots) or came back
        (a path, after an undo), so their rows and groups follow at once rather than at the next scan."""
        if moves and self._service.pipeline is not None:
            roots = self.settings.root_paths()
            await self._service.write(self._with_scanner(_files_moved), moves, roots, urgent=urgent)


def _with_index(service: Service, func: Callable[..., T], args: tuple) -> T:
    return func(service.index, *args)


def _files_moved(scanner: Scanner, moves: list[tuple[int, str | None]], roots: tuple[Path, ...]) -> None:
    gone: list[str] = []
    back: list[tuple[str, str]] = []
    for file_id, new_path in moves:
        row = scanner.index.file_by_id(file_id)
        if new_path is None:
            if row is not None and not os.path.lexists(row.path):
                gone.append(row.path)
            continue
        root = deepest_root(new_path, roots)
        if root is not None:
            back.append((new_path, root))
    if gone:
        scanner.forget_paths(gone)
    if back:
        scanner.ingest_files(back)


def _not_duplicates(scanner: Scanner, file_ids: list[int]) -> None:
    ids = sorted(set(file_ids))
    now = time.time()
    with scanner.index.transaction(durable=True):
        for position, first in enumerate(ids):
            for second in ids[position + 1 :]:
                scanner.index.add_not_duplicate(first, second, now)
    scanner.linker.regroup(ids)
