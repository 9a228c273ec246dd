"""The hashing room on real photos: imagehash compatibility, orientation variants, decoding rules, errors."""

from __future__ import annotations

import hashlib
import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from comparimg import hashing, model
from comparimg.hashing import decoding, perceptual
from comparimg.model import ORIENTATIONS, ImageError

# PIL's transpose for each orientation id (model.ORIENTATIONS order).
PIL_TURNS = (
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)


def distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def turned(image: Image.Image, orientation: int) -> Image.Image:
    method = PIL_TURNS[orientation]
    return image.copy() if method is None else image.transpose(method)


@pytest.fixture
def gray32(photos) -> Image.Image:
    return Image.fromarray(photos["astronaut"]).convert("L").resize((32, 32), Image.Resampling.LANCZOS)


def test_hash_equals_imagehash_phash_on_the_same_32x32_input(photos):
    for name in ("astronaut", "chelsea", "coffee", "camera"):
        small = Image.fromarray(photos[name]).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
        expected = int(str(imagehash.phash(small)), 16)
        assert perceptual.dct_hash(np.asarray(small)) == expected


def test_turn_array_turns_like_pil(gray32):
    pixels = np.asarray(gray32)
    for orientation in range(len(ORIENTATIONS)):
        expected = np.asarray(turned(gray32, orientation))
        assert np.array_equal(perceptual.turn_array(pixels, orientation), expected)


def test_each_variant_is_the_hash_of_the_turned_picture(gray32):
    variants = perceptual.orientation_variants(np.asarray(gray32))
    assert len(variants) == 8
    for orientation in range(8):
        expected = int(str(imagehash.phash(turned(gray32, orientation))), 16)
        assert variants[orientation] == expected, ORIENTATIONS[orientation]
    assert len(set(variants)) == 8


def test_fingerprint_of_turned_files_meets_the_variants(tmp_path, photos):
    original = Image.fromarray(photos["chelsea"])
    original.save(tmp_path / "original.png")
    fp = hashing.fingerprint_file(str(tmp_path / "original.png"))
    for orientation in range(8):
        path = tmp_path / f"turned{orientation}.png"
        turned(original, orientation).save(path)
        copy = hashing.fingerprint_file(str(path))
        # Pillow's resize is not exactly symmetric, so a bit or two may differ.
        assert distance(copy.phash[0], fp.phash[orientation]) <= 2, ORIENTATIONS[orientation]
        others = [distance(copy.phash[0], fp.phash[k]) for k in range(8) if k != orientation]
        assert min(others) > 10


def test_fingerprint_records_size_format_content_hash_and_windows(tmp_path, write_photo):
    path = write_photo(tmp_path / "a.jpg", "coffee", size=(600, 400))
    fp = hashing.fingerprint_file(str(path))
    assert (fp.width, fp.height, fp.format) == (600, 400, "JPEG")
    assert fp.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert hashing.content_hash_file(str(path)) == fp.content_hash
    slots = model.WINDOW_SLOTS
    assert len(fp.windows) == slots * (1 + len(model.TURNED_WINDOWS))
    assert fp.windows[model.CONTENT_SLOT] == model.ABSENT  # no border: no content hash
    assert all(fp.windows[k * slots + model.CONTENT_SLOT] == model.ABSENT for k in range(4))
    assert distance(fp.phash[0], int(str(imagehash.phash(Image.open(path))), 16)) <= 4


@pytest.mark.parametrize("fmt", ["BMP", "PNG", "JPEG", "WEBP", "TIFF", "GIF"])
def test_every_accepted_format_is_hashed_alike(tmp_path, photos, fmt):
    image = Image.fromarray(photos["astronaut"]).resize((256, 256), Image.Resampling.LANCZOS)
    image.save(tmp_path / "ref.png")
    reference = hashing.fingerprint_file(str(tmp_path / "ref.png"))
    path = tmp_path / f"copy.{fmt.lower()}"
    image.save(path, format=fmt)
    fp = hashing.fingerprint_file(str(path))
    assert fp.format == fmt
    assert distance(fp.phash[0], reference.phash[0]) <= 6
    assert path.suffix in hashing.SUPPORTED_EXTENSIONS


def test_exif_orientation_is_applied(tmp_path, photos):
    upright = Image.fromarray(photos["chelsea"])  # 451 wide, 300 high
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: the viewer turns it 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "tagged.jpg", quality=95, exif=exif)
    reference = hashing.fingerprint_file(str(tmp_path / "upright.jpg"))
    fp = hashing.fingerprint_file(str(tmp_path / "tagged.jpg"))
    assert (fp.width, fp.height) == (451, 300)
    assert distance(fp.phash[0], reference.phash[0]) <= 4


def test_big_jpeg_is_decoded_at_reduced_scale(tmp_path, photos):
    big = Image.fromarray(photos["astronaut"]).resize((2048, 2048), Image.Resampling.BICUBIC)
    big.save(tmp_path / "big.jpg", quality=90)
    picture = decoding.open_picture(str(tmp_path / "big.jpg"), min_side=128)
    assert (picture.width, picture.height) == (2048, 2048)
    assert 128 <= min(picture.image.size) <= 512


def write_bytes(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def jpeg_bytes(photos) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photos["coffee"]).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.jpg", lambda photos: b"", "empty file"),
        ("noise.jpg", lambda photos: np.random.default_rng(1).bytes(5000), "not an image"),
        ("cut.jpg", lambda photos: jpeg_bytes(photos)[:3000], "truncated"),
        ("layers.jpg", lambda photos: b"8BPS\x00\x01" + bytes(200), "format not accepted (PSD)"),
        ("page.jpg", lambda photos: b"%!PS-Adobe-3.0 EPSF-3.0\n" + bytes(200), "format not accepted (EPS)"),
        ("doc.png", lambda photos: b"%PDF-1.4\n" + bytes(200), "format not accepted (PDF)"),
    ],
)
def test_bad_files_raise_image_error_with_a_reason(tmp_path, photos, name, make, reason):
    path = write_bytes(tmp_path, name, make(photos))
    with pytest.raises(ImageError) as raised:
        hashing.fingerprint_file(path)
    assert raised.value.reason == reason


