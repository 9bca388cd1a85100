"""Camera frames read straight from their serialized CDR bytes, without copying the pixels (pure, no ROS).

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
"""

from __future__ import annotations

from typing import Any

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
