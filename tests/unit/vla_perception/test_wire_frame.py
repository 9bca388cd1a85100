"""Camera frames parsed from serialized CDR: the same fields as the message, pixels not copied, and any
malformed buffer a named refusal (hypothesis), never an exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from vla_perception.frame_gate import FrameGate, FrameLimits
from vla_perception.image_codec import array_to_compressed, compressed_to_array, image_to_array
from vla_perception.wire_frame import parse_frame, serialize_image

S = 1_000_000_000
NOW = 1_700_000_000 * S
TYPES = get_typestore(Stores.ROS2_HUMBLE).types
LIMITS = FrameLimits(
    max_age_ns=S // 2,
    max_future_ns=S // 2,
    frozen_after_ns=S,
    max_pixels=2_304_000,
    max_compressed_bytes=1 << 23,
)


def header(stamp_ns: int, frame_id: str = "cam"):
    sec, nanosec = divmod(stamp_ns, S)
    return TYPES["std_msgs/msg/Header"](
        stamp=TYPES["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def serialized_image(pixels: np.ndarray, encoding: str = "bgr8", stamp_ns: int = NOW, frame_id: str = "cam"):
    height, width = pixels.shape[:2]
    msg = TYPES["sensor_msgs/msg/Image"](
        header=header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=pixels.strides[0],
        data=pixels.reshape(-1),
    )
    return bytes(get_typestore(Stores.ROS2_HUMBLE).serialize_cdr(msg, "sensor_msgs/msg/Image"))


def serialized_jpeg(pixels: np.ndarray, stamp_ns: int = NOW) -> bytes:
    fmt, data = array_to_compressed(pixels, "jpeg", "bgr8")
    msg = TYPES["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_ns), format=fmt, data=np.frombuffer(data, np.uint8)
    )
    return bytes(get_typestore(Stores.ROS2_HUMBLE).serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))


PIXELS = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("frame_id", ["", "cam", "a_longer_frame_id"])  # every alignment after the string
def test_a_raw_frame_parses_to_the_message_fields_with_a_view_of_the_pixels(frame_id: str) -> None:
    wire = serialized_image(PIXELS, stamp_ns=NOW + 123, frame_id=frame_id)
    frame, refusal = parse_frame("primary", "raw", wire)
    assert refusal is None
    assert (frame.header.stamp.sec, frame.header.stamp.nanosec) == divmod(NOW + 123, S)
    assert (frame.height, frame.width, frame.encoding, frame.step, frame.is_bigendian) == (
        48,
        64,
        "bgr8",
        192,
        0,
    )
    assert np.shares_memory(frame.data, np.frombuffer(wire, np.uint8))  # not a copy
    np.testing.assert_array_equal(image_to_array(frame, copy=False), PIXELS)


def test_the_bytes_rclpy_serialises_parse_the_same() -> None:
    serialization = pytest.importorskip("rclpy.serialization")
    image_module = pytest.importorskip("sensor_msgs.msg")
    msg = image_module.Image(height=48, width=64, encoding="rgb8", step=192, data=PIXELS.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(NOW, S)
    msg.header.frame_id = "wrist"
    wire = serialization.serialize_message(msg)
    # the same bytes but the alignment padding, which rmw leaves unset
    assert len(wire) == len(serialized_image(PIXELS, "rgb8", NOW, "wrist"))
    frame, refusal = parse_frame("wrist", "raw", wire)
    assert refusal is None and frame.encoding == "rgb8"
    np.testing.assert_array_equal(image_to_array(frame), PIXELS)


def test_a_compressed_frame_parses_and_decodes() -> None:
    frame, refusal = parse_frame("wrist", "compressed", serialized_jpeg(PIXELS))
    assert refusal is None and frame.format.endswith("jpeg compressed bgr8")
    assert FrameGate(LIMITS).admit("wrist", "compressed", frame, NOW, NOW) is None
    decoded = compressed_to_array(frame.format, bytes(frame.data), camera="wrist")
    assert decoded.shape == PIXELS.shape


def test_a_parsed_frame_passes_through_the_frame_gate_like_the_message() -> None:
    gate = FrameGate(LIMITS)
    frame, _ = parse_frame("primary", "raw", serialized_image(PIXELS))
    assert gate.admit("primary", "raw", frame, NOW, NOW) is None
    wrong_step, _ = parse_frame("primary", "raw", serialized_image(PIXELS, encoding="mono8"))
    assert gate.admit("primary", "raw", wrong_step, NOW, NOW) is None  # mono8 64x48 fits in 192-byte rows
    short, _ = parse_frame("primary", "raw", serialized_image(PIXELS[:, :, :2].copy()))  # 2 bytes a pixel
    assert gate.admit("primary", "raw", short, NOW, NOW).cause == "bad_data"


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"", "0 bytes are not a serialized sensor_msgs/msg/Image"),
        (b"\x00\x01\x00\x00", "4 bytes are not a serialized"),
        (b"\x07\x07\x00\x00" + bytes(64), "Invalid or unsupported CDR encapsulation"),
        (serialized_image(PIXELS)[:-1], "is the publisher's message type broken?"),
        (serialized_image(PIXELS) + bytes(16), "size mismatch"),
        (12345, "int 12345 is not a serialized message"),
    ],
)
def test_a_malformed_buffer_is_a_named_refusal(wire, text: str) -> None:
    frame, refusal = parse_frame("primary", "raw", wire)
    assert frame is None and refusal.cause == "malformed" and "camera 'primary'" in refusal.reason
    assert text in refusal.reason


def test_an_unknown_transport_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="transport 'h264' is not one of"):
        parse_frame("primary", "h264", b"")


VALID = {"raw": serialized_image(PIXELS[:8, :8].copy()), "compressed": serialized_jpeg(PIXELS[:8, :8].copy())}


@st.composite
def damaged(draw) -> tuple[str, bytes]:
    transport = draw(st.sampled_from(sorted(VALID)))
    wire = bytearray(VALID[transport])
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(wire) - 1))
        wire[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(wire)))
    tail = draw(st.binary(max_size=16))
    return transport, bytes(wire[:cut]) + tail if draw(st.booleans()) else bytes(wire)


@settings(max_examples=400, deadline=None)
@given(damaged() | st.tuples(st.sampled_from(sorted(VALID)), st.binary(max_size=200)))
def test_damaged_or_random_buffers_parse_or_are_refused_and_the_gate_never_raises(case) -> None:
    transport, wire = case
    frame, refusal = parse_frame("cam", transport, wire)
    if refusal is not None:
        assert frame is None and refusal.cause == "malformed"
        return
    stamp_ns = frame.header.stamp.sec * S + frame.header.stamp.nanosec
    FrameGate(LIMITS).admit("cam", transport, frame, stamp_ns, NOW)  # a refusal or None, never raises


def test_an_observation_serializes_to_the_image_message_rclpy_reads() -> None:
    serialization = pytest.importorskip("rclpy.serialization")
    image_module = pytest.importorskip("sensor_msgs.msg")
    wire = serialize_image(NOW + 5, "primary", PIXELS)
    msg = serialization.deserialize_message(wire, image_module.Image)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        *divmod(NOW + 5, S),
        "primary",
    )
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step) == (48, 64, "rgb8", 0, 192)
    assert bytes(msg.data) == PIXELS.tobytes()
    frame, refusal = parse_frame("primary", "raw", wire)
    assert refusal is None and np.array_equal(image_to_array(frame), PIXELS)
    with pytest.raises(ValueError, match="observation 'primary': .* is not an HxWx3 uint8 image"):
        serialize_image(NOW, "primary", PIXELS[:, :, 0])
