"""sensor_msgs/Image and CompressedImage read in place from their serialized CDR bytes, and an rgb8
Image written as CDR (pure, no ROS).

A node that subscribes with ``raw=True`` gets the serialized message as ``bytes``: rclpy skips
building a Python message, which copies every image's pixels into an ``array.array``.
:func:`deserialize_image` reads it with the ``rosbags`` CDR deserialiser, whose ``data`` is a
read-only numpy view of those bytes; the result carries the same field names as the ROS message
(``header.stamp.sec``, ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``;
``format`` for compressed), so the checks that took the message (``inbound.image_to_pixels``, the
perception frame gate and decoders) take it as they are. A buffer that is not a valid message of
the type (truncated, lengths past its end, a bad encapsulation header) is a ``ValueError`` that
names it, never another exception.

:func:`serialize_image` writes an rgb8 image as a serialized sensor_msgs/Image for a raw publish
(rclpy's ``publish(bytes)``): one copy of the pixels, where building a message copied them into an
``array.array``, then into the C message, then into the CDR buffer.

Users: the perception node (camera frames in, observations out: vla_perception.wire_frame) and the
policy node (observations in).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

# sensor_msgs/Image and CompressedImage (and std_msgs/Header) are the same in every ROS 2 distro.
_TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
WIRE_TYPES = {"raw": "sensor_msgs/msg/Image", "compressed": "sensor_msgs/msg/CompressedImage"}


def deserialize_image(serialized: Any, transport: str = "raw", *, what: str) -> Any:
    """The Image (``transport`` ``raw``) or CompressedImage (``compressed``) in ``serialized``.

    ``serialized``: the bytes a raw subscription delivers (any bytes-like object); ``what`` names
    the source in errors. The result's ``data`` is a read-only view of ``serialized``, which it
    keeps alive. Raises ``ValueError`` if ``transport`` is unknown or the buffer is not such a
    message.
    """
    type_name = WIRE_TYPES.get(transport)
    if type_name is None:
        raise ValueError(f"{what}: transport {transport!r} is not one of {sorted(WIRE_TYPES)}")
    try:
        view = memoryview(serialized).cast("B")  # slicing a memoryview copies nothing
    except TypeError:
        raise ValueError(
            f"{what}: {type(serialized).__name__} {serialized!r:.40} is not a serialized message"
        ) from None
    try:
        return _TYPESTORE.deserialize_cdr(view, type_name)
    except SerdeError as exc:  # rosbags wraps struct, decode and value errors; the tests fuzz for others
        raise ValueError(
            f"{what}: {view.nbytes} bytes are not a serialized {type_name} ({exc}); "
            "is the publisher's message type broken?"
        ) from None


def serialize_image(stamp_ns: int, frame_id: str, rgb: np.ndarray) -> bytes:
    """A serialized sensor_msgs/Image (rgb8, little-endian CDR) of an HxWx3 uint8 array."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"observation '{frame_id}': {getattr(rgb, 'shape', rgb)!r:.60} is not an HxWx3 uint8 image"
        )
    height, width = rgb.shape[:2]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    types = _TYPESTORE.types
    message = types["sensor_msgs/msg/Image"](
        header=types["std_msgs/msg/Header"](
            stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
        ),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(rgb).reshape(-1),
    )
    return bytes(_TYPESTORE.serialize_cdr(message, WIRE_TYPES["raw"]))
