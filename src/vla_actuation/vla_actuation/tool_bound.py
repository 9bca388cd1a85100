"""The per-step tool bound on what is commanded: FK of the joints, after IK and every clamp (pure numpy).

The controller clips the REQUESTED tool delta; IK, the workspace clamp, the joint margin and the
speed scaling then change it. :func:`limit_tool_step` checks the REALISED step (FK of the previous
and the new joint targets) and scales the joint step until the tool moves at most
``max_translation_step_m`` and turns at most ``max_rotation_step_rad`` (geodesic angle).
"""

from __future__ import annotations

import math

import numpy as np

from vla_actuation.kinematics import forward_kinematics
from vla_actuation.safety import SafetyLimits, Violation

TOOL_STEP_SCALED = "tool_step_scaled"
_BISECTION_STEPS = 30  # 2^-30 of the step: far below the IK tolerance


def pose_travel(pose_a: np.ndarray, pose_b: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation (rad, geodesic angle) between two 4x4 tool poses."""
    translation = float(np.linalg.norm(pose_b[:3, 3] - pose_a[:3, 3]))
    relative = pose_a[:3, :3].T @ pose_b[:3, :3]
    cos_angle = min(1.0, max(-1.0, (float(np.trace(relative)) - 1.0) / 2.0))
    return translation, math.acos(cos_angle)


def tool_travel(joints_a: object, joints_b: object) -> tuple[float, float]:
    """Tool translation (m) and rotation (rad, geodesic angle) between the FK of two joint vectors."""
    return pose_travel(
        forward_kinematics(np.asarray(joints_a, dtype=float)),
        forward_kinematics(np.asarray(joints_b, dtype=float)),
    )


def within_tool_bound(translation: float, rotation: float, limits: SafetyLimits) -> bool:
    """Whether a tool motion (m, rad) is within the per-step bound."""
    return translation <= limits.max_translation_step_m and rotation <= limits.max_rotation_step_rad


def limit_tool_step(
    current_joints: object, target_joints: object, limits: SafetyLimits
) -> tuple[np.ndarray, tuple[Violation, ...]]:
    """Scale the joint step so the realised tool motion is within the per-step bound.

    The bound is ``max_translation_step_m`` on the tool's displacement and ``max_rotation_step_rad``
    on its rotation angle, both from FK of the joints (what IK, the workspace clamp, the joint
    margin and the speed scaling really produced). The step is scaled uniformly (direction kept) by
    the largest fraction in [0, 1] found by bisection that satisfies the bound.
    """
    current = np.asarray(current_joints, dtype=float).reshape(6)
    target = np.asarray(target_joints, dtype=float).reshape(6)
    translation, rotation = tool_travel(current, target)
    if within_tool_bound(translation, rotation, limits):
        return target.copy(), ()
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if within_tool_bound(*tool_travel(current, current + middle * (target - current)), limits):
            low = middle
        else:
            high = middle
    message = (
        f"realised tool step {translation:.4f} m / {rotation:.4f} rad exceeds "
        f"{limits.max_translation_step_m} m / {limits.max_rotation_step_rad} rad; step scaled by {low:.3f}"
    )
    violation = Violation(TOOL_STEP_SCALED, "joint_targets_rad", (translation, rotation), message)
    return current + low * (target - current), (violation,)
