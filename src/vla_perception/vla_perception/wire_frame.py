"""Camera frames read in place from their serialized CDR bytes (pure, no ROS).

The perception node subscribes to its cameras with ``raw=True``: rclpy hands over the serialized
message as ``bytes`` and skips building a Python message, which copied every image's pixels into
an ``array.array`` (0.2-0.3 ms per 640x480 frame, more than everything else perception does to
it). :func:`parse_frame` reads sensor_msgs/Image or CompressedImage in place
(vla_common.image_wire, which the policy node uses for the observations too); the frame carries
the message's field names, so frame_gate, the synchroniser and the decoders take it as they took
the message. A buffer that is not a valid message of the type is a :class:`Refusal` with the
cause ``malformed``, never an exception. Observations are written with
``vla_common.image_wire.serialize_image`` (re-exported here).
"""

from __future__ import annotations

from typing import Any

from vla_common.image_wire import WIRE_TYPES, deserialize_image, serialize_image
from vla_perception.frame_gate import Refusal

__all__ = ["WIRE_TYPES", "parse_frame", "serialize_image"]


def parse_frame(camera: str, transport: str, serialized: Any) -> tuple[Any, Refusal | None]:
    """``(frame, None)`` from a serialized camera message, or ``(None, refusal)`` if it is malformed.

    ``serialized``: the bytes a raw subscription delivers (any bytes-like object); ``transport``:
    ``raw`` (sensor_msgs/Image) or ``compressed`` (CompressedImage), else a ``ValueError`` (a
    configuration error). The frame's ``data`` is a read-only view of ``serialized``, which it
    keeps alive.
    """
    if transport not in WIRE_TYPES:
        raise ValueError(f"camera '{camera}': transport {transport!r} is not one of {sorted(WIRE_TYPES)}")
    try:
        return deserialize_image(serialized, transport, what=f"camera '{camera}'"), None
    except ValueError as exc:
        return None, Refusal("malformed", str(exc))
