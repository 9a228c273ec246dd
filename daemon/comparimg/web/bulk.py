"""Decisions by rule for many groups at once: preview the exact set, apply it as one batch, undo the batch.

The writer-thread functions (`store_preview`, `apply_chunk`, `undo_chunk`) hold no HTTP; `BatchRunner` runs
one batch at a time on the event loop, a chunk of files per trip to the daemon's single writer thread (so
scans, decisions and `/api/status` keep answering), publishes progress as `batch` events and stops between
chunks when cancelled. A batch whose daemon died half-way stays `applying` (every action in it was
recovered by the sorter at start): confirming it again finishes it, undoing it puts back what moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from comparimg.config import Settings
from comparimg.decisions import BulkRule, plan_bulk, summarize_plans
from comparimg.index import Index, bulk, journal
from comparimg.model import Conflict, FileIdentity, NotFound, Refused
from comparimg.sorter import Sorter, SortRequest
from comparimg.web import labelling, port
from comparimg.web.keys import (
    DAEMON,
    EVENTS,
    METRICS,
    READERS,
    WRITER,
    current_settings,
    current_sorter,
)

log = logging.getLogger("comparimg.web")
CHUNK = 40  # files per trip to the writer thread: small enough that other writes wait well under a second
SAMPLE_GROUPS = 8
PREVIEW_TTL_SECONDS = 3600.0
BATCH_STATES = ("previewed", "applying", "cancelled", "applied", "undoing", "undone", "discarded")
RESUMABLE = ("previewed", "applying", "cancelled")
UNDOABLE = ("applying", "cancelled", "applied", "undoing", "undone")
_RESULT_STATES = {"done": "applied", "refused": "refused", "failed": "failed", "rolled_back": "failed"}
_DECISION_TO_ITEM = {"applied": "applied", "refused": "refused", "failed": "failed", "undone": "undone"}


# --- on a reader / the writer thread ----------------------------------------------------------------------


def plan_rule(index: Index, rule: BulkRule, settings: Settings) -> tuple[list, dict[str, int]]:
    """Given a reader, a rule and the settings in force, return (plans, skipped counts) for the rule."""
    references = [str(root.path) for root in settings.roots if root.reference]
    return plan_bulk(rule, bulk.candidate_groups(index.db, rule.kinds, references))


def store_preview(index: Index, rule: BulkRule, plans: list, skipped: dict[str, int]) -> int:
    """Given the writer, a rule, its plans and what it left alone, store the preview; return its id."""
    summary = {**summarize_plans(plans), "skipped": skipped}
    return bulk.create_batch(index.db, rule.as_dict(), summary, plans, rule.target)


def apply_chunk(index: Index, sorter: Sorter, batch_id: int, limit: int) -> list[dict[str, Any]]:
    """Apply up to `limit` pending items of a batch through the sorter; return {"file_id", "action",
    "state"} for each."""
    outcomes = []
    for item in bulk.pending_items(index.db, batch_id, limit):
        state = apply_item(index, sorter, batch_id, item)
        outcomes.append({"file_id": item["file_id"], "action": item["action"], "state": state})
    return outcomes


def apply_item(index: Index, sorter: Sorter, batch_id: int, item: dict[str, Any]) -> str:
    """Apply one previewed file: refuse it if its group was decided since or its keeper is gone, else trash
    or move it (the sorter re-checks its identity and content). Return the item's new state."""
    db = index.db
    decision_id = item["decision_id"]
    if decision_id is not None:  # attached before a stop: the sorter's journal says how it ended
        decision = journal.get_decision(db, decision_id)
        if decision["state"] != "queued":
            state = _DECISION_TO_ITEM.get(decision["state"], "refused")
            bulk.finish_item(db, item["id"], state, decision["action_id"], decision["reason"])
            return state
    problem = _why_stale(index, item, decision_id)
    if problem is not None:
        if decision_id is not None:
            journal.set_decision_state(db, decision_id, "refused", reason=problem)
        bulk.finish_item(db, item["id"], "refused", reason=problem)
        return "refused"
    if decision_id is None:
        decision_id = bulk.attach_decision(db, item)
    identity = FileIdentity(item["device"], item["inode"], item["size"], item["mtime_ns"])
    request = SortRequest(
        item["action"],
        Path(item["path"]),
        identity,
        item["content_hash"],
        item["target"],
        decision_id,
        item["file_id"],
        batch_id,
    )
    try:
        result = sorter.apply(request)
    except Refused as error:
        journal.set_decision_state(db, decision_id, "refused", reason=str(error))
        bulk.finish_item(db, item["id"], "refused", reason=str(error))
        return "refused"
    state = _RESULT_STATES[result.state]
    if result.state == "done":  # a copy gone with its keeper left: a duplicate pair to learn from
        labelling.label_bulk_item(index, item)
    if result.state == "rolled_back":  # not left queued: the batch, not the queue, owns this decision
        journal.set_decision_state(db, decision_id, "failed", reason=result.reason)
    bulk.finish_item(db, item["id"], state, result.action_id, result.reason)
    return state


