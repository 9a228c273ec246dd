"""The one door from the web room to the core, as the web sees it: `service.door.Door` implements it.

`cli run` passes a companion to the service; once the service runs, the companion calls
`web.create_app(service.door, config_path=...)` and starts it on the same loop. The web room holds no
settings, index writer, reader pool, sorter or scanner of its own: it reads the settings in force, runs
reads and writes, and asks for decisions, applies, undos, not-duplicates and jobs through this door. (An
import-linter contract in pyproject.toml keeps it from importing the scanner, the sorter or the index's
internals.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from comparimg.config import Settings
from comparimg.decisions import DecisionInput
from comparimg.model import Decision, FileIdentity
from comparimg.service.jobs import JobRunner

T = TypeVar("T")


class Core(Protocol):
    """The core as the web room sees it."""

    jobs: JobRunner

    @property
    def settings(self) -> Settings:
        """Return the settings in force (they change with SIGHUP and `PATCH /api/config`)."""
        ...

    async def apply_settings(self, new: Settings) -> None:
        """Apply validated, saved settings to every room (what SIGHUP does after re-reading)."""
        ...

    def status(self) -> dict[str, Any]:
        """Return {"state", "version", "uptime_seconds", "roots", "queue_depth", "hashed", "last_errors"…}."""
        ...

    def activity(self) -> dict[str, Any]:
        """Return what the daemon did since it started (for `export.daemon_stats`)."""
        ...

    def listen(self, publish: Callable[[str, dict[str, Any]], None]) -> None:
        """Send every core event (jobs) to `publish` from now on."""
        ...

    async def read(self, func: Callable[..., T], *args: Any) -> T:
        """Await `func(reader_index, *args)` on the index's reader pool."""
        ...

    async def write(self, func: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """Await `func(writer_index, *args)` on the index's one writer thread."""
        ...

    async def queue_decision(self, decision: DecisionInput) -> Decision:
        """Queue keep / trash / move for one file; return the decision."""
        ...

    async def not_duplicates(self, decision: DecisionInput) -> Decision:
        """Mark files as not duplicates of each other, regroup them; return the decision."""
        ...

    async def cancel_decision(self, decision_id: int) -> Decision:
        """Cancel a queued decision; return it."""
        ...

    async def apply_decisions(self, ids: list[int] | None) -> list[dict[str, Any]]:
        """Apply queued decisions through the sorter; return their outcomes."""
        ...

    async def undo(self, action_id: int) -> dict[str, Any]:
        """Undo one action; return the restore action."""
        ...

    async def store_preview(self, rule: Any, plans: list, skipped: dict[str, int]) -> int:
        """Store a rule's preview; return its batch id."""
        ...

    async def apply_chunk(self, batch_id: int, limit: int) -> list[dict[str, Any]]:
        """Apply up to `limit` files of a batch; return their outcomes."""
        ...

    async def undo_chunk(self, batch_id: int, after: int, limit: int) -> tuple[list, list[str], int]:
        """Undo up to `limit` actions of a batch above `after`; return (restored, problems, last id)."""
        ...

    async def model(self) -> dict[str, Any]:
        """Return the verifier in use, the previous one's source, label counts and the last retraining."""
        ...

    async def retrain(self) -> dict[str, Any]:
        """Retrain the verifier from the user's labels; return the outcome (Conflict while one runs)."""
        ...

    async def restore_model(self) -> dict[str, Any]:
        """Bring back the previous model; return it."""
        ...

    async def verdict(self, first: int, second: int) -> dict[str, Any]:
        """Return the verdict of the model in use on two indexed files."""
        ...

    async def confirm_duplicates(self, group_id: int) -> dict[str, Any]:
        """Label a group's pairs `duplicate`; return {"group_id", "label", "labelled", "file_ids"}."""
        ...

    async def not_similar(self, group_id: int) -> dict[str, Any]:
        """Mark a group's files not duplicates and label their pairs `different`."""
        ...

    async def open_file(self, path: str, identity: FileIdentity) -> int:
        """Return a read-only descriptor of an indexed file inside the roots in force."""
        ...
