"""Checks on the actuation node's inputs before they are decoded or acted on (pure, no ROS).

Each returns a value or a reason naming the offending value; none raises on input.
"""

from __future__ import annotations

import json
import math

# An episode event is a few fields; anything much larger is not one.
MAX_EPISODE_EVENT_BYTES = 4096


def action_size_problem(n_bytes: int, max_bytes: int) -> str | None:
    """Why an action message of ``n_bytes`` is refused before decoding, or None."""
    if n_bytes > max_bytes:
        return f"message of {n_bytes} bytes exceeds max_action_bytes {max_bytes}"
    return None


def parse_episode_event(text: str) -> tuple[int | None, str | None]:
    """``(start stamp ns, None)`` for a start event, ``(None, None)`` for another, or ``(None, reason)``."""
    if len(text) > MAX_EPISODE_EVENT_BYTES:
        return None, f"episode event of {len(text)} characters exceeds {MAX_EPISODE_EVENT_BYTES}"
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"episode event is not JSON ({type(exc).__name__}): {text[:60]!r}"
    if not isinstance(event, dict):
        return None, f"episode event: expected a JSON object, got {type(event).__name__}"
    if event.get("event") != "start":
        return None, None
    stamp = event.get("stamp_ns", 0)
    number = isinstance(stamp, (int, float)) and not isinstance(stamp, bool)
    if not number or not math.isfinite(stamp) or stamp < 0:
        return None, f"episode start: stamp_ns must be a number >= 0, got {stamp!r}"
    return int(stamp), None


def joint_state_jump_rad(previous: object, current: object) -> float:
    """The largest per-joint change between two measured joint vectors (rad); 0 without a previous one."""
    if previous is None:
        return 0.0
    return float(max(abs(float(a) - float(b)) for a, b in zip(previous, current, strict=True)))