def _why_stale(index: Index, item: dict[str, Any], own_decision: int | None) -> str | None:
    """Return why a previewed file must not move now (its group was decided since, or the copy to keep is
    gone), or None."""
    keepers = json.loads(item["keeper_ids"])
    if bulk.decided_since(index.db, [item["file_id"], *keepers], own_decision):
        return "the group was decided since the preview"
    rows = index.files_by_ids(keepers)
    if len(rows) != len(keepers):
        return "the copy to keep is no longer indexed"
    for keeper in rows.values():
        if keeper.state != "ok" or not os.path.isfile(keeper.path):
            return f"the copy to keep ({keeper.path}) is no longer there"
    return None


def undo_chunk(
    index: Index, sorter: Sorter, batch_id: int, after: int, limit: int
) -> tuple[list[tuple[int, str]], list[str], int]:
    """Undo up to `limit` done actions of a batch with ids above `after`; return (restored (file id, path),
    problems, the last action id looked at)."""
    restored: list[tuple[int, str]] = []
    problems: list[str] = []
    undone: list[int] = []
    last = after
    for row in bulk.done_actions(index.db, batch_id, after, limit):
        last = row["id"]
        try:
            result = sorter.undo(row["id"], batch_id)
        except (Refused, Conflict, NotFound) as error:
            problems.append(f"action {row['id']}: {error}")
            continue
        if result.state == "done":
            undone.append(row["id"])
            if result.file_id is not None and result.dest:
                restored.append((result.file_id, result.dest))
        else:
            problems.append(f"action {row['id']}: {result.reason}")
    bulk.mark_items_undone(index.db, undone)
    return restored, problems, last


def batch_view(index: Index, batch_id: int, running: bool) -> dict[str, Any]:
    """Given a reader and a batch id, return the batch as the API shows it: rule, state, preview figures,
    progress and a sample of its groups. Raise NotFound."""
    batch = bulk.get_batch(index.db, batch_id)
    counts = bulk.item_counts(index.db, batch_id)
    return {
        "id": batch["id"],
        "preview_id": batch["id"],
        "state": batch["state"],
        "running": running,
        "rule": batch["rule"],
        "reason": batch["reason"],
        "created": batch["created"],
        "updated": batch["updated"],
        "expires": batch["created"] + PREVIEW_TTL_SECONDS,
        **batch["summary"],
        "progress": {"total": sum(counts.values()), **counts},
        "sample": _sample(index, batch_id),
    }


