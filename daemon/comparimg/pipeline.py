"""The daemon's ingest path over the scanner room: one index writer, one worker pool, the export.

`service.Service` drives a `Pipeline` (see its protocol); `ScannerPipeline` is the real one. Every method
runs on the service's writer thread, except `write_export`, which reads through a connection of its own.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comparimg.config import ModelSettings, Settings
from comparimg.embedding import EmbedderSpec
from comparimg.export import build_export, daemon_stats, write_export
from comparimg.hashing import SUPPORTED_EXTENSIONS
from comparimg.index import Index
from comparimg.scanner import MatchOptions, Scanner, ScanOptions, VerifierSource, shipped_verifier
from comparimg.scanner.model_stage import ModelStage, start_model_stage
from comparimg.workers import WorkerLimits, WorkerPool


class ScannerPipeline:
    """The ingest path of the daemon over the scanner room: one index writer, one worker pool."""

    def __init__(
        self,
        settings: Settings,
        index: Index,
        cancel: threading.Event | None = None,
        between_tasks: Callable[[], None] | None = None,
        verifier: VerifierSource = shipped_verifier,
    ):
        """Given settings, the process's one writer Index and optionally the daemon's stop event, what to
        run between the tasks of long jobs (the daemon's urgent writer jobs) and the verifier in use (asked at
        each link: a retrained one judges from the next link on), start the hashing workers,
        load the model in one of them unless `matching.mode` is `hash` (`model_stage`: a model that cannot
        be loaded leaves the pipeline in mode `hash`, with the error) and start the scanner. Once `cancel`
        is set, `ingest` and `reconcile` raise `Cancelled` within a fraction of a second, leaving the rest
        to the next start's reconcile."""
        self.settings = settings
        self.index = index
        hashing_settings = settings.hashing
        limits = WorkerLimits(hashing_settings.timeout_seconds, hashing_settings.memory_limit_mb)
        self.pool = WorkerPool(hashing_settings.workers, limits)
        self._between_tasks = between_tasks
        self.model_stage: ModelStage = start_model_stage(
            self.pool, self.index, settings.matching.mode, embedder_spec(settings.model), verifier
        )
        options = scan_options(settings)
        match = dataclasses.replace(options.match, mode=self.model_stage.mode_in_use)
        options = dataclasses.replace(options, match=match, embedder=self.model_stage.embedder)
        self.scanner = Scanner(
            self.index, self.pool, options, cancel=cancel, between_tasks=self.between_tasks, verifier=verifier
        )
        # The embedding neighbours load off the writer thread (tens of seconds at a million images).
        self._embeddings = None
        if options.match.uses_model:
            self._embeddings = self.scanner.linker.load_embeddings_in_background()

    def between_tasks(self) -> None:
        """Between two tasks of a long job: run what the daemon asked to run there (its urgent jobs).

        They write through the same connection on this very thread, so it must hold no transaction (they
        would run inside it): the scanner calls it only after a commit.
        """
        assert not self.index.in_transaction, "between_tasks called inside a transaction"
        if self._between_tasks is not None:
            self._between_tasks()

    def ingest(self, found: list[tuple[str, str]]) -> dict[str, Any]:
        """Given (path, root) pairs of settled files, index, link and regroup them; return the report."""
        return self.scanner.ingest_files(found).as_dict()

    def embedding_status(self) -> dict[str, Any]:
        """Return how the embedding neighbours stand, for `/api/status` (`model`): `embedding_index`
        ("loading", "ready", "failed", "stopped"; None in mode `hash`) and `waiting_for_embeddings`, the files
        linked by their hashes alone while it loads (linked again once it is ready)."""
        if self._embeddings is None:
            return {"embedding_index": None, "waiting_for_embeddings": 0}
        state = self._embeddings.state
        return {"embedding_index": state, "waiting_for_embeddings": len(self.scanner.linker.waiting)}

    def links_waiting(self) -> bool:
        """Return whether files linked while the embedding index loaded can now be linked again."""
        linker = self.scanner.linker
        return bool(linker.waiting) and not linker.embeddings_pending

    def link_waiting(self) -> int:
        """Link again the files linked by hashes alone while the embedding index loaded; return how many."""
        return self.scanner.link_waiting()

    def move(self, source: str, destination: str, root: str) -> dict[str, Any]:
        """Given a file or folder that moved within a root, follow it without re-hashing."""
        return self.scanner.move_path(source, destination, root).as_dict()

    def forget(self, paths: list[str]) -> int:
        """Given paths (files or folders) that are gone, mark their rows missing; return how many."""
        return self.scanner.forget_paths(paths)

    def reconcile(self, root: str, progress: Callable[[object], None] | None = None) -> dict[str, Any]:
        """Given a present root and an optional progress callback (which may raise to stop the scan),
        bring the index in line with the root (an incremental scan)."""
        return self.scanner.scan([root], progress).as_dict()

    def counts(self) -> dict[str, int]:
        """Return the index counts (files by state, groups)."""
        return self.index.counts()

    def write_export(self, target: Path, activity: dict[str, Any]) -> int:
        """Given the export path and the daemon's activity (`Service.activity()`), write the duplicates
        JSON atomically; return the number of groups."""
        roots = [str(p) for p in self.settings.root_paths()]  # build_export makes them absolute
        with self.index.open_reader() as reader:
            document = build_export(reader, roots, daemon_stats(reader.counts(), activity))
        write_export(document, target)
        return len(document["groups"])

    def close(self) -> None:
        """Stop the workers (killing those still busy with abandoned tasks); the index stays open (its
        writer, `index.writer.IndexWriter`, closes it) and give up loading the embedding index."""
        if self._embeddings is not None:
            self._embeddings.abandon()
        self.pool.close()


def scan_options(settings: Settings) -> ScanOptions:
    """Given settings, return the scanner options: extensions from `watch.include`, excludes, matching."""
    match = MatchOptions(
        threshold=settings.matching.threshold,
        orientations=settings.matching.orientations,
        crops=settings.matching.crops,
        reference_roots=tuple(str(r.path) for r in settings.roots if r.reference),
    )
    return ScanOptions(
        match=match, extensions=extensions_of(settings.watch.include), exclude=tuple(settings.watch.exclude)
    )


def embedder_spec(model: ModelSettings) -> EmbedderSpec:
    """Given the `model` settings, return the EmbedderSpec the workers load: the shipped model when
    `path` is null (its input and checksum come from its manifest), else the user's file as described."""
    if model.path is None:
        return EmbedderSpec()
    return EmbedderSpec(
        str(model.path),
        model.input_size,
        tuple(model.mean),  # type: ignore[arg-type]  # three values, checked by the configuration
        tuple(model.std),  # type: ignore[arg-type]
        model.sha256 or None,
    )


def extensions_of(include: tuple[str, ...]) -> frozenset[str]:
    """Given include globs such as "*.jpg", return the extensions they name (".jpg"), lower case."""
    found = {p[1:].lower() for p in include if p.startswith("*.") and not any(c in p[2:] for c in "*?[")}
    return frozenset(found) or SUPPORTED_EXTENSIONS


def pipeline_changes(old: Settings, new: Settings) -> bool:
    """Given the settings in force and new ones, return whether the ingest pipeline must restart."""
    return (
        old.hashing != new.hashing
        or scan_options(old) != scan_options(new)
        or old.matching.mode != new.matching.mode
        or old.model != new.model
    )
