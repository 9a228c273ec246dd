"""Decisions by rule for many groups at once: preview the exact set, apply it as one batch, undo the batch.

The writer-thread steps (`service.bulk_actions`, through the door) hold no HTTP; `BatchRunner` runs one
batch at a time on the event loop, a chunk of files per trip to the daemon's single writer thread (so
scans, decisions and `/api/status` keep answering), publishes progress as `batch` events and stops between
chunks when cancelled. A batch whose daemon died half-way stays `applying` (every action in it was
recovered by the sorter at start): confirming it again finishes it, undoing it puts back what moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from comparimg.config import Settings
from comparimg.decisions import BulkRule, plan_bulk
from comparimg.index import Index, bulk
from comparimg.model import Conflict, Refused
from comparimg.web.keys import CORE, EVENTS, METRICS, current_settings

log = logging.getLogger("comparimg.web")
CHUNK = 40  # files per trip to the writer thread: small enough that other writes wait well under a second
SAMPLE_GROUPS = 8
PREVIEW_TTL_SECONDS = 3600.0
BATCH_STATES = ("previewed", "applying", "cancelled", "applied", "undoing", "undone", "discarded")
RESUMABLE = ("previewed", "applying", "cancelled")
UNDOABLE = ("applying", "cancelled", "applied", "undoing", "undone")


# --- on a reader / the writer thread ----------------------------------------------------------------------


def plan_rule(index: Index, rule: BulkRule, settings: Settings) -> tuple[list, dict[str, int]]:
    """Given a reader, a rule and the settings in force, return (plans, skipped counts) for the rule."""
    references = [str(root.path) for root in settings.roots if root.reference]
    return plan_bulk(rule, bulk.candidate_groups(index.db, rule.kinds, references))


def _set_batch_state(index: Index, batch_id: int, state: str, reason: str | None) -> None:
    bulk.set_batch_state(index.db, batch_id, state, reason)


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
        plans, skipped = await self.app[CORE].read(plan_rule, rule, settings)
        batch_id = await self.app[CORE].store_preview(rule, plans, skipped)
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
        return await self.app[CORE].read(batch_view, batch_id, batch_id in self._tasks)

    async def recent(self) -> list[dict[str, Any]]:
        """Return the newest batches (without their samples)."""
        rows = await self.app[CORE].read(lambda index: bulk.list_batches(index.db))
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
        await self._set_state(batch_id, "applying")
        self._start(batch_id, self._run_apply(batch_id))
        return await self.view(batch_id)

    async def undo(self, batch_id: int) -> dict[str, Any]:
        """Start putting back every file the batch moved; return the batch. Raise NotFound, Conflict."""
        batch = await self._idle_batch(batch_id)
        if batch["state"] not in UNDOABLE:
            raise Conflict(f"batch {batch_id} is {batch['state']}; nothing of it moved")
        await self._set_state(batch_id, "undoing")
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
        await self._set_state(batch_id, "discarded")
        return await self.view(batch_id)

    async def close(self) -> None:
        """Stop every running batch between two chunks (it stays resumable) and wait for it."""
        self._cancelled.update(self._tasks)
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 60)

    # --- internals ----------------------------------------------------------------------------------------

    async def _set_state(self, batch_id: int, state: str, reason: str | None = None) -> None:
        await self.app[CORE].write(_set_batch_state, batch_id, state, reason)

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
        view = await self.app[CORE].read(batch_view, batch_id, True)
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})

    async def _run_apply(self, batch_id: int) -> None:
        try:
            while batch_id not in self._cancelled:
                outcomes = await self.app[CORE].apply_chunk(batch_id, CHUNK)
                if not outcomes:
                    break
                for outcome in outcomes:
                    self.app[METRICS].actions.labels(outcome["action"], outcome["state"]).inc()
                await self._publish(batch_id)
            state = "cancelled" if batch_id in self._cancelled else "applied"
            await self._set_state(batch_id, state)
        except Exception as error:  # the loop boundary: the batch stays `applying`, to finish or undo
            log.exception("event=bulk_apply_failed batch=%d", batch_id)
            await self._set_state(batch_id, "applying", f"stopped: {error}")
        finally:
            self._cancelled.discard(batch_id)
        view = await self.app[CORE].read(batch_view, batch_id, False)
        log.info(
            "event=bulk_applied batch=%d state=%s progress=%s", batch_id, view["state"], view["progress"]
        )
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})

    async def _run_undo(self, batch_id: int) -> None:
        problems: list[str] = []
        after = 0
        try:
            while True:
                restored, trouble, last = await self.app[CORE].undo_chunk(batch_id, after, CHUNK)
                if last == after:
                    break
                after = last
                problems.extend(trouble)
                self.app[METRICS].actions.labels("restore", "done").inc(len(restored))
                await self._publish(batch_id)
            reason = f"{len(problems)} file(s) not put back: {'; '.join(problems[:5])}" if problems else None
            await self._set_state(batch_id, "undone", reason)
        except Exception as error:  # the loop boundary: undo again to finish
            log.exception("event=bulk_undo_failed batch=%d", batch_id)
            await self._set_state(batch_id, "undoing", f"stopped: {error}")
        view = await self.app[CORE].read(batch_view, batch_id, False)
        log.info("event=bulk_undone batch=%d state=%s reason=%r", batch_id, view["state"], view["reason"])
        view.pop("sample")
        self.app[EVENTS].publish("batch", {"batch": view})
