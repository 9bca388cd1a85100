"""Camera frames read in place from their serialized CDR bytes; observations written as CDR (pure, no ROS).

The perception node subscribes to its cameras with ``raw=True``: rclpy hands over the serialized
message as ``bytes`` and skips building a Python message, which copied every image's pixels into
an ``array.array`` (0.2-0.3 ms per 640x480 frame, more than everything else perception does to
it). :func:`parse_frame` reads sensor_msgs/Image or CompressedImage with the ``rosbags`` CDR
deserialiser, whose ``data`` is a read-only numpy view of those bytes; the result carries the
same field names as the ROS message (``header.stamp.sec``, ``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``; ``format`` for compressed), so frame_gate, the synchroniser
and the decoders take it as they took the message. A buffer that is not a valid message of the
type (truncated, lengths past its end, a bad encapsulation header) is a :class:`Refusal` with
the cause ``malformed``, never an exception.

:func:`serialize_image` writes an rgb8 observation as a serialized sensor_msgs/Image for a raw
publish (rclpy's ``publish(bytes)``): one copy of the pixels, where building a message copied them
into an ``array.array``, then into the C message, then into the CDR buffer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

from vla_perception.frame_gate import Refusal

# sensor_msgs/Image and CompressedImage (and std_msgs/Header) are the same in every ROS 2 distro.
_TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
WIRE_TYPES = {"raw": "sensor_msgs/msg/Image", "compressed": "sensor_msgs/msg/CompressedImage"}


def parse_frame(camera: str, transport: str, serialized: Any) -> tuple[Any, Refusal | None]:
    """``(frame, None)`` from a serialized camera message, or ``(None, refusal)`` if it is malformed.

    ``serialized``: the bytes a raw subscription delivers (any bytes-like object); ``transport``:
    ``raw`` (sensor_msgs/Image) or ``compressed`` (CompressedImage). The frame's ``data`` is a
    read-only view of ``serialized``, which it keeps alive.
    """
    type_name = WIRE_TYPES.get(transport)
    if type_name is None:
        raise ValueError(f"camera '{camera}': transport {transport!r} is not one of {sorted(WIRE_TYPES)}")
    try:
        view = memoryview(serialized).cast("B")  # slicing a memoryview copies nothing
    except TypeError:
        return None, Refusal(
            "malformed",
            f"camera '{camera}': {type(serialized).__name__} {serialized!r:.40} is not a serialized message",
        )
    try:
        return _TYPESTORE.deserialize_cdr(view, type_name), None
    except SerdeError as exc:  # rosbags wraps struct, decode and value errors; the tests fuzz for others
        return None, Refusal(
            "malformed",
            f"camera '{camera}': {view.nbytes} bytes are not a serialized {type_name} ({exc}); "
            "is the publisher's message type broken?",
        )


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
