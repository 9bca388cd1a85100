"""Observations as the policy node takes them: a serialized sensor_msgs/Image read in place
(vla_common.image_wire), then checked by image_to_pixels; any malformed buffer a ValueError that
names the source (hypothesis), never another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_common.image_wire import deserialize_image, serialize_image
from vla_common.inbound import image_to_pixels

S = 1_000_000_000
PIXELS = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
WIRE = serialize_image(7 * S + 5, "primary", PIXELS)


def test_an_observation_round_trips_as_a_read_only_view_of_the_bytes() -> None:
    msg = deserialize_image(WIRE, what="observation 'primary'")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (7, 5, "primary")
    pixels = image_to_pixels(msg, what="observation 'primary'")
    np.testing.assert_array_equal(pixels, PIXELS)
    assert np.shares_memory(pixels, np.frombuffer(WIRE, np.uint8)) and not pixels.flags.writeable


def test_the_pixel_checks_apply_to_the_parsed_message() -> None:
    wrong_size = bytearray(WIRE)  # height (uint32) after encapsulation 4, stamp 8, frame_id 4 + 8 bytes
    wrong_size[24:28] = (99).to_bytes(4, "little")
    with pytest.raises(
        ValueError, match="observation 'primary': data has 720 bytes, fewer than step 60 x height 99"
    ):
        image_to_pixels(deserialize_image(bytes(wrong_size), what="x"), what="observation 'primary'")
    with pytest.raises(ValueError, match="encoding 'rgb8', expected 'bgr8'"):
        image_to_pixels(deserialize_image(WIRE, what="x"), what="x", encoding="bgr8")


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b"", "observation 'wrist': 0 bytes are not a serialized sensor_msgs/msg/Image"),
        (WIRE[:-1], "is the publisher's message type broken?"),
        (b"\x07\x07\x00\x00" + bytes(64), "Invalid or unsupported CDR encapsulation"),
        (None, "observation 'wrist': NoneType None is not a serialized message"),
    ],
)
def test_a_malformed_buffer_is_a_value_error_naming_the_source(wire, text: str) -> None:
    with pytest.raises(ValueError) as caught:
        deserialize_image(wire, what="observation 'wrist'")
    assert text in str(caught.value)


def test_an_unknown_transport_is_named() -> None:
    with pytest.raises(ValueError, match="transport 'h264' is not one of"):
        deserialize_image(WIRE, "h264", what="x")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_observations_give_pixels_or_a_value_error(data) -> None:
    wire = bytearray(WIRE)
    for _ in range(data.draw(st.integers(0, 6))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    wire = wire[: data.draw(st.integers(0, len(wire)))] + data.draw(st.binary(max_size=8))
    try:
        image_to_pixels(deserialize_image(bytes(wire), what="x"), what="x")
    except ValueError:
        pass
