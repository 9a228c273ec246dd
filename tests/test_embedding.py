"""The image embedder: the shipped ONNX model run with onnxruntime, on real photos, and its bad-input errors.

Run with -s to see the cosine figures each test measured.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comparimg.embedding import SHIPPED_MANIFEST, SHIPPED_MODEL, Embedder, cosine
from comparimg.hashing.embedder_input import embed_picture, embedder_pixels
from comparimg.model import ModelError

# The model tools/quantise_embedder.py made from the export; a new one must change this line, on purpose.
SHIPPED_SHA256 = "a6269a465c544db54c488f6d49aa21fe6ec13b8a3e1ec7a76121d51616f87d76"
COPY_FLOOR = 0.8  # the issue's figure: true copies mostly above 0.8
FRAMED_CEILING = 0.7  # and falsely merged dark framed pictures 0.34-0.69


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


def embed_file(embedder: Embedder, path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return embed_picture(embedder, image.convert("RGB"))


def test_shipped_model_file_has_the_recorded_checksum():
    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    assert manifest["model"] == SHIPPED_MODEL.name
    assert hashlib.sha256(SHIPPED_MODEL.read_bytes()).hexdigest() == SHIPPED_SHA256 == manifest["sha256"]
    assert (SHIPPED_MODEL.parent / "efficientnet_lite0.LICENSE").read_text().count("Apache License") >= 2
    assert manifest["provenance"]["max_abs_diff_torch_vs_onnxruntime_l2_normalised"] < 1e-5


def test_shipped_model_is_the_int8_quantisation_of_the_float_export():
    import onnx

    manifest = json.loads(SHIPPED_MANIFEST.read_text())
    quantisation = manifest["quantisation"]
    assert quantisation["tool"] == "tools/quantise_embedder.py"
    assert quantisation["float_model_sha256"] != manifest["sha256"]
    operators = [node.op_type for node in onnx.load(str(SHIPPED_MODEL)).graph.node]
    # every convolution runs on int8 weights: each Conv reads a dequantised weight and input
    assert operators.count("Conv") == 49 and operators.count("DequantizeLinear") >= 2 * 49
    assert quantisation["int8_vs_float_test_photos"]["same_picture_cosine_min"] > 0.95


def test_shipped_model_loads_and_gives_unit_vectors(embedder):
    assert (embedder.dimensions, embedder.input_size, embedder.path) == (1280, 224, str(SHIPPED_MODEL))
    pixels = np.random.default_rng(3).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    first, again = embedder.embed(pixels), embedder.embed(pixels)
    assert first.dtype == np.float32 and first.shape == (1280,)
    assert abs(float(np.linalg.norm(first)) - 1) < 1e-5
    assert np.array_equal(first, again)


def test_importing_the_rooms_does_not_load_onnxruntime(cli_env):
    code = (
        "import sys, comparimg.embedding, comparimg.hashing, comparimg.hashing.embedder_input\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=cli_env, timeout=60)


def straightened(image: Image.Image, degrees: float) -> Image.Image:
    """Turn by `degrees` and trim the corners the turn leaves empty, as a straightening tool does."""
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    width, height = image.size
    trim_x, trim_y = round(width * 0.06), round(height * 0.06)
    return turned.crop((trim_x, trim_y, width - trim_x, height - trim_y))


def make_copies(folder: Path, original: Path) -> dict[str, Path]:
    with Image.open(original) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    copies = {
        "resized": image.resize((width * 2 // 5, height * 2 // 5), Image.Resampling.LANCZOS),
        "re-encoded q50": image,
        "turned 2.5°": straightened(image, 2.5),
        "cropped 10 %": image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10)),
    }
    paths = {}
    for label, copy in copies.items():
        paths[label] = folder / f"{original.stem}-{label.split()[0]}.jpg"
        copy.save(paths[label], quality=50 if label.startswith("re-encoded") else 90)
    return paths


@pytest.fixture(scope="module")
def copy_scores(embedder, photos, tmp_path_factory) -> dict[str, dict[str, float]]:
    """Return {photo: {edit: cosine of the edited copy with the original}}, through real files."""
    folder = tmp_path_factory.mktemp("embedding_copies")
    scores = {}
    for name, pixels in photos.items():
        original = folder / f"{name}.png"
        Image.fromarray(pixels).save(original)
        vector = embed_file(embedder, original)
        copies = make_copies(folder, original)
        scores[name] = {label: cosine(vector, embed_file(embedder, path)) for label, path in copies.items()}
    return scores


def lowest(copy_scores: dict[str, dict[str, float]]) -> float:
    return min(score for scores in copy_scores.values() for score in scores.values())


def test_copies_of_a_photo_score_high_and_other_photos_lower(embedder, photos, copy_scores):
    vectors = {name: embed_picture(embedder, pixels) for name, pixels in photos.items()}
    unrelated = sorted(cosine(vectors[a], vectors[b]) for a, b in itertools.combinations(photos, 2))
    print("\ncosine of each copy with its original:")
    for name, scores in copy_scores.items():
        print(f"  {name:18s}" + "  ".join(f"{label} {score:.3f}" for label, score in scores.items()))
    print(f"unrelated photos: max {unrelated[-1]:.3f}, median {np.median(unrelated):.3f} of {len(unrelated)}")
    assert lowest(copy_scores) > COPY_FLOOR
    assert unrelated[-1] < lowest(copy_scores)


def test_a_preview_decoded_at_reduced_scale_embeds_like_the_full_picture(embedder, write_photo, tmp_path):
    path = write_photo(tmp_path / "chelsea.jpg", "chelsea", size=(1200, 900))
    with Image.open(path) as image:
        image.draft("RGB", (340, 256))  # what a worker's reduced JPEG decode gives
        preview = image.convert("RGB")
    assert min(preview.size) < 900
    score = cosine(embed_file(embedder, path), embed_picture(embedder, preview))
    print(f"\nfull decode vs {preview.size} draft decode: cosine {score:.4f}")
    assert score > 0.98


def framed(dark: np.ndarray, frame: float = 0.05) -> np.ndarray:
    """Given a picture, return it inside a white frame of `frame` of its sides per side."""
    height, width = dark.shape[:2]
    top, left = round(height * frame), round(width * frame)
    framed = np.full((height + 2 * top, width + 2 * left, 3), 255, dtype=np.uint8)
    framed[top : top + height, left : left + width] = dark
    return framed


def framed_scores(embedder: Embedder, pictures: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    vectors = {name: embed_picture(embedder, framed(pixels)) for name, pixels in pictures.items()}
    return {(a, b): cosine(vectors[a], vectors[b]) for a, b in itertools.combinations(pictures, 2)}


def report(title: str, scores: dict[tuple[str, str], float]) -> None:
    ranked = sorted(scores.items(), key=lambda item: item[1])
    above = ", ".join(f"{a}/{b} {s:.3f}" for (a, b), s in ranked if s >= FRAMED_CEILING)
    print(
        f"\n{title}, pairwise: min {ranked[0][1]:.3f}, median {np.median(list(scores.values())):.3f},"
        f" max {ranked[-1][1]:.3f}; at or above {FRAMED_CEILING}: {above or 'none'}"
    )


def darkened(photos: dict[str, np.ndarray], brightness: float = 0.08) -> dict[str, np.ndarray]:
    """Return the photos darkened to nearly flat pictures (8 % of their brightness)."""
    return {
        name: (pixels.astype(np.float32) * brightness).astype(np.uint8) for name, pixels in photos.items()
    }


def flat_dark_pictures() -> dict[str, np.ndarray]:
    """Return dark pictures with no detail at all: one colour each, a faint gradient and noise."""
    rng = np.random.default_rng(5)
    rows, columns = np.mgrid[0:300, 0:400]
    found = {}
    for colour in ((20, 20, 25), (35, 25, 20), (15, 30, 15), (40, 40, 40), (10, 10, 30)):
        ramp = rng.uniform(-1, 1) * columns / 20 + rng.uniform(-1, 1) * rows / 20
        pixels = np.asarray(colour, np.float32) + ramp[..., None] + rng.normal(0, 2, (300, 400, 3))
        found[str(colour)] = np.clip(pixels, 0, 255).astype(np.uint8)
    return found


def test_dark_photos_in_alike_white_frames_score_below_every_copy(embedder, photos, copy_scores):
    scores = framed_scores(embedder, darkened(photos))
    report("dark photos in a white 5 % frame", scores)
    assert np.median(list(scores.values())) < 0.5
    assert max(scores.values()) < lowest(copy_scores)


@pytest.mark.xfail(strict=True, reason="measured: moon/hubble_deep_field 0.721, the other 27 pairs 0.22-0.69")
def test_dark_photos_in_alike_white_frames_all_score_below_the_issues_ceiling(embedder, photos):
    assert max(framed_scores(embedder, darkened(photos)).values()) < FRAMED_CEILING


@pytest.mark.xfail(
    strict=True,
    reason="a limit of the embedding: with no detail inside, the frame is the picture (measured 0.90-0.99); "
    "the verifier must weigh it with the pixel check, not trust it there",
)
def test_flat_dark_pictures_in_alike_white_frames_score_low(embedder):
    scores = framed_scores(embedder, flat_dark_pictures())
    report("flat dark pictures in a white 5 % frame", scores)
    assert max(scores.values()) < FRAMED_CEILING


def test_a_missing_model_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "absent.onnx"
    with pytest.raises(ModelError, match=r"absent\.onnx: missing") as raised:
        Embedder.load(path)
    assert raised.value.path == str(path)


def test_a_corrupt_model_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(ModelError, match=r"random\.onnx: not a model onnxruntime can load"):
        Embedder.load(path)


def test_a_damaged_copy_of_the_shipped_model_fails_its_checksum(tmp_path):
    data = bytearray(SHIPPED_MODEL.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights still loads: only the checksum sees it
    path = tmp_path / "efficientnet_lite0.onnx"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"efficientnet_lite0.onnx: sha256 \w+ is not the expected"):
        Embedder.load(path, sha256=SHIPPED_SHA256)


def tiny_encoder(
    path: Path, input_shape: list, reshape_to: list[int] | None = None, then: str | None = None
) -> Path:
    """Write an ONNX image encoder taking `input_shape`: a global average pool (then the one-input operator
    `then`, when given) flattened, or a reshape of the input to `reshape_to`."""
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test models")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"])]
    if then is not None:
        nodes.append(helper.make_node(then, ["pooled"], ["pooled_then"]))
    initializers = []
    if reshape_to is None:
        nodes.append(
            helper.make_node("Flatten", ["pooled" if then is None else "pooled_then"], ["embedding"])
        )
    else:
        initializers.append(helper.make_tensor("shape", TensorProto.INT64, [len(reshape_to)], reshape_to))
        nodes = [helper.make_node("Reshape", ["image", "shape"], ["embedding"])]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_user_encoder_with_its_own_input_size_and_normalisation_loads(tmp_path):
    path = tiny_encoder(tmp_path / "mine.onnx", ["batch", 3, 64, 64])
    embedder = Embedder.load(path, input_size=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert (embedder.dimensions, embedder.input_size) == (3, 64)
    reddish = np.zeros((64, 64, 3), dtype=np.uint8)
    reddish[..., 0] = 255
    vector = embedder.embed(reddish)  # channel means (1 - .5) / .25 = 2 and (0 - .5) / .25 = -2
    assert np.allclose(vector, np.array([2, -2, -2]) / np.sqrt(12), atol=1e-6)


def test_a_model_with_another_input_shape_is_an_error_naming_it(tmp_path):
    path = tiny_encoder(tmp_path / "small_input.onnx", [1, 3, 64, 64])
    with pytest.raises(ModelError, match=r"small_input.onnx: takes tensor\(float\) \[1, 3, 64, 64\]"):
        Embedder.load(path)  # the default input size, 224
    single_channel = tiny_encoder(tmp_path / "gray.onnx", ["batch", 1, "h", "w"])
    with pytest.raises(ModelError, match=r"gray\.onnx: takes"):
        Embedder.load(single_channel)


def test_an_encoder_that_fails_on_a_picture_is_an_error_at_load(tmp_path):
    # Symbolic sides pass the input check; the fixed reshape inside fails on a 224×224 picture.
    path = tiny_encoder(tmp_path / "fixed_inside.onnx", ["batch", 3, "h", "w"], reshape_to=[1, 3 * 64 * 64])
    with pytest.raises(ModelError, match=r"fixed_inside\.onnx: fails on a 224×224 test picture"):
        Embedder.load(path)


def test_an_encoder_giving_non_finite_values_is_an_error_at_load(tmp_path):
    # The mean picture pools to 0 in every channel, and log(0) is -inf.
    path = tiny_encoder(tmp_path / "log.onnx", ["batch", 3, 224, 224], then="Log")
    with pytest.raises(ModelError, match=r"log\.onnx: gives an empty output or non-finite values"):
        Embedder.load(path)


def test_pixels_of_the_wrong_shape_are_refused(embedder):
    with pytest.raises(ValueError, match=r"\(224, 224, 3\)"):
        embedder.embed(np.zeros((100, 224, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        embedder_pixels(np.zeros((10, 10, 2), dtype=np.uint8), 224)


@pytest.mark.parametrize(
    "picture",
    [
        np.full((30, 50), 128, dtype=np.uint8),
        np.full((30, 50, 4), 128, dtype=np.uint8),
        Image.new("I;16", (50, 30), 128 * 256),
        Image.new("P", (50, 30), 3),
        Image.new("RGBA", (500, 300), (128, 128, 128, 0)),
    ],
    ids=["gray array", "rgba array", "16-bit", "palette", "rgba image"],
)
def test_pictures_of_any_mode_become_rgb_pixels_at_the_input_size(picture):
    pixels = embedder_pixels(picture, 224)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    if not isinstance(picture, Image.Image) or picture.mode != "P":
        assert np.all(pixels == 128)  # 16-bit scaled down, not clipped to white; alpha dropped
