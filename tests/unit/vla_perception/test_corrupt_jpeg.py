"""Corrupt JPEGs that OpenCV decodes without an error are refused, valid ones of every kind are not.

The corruptions are what a fault injector (or a flaky link) does to a real JPEG: its middle third
overwritten with random bytes, zeros, 0xFF or text; cut short, with or without an end marker.
Structure checks catch some before decoding; libjpeg's warnings, captured around the decode, catch
the rest. Not caught: a splice of valid image data of the same JPEG (the Huffman code resyncs and
the decoder has nothing to warn about); that is a valid JPEG of a wrong image.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vla_perception.image_codec import (
    check_compressed,
    compressed_size,
    compressed_to_array,
    jpeg_size,
    png_size,
)

ENCODINGS = {
    "baseline q50": [cv2.IMWRITE_JPEG_QUALITY, 50],
    "baseline q95": [cv2.IMWRITE_JPEG_QUALITY, 95],
    "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
    "restart markers": [cv2.IMWRITE_JPEG_RST_INTERVAL, 4],
}


def scene(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """A camera-like frame: a gradient, a disc and sensor noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(0, 255, width)[None, :, None].astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 4, (0, 0, 255), -1)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def encode(params: list[int], image: np.ndarray | None = None) -> bytes:
    ok, data = cv2.imencode(".jpg", scene() if image is None else image, params)
    assert ok
    return data.tobytes()


def middle_overwritten(data: bytes, kind: str) -> bytes:
    n = len(data)
    a, b = n // 3, 2 * n // 3
    filler = {
        "random": np.random.default_rng(1).integers(0, 256, b - a, dtype=np.uint8).tobytes(),
        "zeros": bytes(b - a),
        "0xff": b"\xff" * (b - a),
        "text": (b"corrupt" * n)[: b - a],
    }[kind]
    return data[:a] + filler + data[b:]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_valid_jpegs_pass_and_report_their_size(encoding):
    data = encode(ENCODINGS[encoding])
    assert check_compressed("bgr8; jpeg compressed bgr8", data) == "jpeg"
    assert compressed_to_array("bgr8; jpeg compressed bgr8", data).shape == (240, 320, 3)
    assert jpeg_size(data) == (320, 240) == compressed_size("jpeg", data)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("kind", ["random", "zeros", "0xff", "text"])
def test_a_jpeg_with_its_middle_overwritten_is_refused(encoding, kind):
    data = middle_overwritten(encode(ENCODINGS[encoding]), kind)
    with pytest.raises(ValueError, match="camera 'primary': corrupt JPEG"):
        compressed_to_array("jpeg", data, camera="primary")


def test_opencv_alone_decodes_an_overwritten_jpeg_without_an_error():
    data = middle_overwritten(encode(ENCODINGS["baseline q50"]), "zeros")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (240, 320, 3)


@pytest.mark.parametrize("kind", ["random", "0xff"])
def test_overwritten_with_markers_is_refused_before_decoding(kind):
    data = middle_overwritten(encode(ENCODINGS["baseline q95"]), kind)
    with pytest.raises(ValueError, match="corrupt JPEG: "):
        check_compressed("jpeg", data)


def test_a_truncated_jpeg_is_refused_with_or_without_an_end_marker():
    data = encode(ENCODINGS["baseline q95"])
    with pytest.raises(ValueError, match="truncated JPEG: no EOI marker"):
        check_compressed("jpeg", data[: len(data) // 2])
    with pytest.raises(ValueError, match="decoder said 'Corrupt JPEG data: premature end of data segment'"):
        compressed_to_array("jpeg", data[: len(data) // 2] + b"\xff\xd9")


def test_padding_after_the_end_marker_is_accepted():
    data = encode(ENCODINGS["baseline q50"]) + bytes(16)
    assert compressed_to_array("jpeg", data).shape == (240, 320, 3)


def test_a_broken_header_is_named():
    data = bytearray(encode(ENCODINGS["baseline q50"]))
    data[4:6] = b"\xff\xff"  # the APP0 length: far beyond the data
    with pytest.raises(ValueError, match="corrupt JPEG: segment 0xffe0 at byte 2 has length 65535"):
        jpeg_size(bytes(data))


def test_other_output_on_stderr_during_a_decode_is_passed_on(capfd):
    data = middle_overwritten(encode(ENCODINGS["baseline q50"]), "zeros")
    with pytest.raises(ValueError):
        compressed_to_array("jpeg", data)
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # the warning became the error, not noise


def test_png_size_from_its_header():
    ok, data = cv2.imencode(".png", scene(30, 40))
    assert png_size(data.tobytes()) == (40, 30) == compressed_size("png", data.tobytes())
    with pytest.raises(ValueError, match="not a PNG with its IHDR"):
        png_size(b"\x89PNG\r\n\x1a\n" + bytes(4))
