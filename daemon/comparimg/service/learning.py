"""The learning loop as the door runs it: retrain the verifier from the user's labels, adopt it or not by the
adoption rule (verdicts.retraining), restore the previous model, judge a pair with the model in use.

A retraining reads the labels on a reader thread and fits in a worker thread (seconds of numpy), so neither
the event loop nor the index writer waits for it; one runs at a time (a second asks get Conflict).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from comparimg.index import Index
from comparimg.model import Conflict, NotFound
from comparimg.service import labelling
from comparimg.verdicts import retraining
from comparimg.verdicts.features import FEATURE_COUNT
from comparimg.verdicts.store import ModelInUse, ModelStore, VerifierHolder
from comparimg.verdicts.verifier import Verifier

Read = Callable[..., Awaitable[Any]]  # read(func, *args): func(reader_index, *args) on the reader pool

log = logging.getLogger("comparimg.web")


class Learning:
    """Retrains, restores and describes the verifier in use for one app."""

    def __init__(self, store: ModelStore, holder: VerifierHolder, read: Read):
        self.store = store
        self.holder = holder
        self.read = read
        self._lock = asyncio.Lock()
        self._shipped_pairs: retraining.ShippedPairs | None = None

    @property
    def running(self) -> bool:
        """Return whether a retraining is running now."""
        return self._lock.locked()

    async def describe(self) -> dict[str, Any]:
        """Return `GET /api/model`: the model in use, the previous one's source, the label counts, whether a
        retraining runs and the last retraining's outcome."""
        counts = await self.read(_label_counts)
        last, previous = await asyncio.to_thread(
            lambda: (self.store.last_retrain(), self.store.previous_source())
        )
        return {
            "verifier": self.holder.describe(),
            "previous": previous,
            "labels": counts | {"needed": retraining.MIN_LABELS},
            "retraining": {"running": self.running, "last": last},
        }

    async def retrain(self) -> dict[str, Any]:
        """Retrain from every label, adopt the candidate when the adoption rule accepts it (it becomes the
        model in use at once); return the outcome {"at", "adopted", "reason", "labels", "figures",
        "verifier"}. Raise Conflict when a retraining is already running."""
        if self._lock.locked():
            raise Conflict("a retraining is already running")
        async with self._lock:
            labels = await self.read(_labels)
            current = self.holder.current
            outcome, adopted = await asyncio.to_thread(self._retrain, labels, current)
            if adopted is not None:
                self.holder.swap(await asyncio.to_thread(self.store.adopt, adopted, outcome))
            else:
                await asyncio.to_thread(self.store.record_outcome, outcome)
            log.info(
                "event=model_retrained adopted=%s labels=%d reason=%r",
                outcome["adopted"],
                outcome["labels"],
                outcome["reason"],
            )
            return outcome | {"verifier": self.holder.in_use.describe()}

    def _retrain(
        self, labels: tuple[np.ndarray, list[str]], current: Verifier
    ) -> tuple[dict[str, Any], Verifier | None]:
        """Return (the outcome, the candidate when the adoption rule accepts it, else None)."""
        rows, names = labels
        summary: dict[str, Any] = {"at": time.time(), "labels": len(names)}
        if len(names) < retraining.MIN_LABELS:
            reason = f"too few labels: {len(names)} (at least {retraining.MIN_LABELS})"
            return summary | {"adopted": False, "reason": reason, "figures": None}, None
        if self._shipped_pairs is None:
            self._shipped_pairs = retraining.ShippedPairs.load()
        result = retraining.retrain(self._shipped_pairs, rows, names, current)
        summary |= {"adopted": result.adopted, "reason": result.reason, "figures": result.figures}
        return summary, result.candidate if result.adopted else None

    async def restore(self) -> dict[str, Any]:
        """Make the previous model the one in use; return {"verifier", "previous"}. Raise Conflict when
        there is none or a retraining runs, ModelError when its file cannot be loaded."""
        if self._lock.locked():
            raise Conflict("a retraining is running: restore once it is done")
        async with self._lock:
            in_use: ModelInUse = await asyncio.to_thread(self.store.restore)
            self.holder.swap(in_use)
            previous = await asyncio.to_thread(self.store.previous_source)
        log.info("event=model_restored source=%s sha256=%s", in_use.source, in_use.sha256)
        return {"verifier": in_use.describe(), "previous": previous}

    async def verdict(self, first: int, second: int) -> dict[str, Any]:
        """Given two file ids, return the verdict of the model in use on their stored fingerprints (and
        embeddings): {"a", "b", "label", "confidence", "probabilities", "source"}. Raise NotFound when
        either file has no fingerprint."""
        row = await self.read(_features_of_pair, first, second)
        in_use = self.holder.in_use
        verdict = in_use.verifier.judge(row)
        probabilities = dict(zip(in_use.verifier.labels, verdict.probabilities, strict=True))
        return {"a": first, "b": second, "label": verdict.label, "confidence": verdict.confidence,
                "probabilities": probabilities, "source": in_use.source}  # fmt: skip


def _features_of_pair(index: Index, first: int, second: int) -> np.ndarray:
    row = labelling.features_of_pair(index, first, second)
    if row is None:
        raise NotFound(f"files {first} and {second} are not both indexed with a fingerprint")
    return row


def _labels(index: Index) -> tuple[np.ndarray, list[str]]:
    stored = index.pair_labels(FEATURE_COUNT)
    rows = np.array([label.features for label in stored]).reshape(-1, FEATURE_COUNT)
    return rows, [label.label for label in stored]


def _label_counts(index: Index) -> dict[str, Any]:
    counts = index.label_counts()
    return {"total": sum(counts["by_label"].values()), **counts}