def test_format_outside_the_allow_list_is_refused(tmp_path, photos):
    path = tmp_path / "picture.jpg"
    Image.fromarray(photos["coffee"]).save(path, format="PPM")
    with pytest.raises(ImageError, match="not an image"):
        hashing.fingerprint_file(str(path))


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read file"):
        hashing.fingerprint_file(str(tmp_path / "gone.png"))


def test_decompression_bomb_limit_is_kept(tmp_path, photos, monkeypatch):
    path = tmp_path / "wide.png"
    Image.fromarray(photos["coffee"]).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # warning above, error above twice that
    with pytest.raises(ImageError, match="too many pixels"):
        hashing.fingerprint_file(str(path))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # 400x600 = 240 000: only the warning
    with pytest.raises(ImageError, match="too many pixels"):
        hashing.fingerprint_file(str(path))


def test_content_box_finds_a_uniform_border(photos):
    inner = np.asarray(Image.fromarray(photos["astronaut"]).convert("L").resize((200, 150)), dtype=np.float32)
    framed = np.pad(inner, ((10, 10), (6, 6)), constant_values=255.0)
    assert perceptual.content_box(framed) == (6, 10, 206, 160)
    assert perceptual.content_box(inner) is None


def test_gif_first_frame_is_hashed(tmp_path, photos):
    frames = [Image.fromarray(photos[name]).resize((200, 200)).convert("P") for name in ("coffee", "camera")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "first.png")
    animated = hashing.fingerprint_file(str(tmp_path / "anim.gif"))
    first = hashing.fingerprint_file(str(tmp_path / "first.png"))
    assert distance(animated.phash[0], first.phash[0]) <= 2


def test_matching_reads_the_window_layout_hashing_writes():
    from comparimg import matching

    # Both rooms take the layout from model: the same objects, not copies kept in step.
    assert matching.WINDOW_TRIMS is perceptual.WINDOW_TRIMS is model.WINDOW_TRIMS
    assert matching.ORIENTATION_STEPS is perceptual.ORIENTATION_STEPS is model.ORIENTATION_STEPS
    assert matching.TURNED_WINDOWS is perceptual.TURNED_WINDOWS and matching.ABSENT == perceptual.ABSENT
    assert matching.MAX_WINDOWS == model.WINDOW_SLOTS == len(perceptual.WINDOW_TRIMS) + 1


@pytest.mark.parametrize("orientation", range(8))
def test_turned_windows_are_the_windows_of_the_turned_picture(photos, orientation):
    """Window slot k turned by an orientation (stored, or derived by bit transposition) hashes like the
    window of the turned picture at SLOT_AFTER_TURN[orientation][k]."""
    from comparimg import matching

    image = Image.fromarray(photos["coffee"]).convert("L").resize((360, 240), Image.Resampling.LANCZOS)
    turned = matching.window_orientations(perceptual.window_hashes(image))
    assert sorted(turned) == list(range(8))
    pixels = np.ascontiguousarray(perceptual.turn_array(np.asarray(image), orientation))
    other = perceptual.window_hashes(Image.fromarray(pixels))
    for slot in range(len(perceptual.WINDOW_TRIMS)):
        where = matching.SLOT_AFTER_TURN[orientation][slot]
        assert distance(int(turned[orientation][slot]), other[where]) <= 4, (slot, where)


def test_transposed_hashes_are_bit_transpositions():
    from comparimg import matching

    rng = np.random.default_rng(5)
    for _ in range(20):
        block = perceptual.low_frequencies(rng.random((32, 32)) * 255)
        for orientation, source in matching._TRANSPOSED_FROM.items():
            expected = perceptual.threshold_hash(perceptual.turn_coefficients(block, orientation))
            derived = perceptual.threshold_hash(perceptual.turn_coefficients(block, source))
            assert int(matching.transpose_bits(np.array([derived], np.uint64))[0]) == expected


def test_files_beyond_the_in_memory_limit_are_streamed_to_the_same_fingerprint(
    tmp_path, write_photo, monkeypatch
):
    path = str(write_photo(tmp_path / "a.jpg", "coffee", size=(1200, 800)))
    from_memory = hashing.fingerprint_file(path)
    read = []
    monkeypatch.setattr(decoding, "IN_MEMORY_LIMIT", 1000)
    streamed = hashing.content_hash_file
    monkeypatch.setattr(hashing, "content_hash_file", lambda p: read.append(p) or streamed(p))
    assert hashing.fingerprint_file(path) == from_memory
    assert read == [path]  # the big-file path was taken
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        hashing.fingerprint_file(str(empty))


def test_bytes_read_once_are_the_only_ones_judged(tmp_path):
    path = tmp_path / "layers.jpg"
    path.write_bytes(b"8BPS\x00\x01" + bytes(200))
    data = decoding.read_small_file(str(path))
    assert data == path.read_bytes() and decoding.read_small_file(str(path), limit=100) is None
    path.write_bytes(b"not even a header" + bytes(200))  # replaced after the read: the read bytes decide
    with pytest.raises(ImageError, match=r"format not accepted \(PSD\)"):
        decoding.open_pictures(str(path), 128, None, data)
    with pytest.raises(ImageError, match="cannot read file"):
        decoding.read_small_file(str(tmp_path / "gone.jpg"))
