"""Checks on the actuation node's inputs before they are decoded or acted on (pure, no ROS).

Each returns a value or a reason naming the offending value; none raises on input. /vla/episode
is read by vla_common.inbound.decode_episode_event, as in every node.
"""

from __future__ import annotations

import numpy as np


def action_size_problem(n_bytes: int, max_bytes: int) -> str | None:
    """Why an action message of ``n_bytes`` is refused before decoding, or None."""
    if n_bytes > max_bytes:
        return f"message of {n_bytes} bytes exceeds max_action_bytes {max_bytes}"
    return None


def joint_state_jump_rad(
    previous: object, current: object, elapsed_s: float = 0.0, speed_rad_s: object = 0.0
) -> float:
    """How far a measured joint moved between two joint states beyond what ``speed_rad_s`` (one per
    joint, or one for all) allows over the ``elapsed_s`` between their stamps (rad, the largest over
    the joints); 0 without a previous state. An arm moving at its speed limit while joint states
    arrive late or bunched never counts as a jump; a reset we were not told of does."""
    if previous is None:
        return 0.0
    change = np.abs(np.asarray(current, dtype=float) - np.asarray(previous, dtype=float))
    allowed = np.asarray(speed_rad_s, dtype=float) * max(0.0, float(elapsed_s))
    return float(np.max(change - allowed))
