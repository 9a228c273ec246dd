"""The user's verifier model on disk and the one in use (file I/O and a lock only: no picture, SQL or HTTP).

A folder (`models/` beside the index) holds the retrained models, each in a file named by its sha256
(`verifier-<sha256>.json`, written atomically), and `verifier-state.json`, the manifest written atomically
after them: which model is in use (`shipped`, or a user file with its sha256), the one before it (what
`restore` brings back) and the outcome of the last retraining. A crash between the two writes leaves the
manifest as it was; files the manifest does not name are removed at the next write.

`ModelStore.load()` at start-up returns the model in use; a user model that is missing, damaged (its
sha256) or not a model is logged and replaced by the shipped one, and `problem` says so (GET /api/model).
`VerifierHolder` is what the rest of the daemon judges with: a reference swapped whole (readers never see
half a model) when a retrained model is adopted or the previous one restored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comparimg.atomic_files import create_private_folder, write_text_atomically
from comparimg.model import Conflict, ModelError
from comparimg.verdicts.verifier import Verifier, shipped_manifest

log = logging.getLogger("comparimg.verdicts")
MANIFEST = "verifier-state.json"
FORMAT = "comparimg-user-verifiers"
SHIPPED = "shipped"
USER = "user"


@dataclass(frozen=True, slots=True)
class ModelInUse:
    """A loaded verifier and where it came from: `source` is `shipped` or `user`, `sha256` the user file's,
    `adopted` when it was adopted (epoch seconds), `problem` why a user model could not be loaded."""

    verifier: Verifier
    source: str
    sha256: str | None = None
    adopted: float | None = None
    problem: str | None = None

    def describe(self) -> dict[str, Any]:
        """Return the model as `GET /api/model` shows it: source, sha256, adoption time, the problem (if
        the user model was replaced by the shipped one) and its validation figures."""
        return {
            "source": self.source,
            "sha256": self.sha256 or shipped_manifest()["model_sha256"],
            "adopted": self.adopted,
            "problem": self.problem,
            "validation": validation_figures(self.verifier, self.source),
        }


def validation_figures(verifier: Verifier, source: str) -> dict[str, Any]:
    """Return the figures a model was shipped or adopted with: for the shipped one its 3-class accuracy by
    stage of evidence on the shipped validation pairs; for a retrained one the adoption rule's figures."""
    validation = verifier.validation
    shipped = {stage: figures.get("accuracy") for stage, figures in validation.get("stages", {}).items()}
    figures: dict[str, Any] = {"pairs": validation.get("pairs"), "accuracy_by_stage": shipped}
    retraining = validation.get("retraining")
    if source == USER and retraining:
        figures["retraining"] = {
            key: retraining.get(key)
            for key in ("user_labels", "user_labels_by_class", "user_held_out", "current", "candidate")
        }
    return figures


class VerifierHolder:
    """The verifier the daemon judges with now; `swap` replaces it whole (a reference assignment, so a
    thread that took `current` keeps a consistent model). A holder made `unavailable` (not even the shipped
    model could be loaded) has none: asking it for the verifier raises that ModelError, naming the file,
    and the daemon runs in mode `hash` (`scanner.model_stage`)."""

    def __init__(self, in_use: ModelInUse | None, problem: ModelError | None = None):
        self._in_use = in_use
        self._problem = problem

    @classmethod
    def unavailable(cls, problem: ModelError) -> VerifierHolder:
        """Given why no verifier could be loaded, return a holder without one."""
        return cls(None, problem)

    @property
    def in_use(self) -> ModelInUse:
        """Return the model in use with where it came from. Raise ModelError when there is none."""
        if self._in_use is None:
            assert self._problem is not None
            raise self._problem
        return self._in_use

    @property
    def current(self) -> Verifier:
        """Return the verifier in use. Raise ModelError when there is none."""
        return self.in_use.verifier

    def __call__(self) -> Verifier:
        """Return the verifier in use: the holder is a "current verifier" source (a callable) for whoever
        judges pairs, so a retrained model is used from their next judgement. Raise ModelError, naming
        the file, when there is none."""
        return self.in_use.verifier

    def describe(self) -> dict[str, Any]:
        """Return the model in use as `GET /api/model` shows it; with none, its fields empty and `problem`
        saying why (the daemon runs in mode `hash`)."""
        if self._in_use is not None:
            return self._in_use.describe()
        reason = f"{self._problem}; no verifier: the daemon runs in mode hash"
        return {"source": None, "sha256": None, "adopted": None, "problem": reason, "validation": {}}

    def swap(self, in_use: ModelInUse) -> None:
        """Make `in_use` the model the daemon judges with."""
        self._in_use = in_use
        self._problem = None


