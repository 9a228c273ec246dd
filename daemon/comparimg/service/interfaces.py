"""What the service is built from: the ingest pipeline it drives, the companion it starts (the web app)
and the counters it keeps."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from comparimg.config import Settings
from comparimg.index import Index
from comparimg.verdicts.verifier import Verifier

if TYPE_CHECKING:
    from comparimg.service.daemon import Service


class Pipeline(Protocol):
    """What the service needs from the ingest room; `ScannerPipeline` implements it over `Scanner`.

    Every method runs on the service's single writer thread, except `write_export`, which runs on the
    export thread and reads through a connection of its own.
    """

    def ingest(self, found: list[tuple[str, str]]) -> dict[str, Any]: ...
    def move(self, source: str, destination: str, root: str) -> dict[str, Any]: ...
    def forget(self, paths: list[str]) -> int: ...
    def reconcile(self, root: str) -> dict[str, Any]: ...
    def write_export(self, target: Path, activity: dict[str, Any]) -> int: ...
    def embedding_status(self) -> dict[str, Any]: ...
    def links_waiting(self) -> bool: ...
    def link_waiting(self) -> int: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


# Called with the settings, the process's one writer Index, the service's stop event and its urgent lane's
# drain. Once the event is set, `ingest` and `reconcile` give up within a fraction of a second (raising
# `Cancelled`) and what they left undone is reconciled at next start. The drain runs the urgent writer jobs
# waiting (`Service.write(..., urgent=True)`): the pipeline calls it between the tasks of its long jobs,
# with no transaction open. The last argument gives the verifier in use (`verdicts.store.VerifierHolder`),
# asked at each link so that a retrained model judges from the next link on.
PipelineFactory = Callable[
    [Settings, Index, threading.Event, Callable[[], None], Callable[[], Verifier]], Pipeline
]
# Called once the service runs; returns a coroutine function that stops what it started (the web app).
Companion = Callable[["Service"], Awaitable[Callable[[], Awaitable[None]]]]


@dataclass
class Stats:
    """Counters for status lines and the API."""

    hashed: int = 0
    rehashed: int = 0
    unchanged: int = 0
    moved: int = 0
    verified: int = 0
    deleted: int = 0
    reconciles: int = 0
    overflows: int = 0
    exports: int = 0
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=10))  # the last ones, for the status

    def add_report(self, report: dict[str, Any]) -> None:
        """Given what one ingest, reconcile or job batch did (a `ScanReport.as_dict()`), add it to the
        totals since the daemon started."""
        for name in ("hashed", "rehashed", "unchanged", "moved", "verified"):
            setattr(self, name, getattr(self, name) + int(report.get(name) or 0))
