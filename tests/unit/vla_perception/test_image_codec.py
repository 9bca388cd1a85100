"""Image/CompressedImage <-> numpy: raw round trips, padding, byte order, compression, errors."""

from __future__ import annotations

import array
import struct
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from vla_perception.image_codec import (
    SUPPORTED_ENCODINGS,
    array_to_compressed,
    array_to_image_fields,
    compressed_to_array,
    decoded_encoding,
    image_to_array,
    to_rgb8,
)

# encoding -> (dtype, channels)
LAYOUTS = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
    "16UC1": (np.uint16, 1),
    "32FC1": (np.float32, 1),
    "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3),
    "8UC4": (np.uint8, 4),
}


@dataclass
class FakeImage:
    """Duck-typed sensor_msgs/Image."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: object


def random_image(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    dtype, channels = LAYOUTS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return rng.uniform(-100.0, 100.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def message_from(fields) -> FakeImage:
    return FakeImage(
        fields.height, fields.width, fields.encoding, fields.is_bigendian, fields.step, fields.data
    )


def test_every_supported_encoding_is_covered_here() -> None:
    assert set(SUPPORTED_ENCODINGS) == set(LAYOUTS)


@pytest.mark.parametrize("encoding", list(LAYOUTS))
@pytest.mark.parametrize("padding", [0, 3, 8])
def test_raw_round_trip_with_row_padding(encoding: str, padding: int) -> None:
    image = random_image(encoding)
    row_bytes = image[0].nbytes
    fields = array_to_image_fields(image, encoding, step=row_bytes + padding)
    assert (fields.height, fields.width, fields.step, fields.is_bigendian) == (5, 7, row_bytes + padding, 0)
    assert len(fields.data) == (row_bytes + padding) * 5
    decoded = image_to_array(message_from(fields))
    assert decoded.shape == image.shape
    assert decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("container", [bytes, bytearray, memoryview, lambda b: array.array("B", b)])
def test_accepts_the_buffers_rclpy_and_tests_hand_over(container) -> None:
    image = random_image("rgb8")
    fields = array_to_image_fields(image, "rgb8")
    msg = FakeImage(5, 7, "rgb8", 0, fields.step, container(fields.data))
    np.testing.assert_array_equal(image_to_array(msg), image)


def test_rgb8_keeps_channel_order_and_layout_like_cv_bridge_passthrough() -> None:
    # One row, two pixels: red then blue, written byte by byte as a camera would.
    msg = FakeImage(1, 2, "rgb8", 0, 6, bytes([255, 0, 0, 0, 0, 255]))
    decoded = image_to_array(msg)
    assert decoded.shape == (1, 2, 3)
    assert decoded[0, 0].tolist() == [255, 0, 0]
    assert decoded[0, 1].tolist() == [0, 0, 255]


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_big_endian_16_bit_is_swapped_to_native(encoding: str) -> None:
    values = np.array([[1, 258, 65535], [4096, 0, 513]], dtype=np.uint16)
    step = 3 * 2 + 1  # odd padding: rows start at unaligned offsets
    data = b"".join(values[row].astype(">u2").tobytes() + b"\xaa" for row in range(2))
    decoded = image_to_array(FakeImage(2, 3, encoding, 1, step, data))
    assert decoded.dtype == np.dtype(np.uint16) and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, values)


def test_big_endian_float_is_swapped_to_native() -> None:
    values = np.array([[1.5, -2.25], [np.inf, 1e-3]], dtype=np.float32)
    decoded = image_to_array(FakeImage(2, 2, "32FC1", 1, 8, values.astype(">f4").tobytes()))
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, values)
    # Little-endian bytes read as big-endian would give garbage: the flag really matters.
    wrong = image_to_array(FakeImage(2, 2, "32FC1", 0, 8, values.astype(">f4").tobytes()))
    assert not np.array_equal(wrong, values)


def test_copy_false_returns_a_view_and_copy_true_an_owned_array() -> None:
    data = bytearray(random_image("mono8").tobytes())
    msg = FakeImage(5, 7, "mono8", 0, 7, data)
    view = image_to_array(msg, copy=False)
    owned = image_to_array(msg)
    data[0] = (data[0] + 1) % 256
    assert view[0, 0] == data[0]
    assert owned[0, 0] != data[0]


def test_longer_data_than_step_times_height_is_accepted() -> None:
    image = random_image("bgr8")
    fields = array_to_image_fields(image, "bgr8")
    msg = FakeImage(5, 7, "bgr8", 0, fields.step, fields.data + b"\x00" * 10)
    np.testing.assert_array_equal(image_to_array(msg), image)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"encoding": "yuv422"}, ["camera 'wrist'", "encoding 'yuv422'", "rgb8"]),
        ({"encoding": ""}, ["encoding ''"]),
        ({"step": 20}, ["step 20", "21"]),
        ({"data": b"\x00" * 100}, ["data has 100 bytes", "105"]),
        ({"height": 0}, ["7x0"]),
        ({"width": 0, "step": 0}, ["0x5"]),
        ({"height": -1}, ["height -1"]),
        ({"step": 2.5}, ["step 2.5"]),
        ({"is_bigendian": 7}, ["is_bigendian 7"]),
        ({"data": object()}, ["data of type object"]),
    ],
)
def test_bad_messages_raise_value_error_naming_field_and_value(changes: dict, words: list[str]) -> None:
    fields = dict(height=5, width=7, encoding="rgb8", is_bigendian=0, step=21, data=b"\x00" * 105)
    fields.update(changes)
    with pytest.raises(ValueError) as error:
        image_to_array(FakeImage(**fields), camera="wrist")
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize(
    ("image", "encoding", "words"),
    [
        (np.zeros((4, 4, 3), np.uint16), "rgb8", ["dtype uint16", "'rgb8'"]),
        (np.zeros((4, 4), np.uint8), "rgb8", ["shape (4, 4)", "HxWx3"]),
        (np.zeros((4, 4, 3), np.uint8), "mono8", ["shape (4, 4, 3)", "HxW"]),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", ["(0, 4, 3)", "empty"]),
        (np.zeros((4, 4), np.float64), "32FC1", ["float64"]),
        (np.zeros((4, 4, 3), np.uint8), "nv12", ["encoding 'nv12'"]),
    ],
)
def test_array_to_image_fields_rejects_mismatches(image: np.ndarray, encoding: str, words: list[str]) -> None:
    with pytest.raises(ValueError) as error:
        array_to_image_fields(image, encoding)
    for word in words:
        assert word in str(error.value)


def test_array_to_image_fields_rejects_short_step_and_accepts_hxwx1() -> None:
    with pytest.raises(ValueError, match="step 6 is less than the row size 7"):
        array_to_image_fields(np.zeros((2, 7), np.uint8), "mono8", step=6)
    fields = array_to_image_fields(np.arange(6, dtype=np.uint8).reshape(2, 3, 1), "mono8")
    assert (fields.height, fields.width, fields.step, fields.data) == (2, 3, 3, bytes(range(6)))


def test_array_to_image_fields_writes_little_endian_from_a_big_endian_array() -> None:
    values = np.array([[1, 256]], dtype=">u2")
    fields = array_to_image_fields(values, "mono16")
    assert fields.data == b"\x01\x00\x00\x01"


def smooth_bgr(height: int = 48, width: int = 64) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([columns * 4, rows * 5, (rows + columns) * 2], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("encoding", "expected_format"),
    [
        ("bgr8", "bgr8; jpeg compressed bgr8"),
        ("rgb8", "rgb8; jpeg compressed bgr8"),
        ("rgba8", "rgba8; jpeg compressed bgr8"),
    ],
)
def test_jpeg_round_trip_is_close_and_bgr(encoding: str, expected_format: str) -> None:
    bgr = smooth_bgr()
    source = {
        "bgr8": bgr,
        "rgb8": bgr[:, :, ::-1],
        "rgba8": np.dstack([bgr[:, :, ::-1], np.full(bgr.shape[:2], 255, np.uint8)]),
    }[encoding]
    format_str, data = array_to_compressed(np.ascontiguousarray(source), "jpeg", encoding, quality=95)
    assert format_str == expected_format
    decoded = compressed_to_array(format_str, data)
    assert decoded.shape == bgr.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - bgr.astype(int)).mean() < 2.0
    assert decoded_encoding(decoded, format_str) == "bgr8"


def test_jpeg_quality_changes_size() -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(array_to_compressed(noisy, quality=20)[1]) < len(array_to_compressed(noisy, quality=95)[1])


def test_mono_jpeg_decodes_to_hxw() -> None:
    grey = smooth_bgr()[:, :, 0].copy()
    format_str, data = array_to_compressed(grey, "jpeg", "mono8")
    assert format_str == "mono8; jpeg compressed mono8"
    decoded = compressed_to_array(format_str, data)
    assert decoded.shape == grey.shape
    assert decoded_encoding(decoded, format_str) == "mono8"


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1"])
def test_png_round_trip_is_exact(encoding: str) -> None:
    image = random_image(encoding, 9, 11, seed=3)
    format_str, data = array_to_compressed(image, "png", encoding)
    assert format_str.startswith(f"{encoding}; png compressed ")
    decoded = compressed_to_array(format_str, data)
    channel_order = {"rgb8": [2, 1, 0], "rgba8": [2, 1, 0, 3]}.get(encoding)  # stored BGR(A)
    expected = image if channel_order is None else image[:, :, channel_order]
    assert decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, expected)
    np.testing.assert_array_equal(
        to_rgb8(decoded, decoded_encoding(decoded, format_str)), to_rgb8(image, encoding)
    )


def test_16uc1_png_format_string_and_decoded_encoding() -> None:
    depth_mm = np.array([[0, 500, 65535]], dtype=np.uint16)
    format_str, data = array_to_compressed(depth_mm, "png", "16UC1")
    assert format_str == "16UC1; png compressed "
    decoded = compressed_to_array(format_str, data)
    np.testing.assert_array_equal(decoded, depth_mm)
    assert decoded_encoding(decoded, format_str) == "16UC1"
    assert decoded_encoding(decoded, "mono16; png compressed ") == "mono16"


@pytest.mark.parametrize("format_str", ["jpeg", "png", "", "rgb8; jpeg compressed bgr8"])
def test_short_and_empty_format_strings(format_str: str) -> None:
    codec = "png" if "png" in format_str else "jpeg"
    image = smooth_bgr()
    _, data = array_to_compressed(image, codec, "bgr8")
    assert compressed_to_array(format_str, data).shape == image.shape


def test_compressed_depth_16uc1_skips_its_config_header() -> None:
    depth_mm = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    ok, png = cv2.imencode(".png", depth_mm)
    assert ok
    data = struct.pack("<iff", 1, 0.0, 0.0) + png.tobytes()
    np.testing.assert_array_equal(compressed_to_array("16UC1; compressedDepth png", data), depth_mm)
    with pytest.raises(ValueError, match="32FC1; compressedDepth"):
        compressed_to_array("32FC1; compressedDepth png", data)


def test_truncated_and_corrupt_compressed_data_raise_value_error() -> None:
    format_str, jpeg = array_to_compressed(smooth_bgr(240, 320), "jpeg", "bgr8")
    with pytest.raises(ValueError, match="camera 'front'.*truncated JPEG"):
        compressed_to_array(format_str, jpeg[: len(jpeg) // 2], camera="front")
    corrupt = bytearray(jpeg)
    corrupt[4:40] = b"\x00" * 36  # destroys the first segment, keeps the signature and EOI
    with pytest.raises(ValueError, match="(?i)corrupt jpeg"):
        compressed_to_array(format_str, bytes(corrupt))
    _, png = array_to_compressed(smooth_bgr(), "png", "bgr8")
    with pytest.raises(ValueError, match="truncated PNG"):
        compressed_to_array("png", png[:-20])
    with pytest.raises(ValueError, match="data is empty"):
        compressed_to_array("jpeg", b"")
    with pytest.raises(ValueError, match="format 'png' but data starts ffd8ff"):
        compressed_to_array("png", jpeg)
    with pytest.raises(ValueError, match="format 'rgb8; tiff compressed ' names no supported codec"):
        compressed_to_array("rgb8; tiff compressed ", jpeg)


def test_array_to_compressed_rejects_bad_arguments() -> None:
    image = smooth_bgr()
    with pytest.raises(ValueError, match="fmt 'webp'"):
        array_to_compressed(image, "webp")
    with pytest.raises(ValueError, match="quality 101"):
        array_to_compressed(image, quality=101)
    with pytest.raises(ValueError, match="'16UC1' cannot be stored as jpeg"):
        array_to_compressed(np.zeros((4, 4), np.uint16), "jpeg", "16UC1")
    with pytest.raises(ValueError, match="'32FC1' cannot be stored as png"):
        array_to_compressed(np.zeros((4, 4), np.float32), "png", "32FC1")


PIXEL_RGB = (10, 120, 250)


@pytest.mark.parametrize(
    ("encoding", "pixel"),
    [
        ("rgb8", [10, 120, 250]),
        ("bgr8", [250, 120, 10]),
        ("8UC3", [250, 120, 10]),
        ("rgba8", [10, 120, 250, 7]),
        ("bgra8", [250, 120, 10, 7]),
        ("8UC4", [250, 120, 10, 7]),
    ],
)
def test_to_rgb8_colour_orders(encoding: str, pixel: list[int]) -> None:
    image = np.tile(np.array(pixel, np.uint8), (2, 3, 1))
    rgb = to_rgb8(image, encoding)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert rgb[1, 2].tolist() == list(PIXEL_RGB)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_to_rgb8_replicates_grey(encoding: str) -> None:
    grey = np.array([[0, 77], [200, 255]], np.uint8)
    rgb = to_rgb8(grey, encoding)
    assert rgb.shape == (2, 2, 3)
    assert rgb[1, 0].tolist() == [200, 200, 200]


def test_to_rgb8_mono16_uses_the_full_16_bit_range() -> None:
    rgb = to_rgb8(np.array([[0, 256, 32768, 65535]], np.uint16), "mono16")
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255]


def test_to_rgb8_depth_is_stretched_per_frame_unless_a_range_is_given() -> None:
    depth_mm = np.array([[1000, 1500, 2000]], np.uint16)
    assert to_rgb8(depth_mm, "16UC1")[0, :, 1].tolist() == [0, 128, 255]
    fixed = to_rgb8(depth_mm, "16UC1", value_range=(0, 4000))
    assert fixed[0, :, 1].tolist() == [64, 96, 128]
    depth_m = np.array([[np.nan, 1.0, 3.0, np.inf]], np.float32)
    assert to_rgb8(depth_m, "32FC1")[0, :, 2].tolist() == [0, 0, 255, 255]
    assert to_rgb8(np.full((2, 2), 5.0, np.float32), "32FC1").max() == 0  # flat frame: black
    assert to_rgb8(np.full((2, 2), np.nan, np.float32), "32FC1").max() == 0
    with pytest.raises(ValueError, match="value_range"):
        to_rgb8(depth_m, "32FC1", value_range=(2.0, 1.0))


def test_to_rgb8_rejects_a_mismatched_array() -> None:
    with pytest.raises(ValueError, match="dtype float32 does not match encoding 'mono16'"):
        to_rgb8(np.zeros((2, 2), np.float32), "mono16")
    with pytest.raises(ValueError, match="encoding 'yuv422' is not supported"):
        to_rgb8(np.zeros((2, 2, 2), np.uint8), "yuv422")


def test_decoded_encoding_rejects_unknown_layouts() -> None:
    with pytest.raises(ValueError, match="shape \\(2, 2, 3\\) dtype uint16"):
        decoded_encoding(np.zeros((2, 2, 3), np.uint16))


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8"])
def test_to_rgb8_accepts_a_padded_zero_copy_view(encoding: str) -> None:
    image = random_image(encoding, 6, 10, seed=5)
    fields = array_to_image_fields(image, encoding, step=image[0].nbytes + 6)
    view = image_to_array(message_from(fields), copy=False)
    assert not view.flags.c_contiguous  # rows still carry their padding
    np.testing.assert_array_equal(to_rgb8(view, encoding), to_rgb8(image, encoding))