class ModelStore:
    """The models folder: load the model in use, adopt a retrained one, restore the previous one."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST

    def manifest(self) -> dict[str, Any]:
        """Return the manifest (a fresh one when there is none). Raise ModelError naming the manifest when it
        cannot be read or is not one."""
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            return {"format": FORMAT, "in_use": {"source": SHIPPED}, "previous": None, "last_retrain": None}
        except OSError as error:
            raise ModelError(str(self.manifest_path), f"cannot be read: {error.strerror}") from error
        try:
            manifest = json.loads(text)
            if manifest.get("format") != FORMAT or manifest["in_use"]["source"] not in (SHIPPED, USER):
                raise ValueError(f"format {manifest.get('format')!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelError(str(self.manifest_path), f"not a models manifest: {error}") from error
        return manifest

    def load(self) -> ModelInUse:
        """Return the model in use (the shipped one when none was adopted). A user model, or a manifest, that
        cannot be used is logged and the shipped model returned with `problem` naming the file and why.
        Raise ModelError only when the shipped model itself cannot be loaded."""
        try:
            entry = self.manifest()["in_use"]
            user = None if entry["source"] == SHIPPED else self._load(entry)
        except ModelError as error:
            log.error(
                "event=user_model_unusable file=%s reason=%r fallback=shipped", error.path, error.reason
            )
            return ModelInUse(Verifier.load(), SHIPPED, problem=f"{error}; the shipped model is in use")
        return user or ModelInUse(Verifier.load(), SHIPPED)

    def _load(self, entry: dict[str, Any]) -> ModelInUse:
        if entry["source"] == SHIPPED:
            return ModelInUse(Verifier.load(), SHIPPED)
        path = self.folder / _file_name(entry["sha256"])
        return ModelInUse(Verifier.load(path, entry["sha256"]), USER, entry["sha256"], entry.get("adopted"))

    def adopt(self, verifier: Verifier, outcome: dict[str, Any]) -> ModelInUse:
        """Given an adopted retrained verifier and the retraining outcome, write it (atomically, named by its
        sha256), make it the model in use and the one in use before it the previous; return the new model
        in use. Raise OSError when the folder cannot be written (nothing changes then)."""
        text = verifier.to_json()
        sha256 = _sha256(text)
        with self._lock:
            manifest = self.manifest()
            create_private_folder(self.folder)
            write_text_atomically(self.folder / _file_name(sha256), text, 0o600)
            entry = {"source": USER, "sha256": sha256, "adopted": time.time()}
            manifest.update(previous=manifest["in_use"], in_use=entry, last_retrain=outcome)
            self._write_manifest(manifest)
        return ModelInUse(
            Verifier.load(self.folder / _file_name(sha256), sha256), USER, sha256, entry["adopted"]
        )

    def record_outcome(self, outcome: dict[str, Any]) -> None:
        """Given the outcome of a retraining whose candidate was not adopted, keep it as the last one."""
        with self._lock:
            manifest = self._readable_manifest()
            manifest["last_retrain"] = outcome
            self._write_manifest(manifest)

    def restore(self) -> ModelInUse:
        """Make the previous model the one in use (and the one in use the previous: restoring twice comes
        back); return it. Raise Conflict when there is no previous model, ModelError naming its file when
        it cannot be loaded (nothing changes then)."""
        with self._lock:
            manifest = self.manifest()
            previous = manifest.get("previous")
            if not previous:
                raise Conflict("there is no previous model to restore: no retrained model was adopted yet")
            in_use = self._load(previous)
            manifest.update(previous=manifest["in_use"], in_use=previous)
            self._write_manifest(manifest)
        return in_use

    def last_retrain(self) -> dict[str, Any] | None:
        """Return the outcome of the last retraining (None before the first)."""
        return self._readable_manifest().get("last_retrain")

    def previous_source(self) -> str | None:
        """Return where the previous model comes from (`shipped`, `user`), None when there is none."""
        previous = self._readable_manifest().get("previous")
        return previous["source"] if previous else None

    def _readable_manifest(self) -> dict[str, Any]:
        # A damaged manifest was reported at load; the next write replaces it with one that says "shipped".
        try:
            return self.manifest()
        except ModelError:
            return {"format": FORMAT, "in_use": {"source": SHIPPED}, "previous": None, "last_retrain": None}

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        create_private_folder(self.folder)
        write_text_atomically(self.manifest_path, json.dumps(manifest, indent=1, sort_keys=True), 0o600)
        entries = (manifest["in_use"], manifest.get("previous"))
        named = {_file_name(entry["sha256"]) for entry in entries if entry and entry.get("sha256")}
        for path in self.folder.glob("verifier-*.json"):
            if path.name != MANIFEST and path.name not in named:
                path.unlink(missing_ok=True)


def _file_name(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ModelError(MANIFEST, f"names a model by {sha256!r}, not a sha256")
    return f"verifier-{sha256}.json"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