def _sample(index: Index, batch_id: int) -> list[dict[str, Any]]:
    items = bulk.sample_items(index.db, batch_id, SAMPLE_GROUPS)
    keeper_ids = {k for item in items for k in json.loads(item["keeper_ids"])}
    keepers = index.files_by_ids(keeper_ids)
    groups: dict[int, dict[str, Any]] = {}
    for item in items:
        group = groups.get(item["group_id"])
        if group is None:
            ids = json.loads(item["keeper_ids"])
            group = groups[item["group_id"]] = {
                "group_id": item["group_id"],
                "keep": [_file_view(k, keepers[k].path if k in keepers else "", None) for k in ids],
                "remove": [],
            }
        group["remove"].append(_file_view(item["file_id"], item["path"], item))
    return list(groups.values())


def _file_view(file_id: int, path: str, item: dict[str, Any] | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "file_id": file_id,
        "path": path,
        "thumbnail_url": f"/api/files/{file_id}/thumbnail",
    }
    if item is not None:
        view.update(size=item["size"], state=item["state"], reason=item["reason"])
    return view


# --- on the event loop -------------------------------------------------------------------------------------


class BatchRunner:
    """Previews rules and runs batches, one at a time, for the web app it belongs to."""

    def __init__(self, app: web.Application):
        self.app = app
        self._tasks: dict[int, asyncio.Task] = {}
        self._cancelled: set[int] = set()

    async def preview(self, rule: BulkRule) -> dict[str, Any]:
        """Given a checked rule, store its preview and return it. Raise Refused for an unknown target."""
        settings = current_settings(self.app)
        if rule.action == "move" and rule.target not in settings.sorter.move_targets:
            targets = sorted(settings.sorter.move_targets)
            raise Refused(f"unknown move target {rule.target!r}; configured: {targets}")
        plans, skipped = await self.app[READERS].run(plan_rule, rule, settings)
        batch_id = await self._write(store_preview, self.app[WRITER], rule, plans, skipped)
        view = await self.view(batch_id)
        log.info(
            "event=bulk_preview batch=%d rule=%s groups=%d files=%d bytes=%d",
            batch_id,
            json.dumps(rule.as_dict()),
            view["groups"],
            view["files"],
            view["bytes"],
        )
        return view

    async def view(self, batch_id: int) -> dict[str, Any]:
        """Return one batch with its progress. Raise NotFound."""
        return await self.app[READERS].run(batch_view, batch_id, batch_id in self._tasks)

    async def recent(self) -> list[dict[str, Any]]:
        """Return the newest batches (without their samples)."""
        rows = await self.app[READERS].run(lambda index: bulk.list_batches(index.db))
        return [{"id": b["id"], "state": b["state"], "rule": b["rule"], **b["summary"]} for b in rows]

    async def apply(self, batch_id: int) -> dict[str, Any]:
        """Start applying (or finishing) the previewed set of `batch_id`; return the batch.

        Raise NotFound, Conflict when it is running, expired, or applied / undone already.
        """
        batch = await self._idle_batch(batch_id)
        if batch["state"] not in RESUMABLE:
            raise Conflict(f"batch {batch_id} is {batch['state']}; preview the rule again")
        if batch["state"] == "previewed" and time.time() > batch["created"] + PREVIEW_TTL_SECONDS:
            raise Conflict(f"preview {batch_id} expired; preview the rule again")
        await self._write(bulk.set_batch_state, self.app[WRITER].db, batch_id, "applying")
        self._start(batch_id, self._run_apply(batch_id))
        return await self.view(batch_id)

    async def undo(self, batch_id: int) -> dict[str, Any]:
        """Start putting back every file the batch moved; return the batch. Raise NotFound, Conflict."""
        batch = await self._idle_batch(batch_id)
        if batch["state"] not in UNDOABLE:
            raise Conflict(f"batch {batch_id} is {batch['state']}; nothing of it moved")
        await self._write(bulk.set_batch_state, self.app[WRITER].db, batch_id, "undoing")
        self._start(batch_id, self._run_undo(batch_id))
        return await self.view(batch_id)

    async def cancel(self, batch_id: int) -> dict[str, Any]:
        """Stop a running batch after its current chunk, or discard a preview; return the batch.
        Raise NotFound, Conflict for a batch neither running nor previewed."""
        if batch_id in self._tasks:
            self._cancelled.add(batch_id)
            return await self.view(batch_id)
        batch = await self.view(batch_id)
        if batch["state"] != "previewed":
            raise Conflict(f"batch {batch_id} is {batch['state']}, not running")
        await self._write(bulk.set_batch_state, self.app[WRITER].db, batch_id, "discarded")
        return await self.view(batch_id)

    async def close(self) -> None:
        """Stop every running batch between two chunks (it stays resumable) and wait for it."""
        self._cancelled.update(self._tasks)
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 60)

    # --- internals ----------------------------------------------------------------------------------------

    async def _write(self, func: Any, *args: Any) -> Any:
        return await self.app[DAEMON].write(func, *args)

    async def _idle_batch(self, batch_id: int) -> dict[str, Any]:
        batch = await self.view(batch_id)
        if batch_id in self._tasks:
            raise Conflict(f"batch {batch_id} is running")
        if self._tasks:
            raise Conflict(f"batch {next(iter(self._tasks))} is running; one batch at a time")
        return batch

    def _start(self, batch_id: int, work: Any) -> None:
        self._cancelled.discard(batch_id)
        task = asyncio.ensure_future(work)
        self._tasks[batch_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(batch_id, None))

    async def _publish(self, batch_id: int) -> None:
        view = await self.app[READERS].run(batch_view, batch_id, True)
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})

    async def _run_apply(self, batch_id: int) -> None:
        writer = self.app[WRITER]
        try:
            while batch_id not in self._cancelled:
                sorter = current_sorter(self.app)
                outcomes = await self._write(apply_chunk, writer, sorter, batch_id, CHUNK)
                if not outcomes:
                    break
                for outcome in outcomes:
                    self.app[METRICS].actions.labels(outcome["action"], outcome["state"]).inc()
                gone = [(o["file_id"], None) for o in outcomes if o["state"] == "applied"]
                await port.files_moved(self.app[DAEMON], gone, current_settings(self.app).root_paths())
                await self._publish(batch_id)
            state = "cancelled" if batch_id in self._cancelled else "applied"
            await self._write(bulk.set_batch_state, writer.db, batch_id, state)
        except Exception as error:  # the loop boundary: the batch stays `applying`, to finish or undo
            log.exception("event=bulk_apply_failed batch=%d", batch_id)
            await self._write(bulk.set_batch_state, writer.db, batch_id, "applying", f"stopped: {error}")
        finally:
            self._cancelled.discard(batch_id)
        view = await self.app[READERS].run(batch_view, batch_id, False)
        log.info(
            "event=bulk_applied batch=%d state=%s progress=%s", batch_id, view["state"], view["progress"]
        )
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})

    async def _run_undo(self, batch_id: int) -> None:
        writer = self.app[WRITER]
        problems: list[str] = []
        after = 0
        try:
            while True:
                sorter = current_sorter(self.app)
                restored, trouble, last = await self._write(
                    undo_chunk, writer, sorter, batch_id, after, CHUNK
                )
                if last == after:
                    break
                after = last
                problems.extend(trouble)
                self.app[METRICS].actions.labels("restore", "done").inc(len(restored))
                await port.files_moved(self.app[DAEMON], restored, current_settings(self.app).root_paths())
                await self._publish(batch_id)
            reason = f"{len(problems)} file(s) not put back: {'; '.join(problems[:5])}" if problems else None
            await self._write(bulk.set_batch_state, writer.db, batch_id, "undone", reason)
        except Exception as error:  # the loop boundary: undo again to finish
            log.exception("event=bulk_undo_failed batch=%d", batch_id)
            await self._write(bulk.set_batch_state, writer.db, batch_id, "undoing", f"stopped: {error}")
        view = await self.app[READERS].run(batch_view, batch_id, False)
        log.info("event=bulk_undone batch=%d state=%s reason=%r", batch_id, view["state"], view["reason"])
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})
