"""Starting the model stage: load the configured image encoder once, in a hashing worker, before a scan.

    stage = start_model_stage(pool, index, "hash+model", EmbedderSpec(), verifier)
    stage.mode_in_use   # "hash+model", or "hash" when a model could not be loaded (stage.error says why)
    Scanner(index, pool, ScanOptions(embedder=stage.embedder))

The encoder is loaded in a worker process, never in the caller's (the daemon's parent process does not
import onnxruntime); that worker keeps it for the pictures it reads next, and every other worker loads the
same file (pinned by its sha256) on its first picture. A model that cannot be loaded (missing, damaged,
another input shape, failing on a test picture), or a learned verifier that cannot be (its file missing or
damaged), leaves the stage off: the scan runs in mode `hash`, and the error, naming the file, is kept for the
status and logged. The index adopts the encoder's identity: the embeddings of another model are forgotten,
and the scanner reads those files again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from comparimg import hashing
from comparimg.embedding import EmbedderCheck, EmbedderSpec
from comparimg.index import Index
from comparimg.model import ImageError, ModelError
from comparimg.scanner.linking import VerifierSource, shipped_verifier
from comparimg.workers import WorkerPool

log = logging.getLogger(__name__)

HASH_MODE = "hash"


@dataclass(frozen=True, slots=True)
class ModelStage:
    """The mode asked for, the mode in use, why they differ (`error`, naming the model file) and the
    encoder the workers run (None in mode `hash`), with its identity and output length."""

    wanted: str
    mode_in_use: str
    model: str = ""  # the configured model file, "shipped" for the package's own
    embedder: EmbedderSpec | None = None
    identity: str = ""
    dimensions: int = 0
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        """Return the stage as `GET /api/status` shows it (`model`)."""
        return {
            "wanted_mode": self.wanted,
            "mode": self.mode_in_use,
            "model": self.model or None,
            "dimensions": self.dimensions or None,
            "error": self.error or None,
        }


def start_model_stage(
    pool: WorkerPool,
    index: Index,
    mode: str,
    spec: EmbedderSpec,
    verifier: VerifierSource = shipped_verifier,
) -> ModelStage:
    """Given the worker pool, the index, the configured matching mode and encoder and the verifier in use
    (a source that raises ModelError when it cannot be loaded), check the verifier and load the encoder in a
    worker unless the mode is `hash`, and return the ModelStage: on success the index adopts the encoder
    (`Index.adopt_embedder`); when either cannot be used the mode in use is `hash` and the error, naming
    the file, is logged and kept (no encoder is loaded without a verifier: nothing would use it)."""
    if mode == HASH_MODE:
        return ModelStage(mode, mode)
    model = spec.path or "shipped"
    try:
        verifier()
    except ModelError as error:
        log.error("event=model_unavailable mode=%s using=hash error=%r", mode, str(error))
        return ModelStage(mode, HASH_MODE, model, error=str(error))
    try:
        check: EmbedderCheck = pool.run(hashing.check_embedder, spec)
    except ImageError as error:  # the worker died loading it (a hostile file, the memory limit)
        check = EmbedderCheck(error=f"model file {model}: the worker loading it failed: {error}")
    if check.error or check.spec is None:
        log.error("event=model_unavailable mode=%s using=hash error=%r", mode, check.error)
        return ModelStage(mode, HASH_MODE, model, error=check.error)
    with index.transaction():
        forgotten = index.adopt_embedder(check.identity)
    log.info(
        "event=model_loaded mode=%s model=%r dimensions=%d forgotten=%d",
        mode,
        model,
        check.dimensions,
        forgotten,
    )
    return ModelStage(mode, mode, model, check.spec, check.identity, check.dimensions)
