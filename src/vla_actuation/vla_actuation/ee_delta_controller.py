"""Per-control-step pipeline from a Bridge end-effector delta to joint targets (pure numpy).

One call of :meth:`EeDeltaController.step` per control tick (5 Hz for Bridge):

1. tracking check: measured joints further than ``max_tracking_error_rad`` from the previous
   targets re-seed the controller from the measured joints (targets and target pose);
2. ``validate_action`` then ``clip_ee_delta`` (per-step translation/rotation/gripper limits);
3. ``apply_ee_delta`` to the previous TARGET pose (Bridge: deltas accumulate on the target, not
   on the measured pose, so servo lag does not shrink the motion);
4. ``clamp_to_workspace`` on the new tool position;
5. ``solve_ik`` seeded with the previous joint targets;
6. ``limit_joint_step`` against the previous targets (joint margin, speed). The step is streamed
   with the minimum-jerk profile of :func:`servo_waypoints`, whose peak speed is 1.875 times its
   average, so the speed limit is applied over ``step_dt_s / 1.875``: the PEAK servo speed stays
   within ``max_joint_velocity_rad_s`` (pi rad/s -> at most 0.335 rad per 0.2 s step);
   then ``limit_tool_step``: the realised tool step (FK of the commanded joints) within the bound;
7. ``gripper_to_finger_m`` for the finger target.

An invalid action or an IK failure holds: the previous joint and finger targets are returned and
the target pose does not advance. When step 6 changes the IK answer, the target pose becomes the
FK of the joints actually commanded, so the target never runs away from the arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vla_actuation.kinematics import (
    FINGER_LOWER_M,
    FINGER_UPPER_M,
    forward_kinematics,
    gripper_to_finger_m,
    solve_ik,
)
from vla_actuation.safety import (
    SafetyLimits,
    Violation,
    clamp_to_workspace,
    clip_ee_delta,
    limit_joint_step,
)
from vla_actuation.tool_bound import limit_tool_step
from vla_common.action_space import BRIDGE_STEP_DT_S
from vla_common.ee_delta import apply_ee_delta

IK_FAILED = "ik_failed"
TRACKING_ERROR = "tracking_error"
MEASURED_INVALID = "measured_joints_invalid"
# Peak / average speed of the minimum-jerk profile: ds/du = 30 u^2 (1 - u)^2 peaks at u = 1/2.
MIN_JERK_PEAK_SPEED_RATIO = 1.875


@dataclass(frozen=True)
class ControllerConfig:
    """Settings of the end-effector delta controller; validated on construction."""

    step_dt_s: float = BRIDGE_STEP_DT_S  # control period; the graph passes its own (control.yaml)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    ik_position_tolerance_m: float = 1e-4
    ik_orientation_tolerance_rad: float = 1e-3
    ik_max_iterations: int = 100  # per IK attempt

    def __post_init__(self) -> None:
        for name in ("step_dt_s", "ik_position_tolerance_m", "ik_orientation_tolerance_rad"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        if not isinstance(self.limits, SafetyLimits):
            raise ValueError(f"limits: expected SafetyLimits, got {type(self.limits).__name__}")
        if isinstance(self.ik_max_iterations, bool) or not isinstance(self.ik_max_iterations, int):
            raise ValueError(f"ik_max_iterations: expected an int, got {self.ik_max_iterations!r}")
        if self.ik_max_iterations < 1:
            raise ValueError(f"ik_max_iterations: must be >= 1, got {self.ik_max_iterations}")


@dataclass(frozen=True)
class ControlStep:
    """What one control step commands. When not accepted the targets equal the previous ones (hold)."""

    accepted: bool
    joint_targets_rad: np.ndarray
    finger_target_m: float
    tool_target_pose: np.ndarray
    violations: tuple[Violation, ...]
    ik_iterations: int


def _six_finite(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.shape != (6,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected 6 finite joint values, got {array.tolist()}")
    return array


class EeDeltaController:
    """Stateful Bridge-style end-effector delta controller. Call :meth:`reset` before :meth:`step`."""

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config if config is not None else ControllerConfig()
        self._joint_targets: np.ndarray | None = None
        self._target_pose: np.ndarray | None = None
        self._finger_target_m = FINGER_UPPER_M

    @property
    def joint_targets_rad(self) -> np.ndarray | None:
        return None if self._joint_targets is None else self._joint_targets.copy()

    @property
    def tool_target_pose(self) -> np.ndarray | None:
        return None if self._target_pose is None else self._target_pose.copy()

    def reset(self, measured_joints_rad: object, finger_m: float | None = None) -> None:
        """Start from where the arm is: targets := measured joints, target pose := their FK (no jump).

        ``finger_m`` (the measured finger) becomes the finger target; ``None`` keeps the previous
        finger target (open on a fresh controller).
        Everything is checked before anything changes: a ValueError leaves the controller as it was.
        """
        joints = _six_finite(measured_joints_rad, "measured_joints_rad")
        if finger_m is not None and not math.isfinite(finger_m):
            raise ValueError(f"finger_m: expected a finite value, got {finger_m}")
        self._joint_targets = joints.copy()
        self._target_pose = forward_kinematics(joints)
        if finger_m is not None:
            self._finger_target_m = min(max(float(finger_m), FINGER_LOWER_M), FINGER_UPPER_M)

    def _hold(self, violations: list[Violation], iterations: int = 0) -> ControlStep:
        assert self._joint_targets is not None and self._target_pose is not None
        return ControlStep(
            False,
            self._joint_targets.copy(),
            self._finger_target_m,
            self._target_pose.copy(),
            tuple(violations),
            iterations,
        )

    def step(self, action7: object, measured_joints_rad: object) -> ControlStep:
        """Run the pipeline for one Bridge action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``.

        Raises RuntimeError only if called before :meth:`reset`; bad data holds instead.
        """
        if self._joint_targets is None or self._target_pose is None:
            raise RuntimeError("EeDeltaController.step called before reset(measured_joints_rad)")
        limits = self.config.limits
        violations: list[Violation] = []
        measured = np.asarray(measured_joints_rad, dtype=float).reshape(-1)
        if measured.shape != (6,) or not np.all(np.isfinite(measured)):
            message = f"measured_joints_rad: expected 6 finite values, got {measured.tolist()}; holding"
            return self._hold(
                [Violation(MEASURED_INVALID, "measured_joints_rad", measured.tolist(), message)]
            )
        tracking_error = float(np.max(np.abs(measured - self._joint_targets)))
        if tracking_error > limits.max_tracking_error_rad:
            message = (
                f"tracking error {tracking_error:.3f} rad exceeds {limits.max_tracking_error_rad} rad; "
                "re-seeded from the measured joints"
            )
            violations.append(Violation(TRACKING_ERROR, "measured_joints_rad", tracking_error, message))
            self.reset(measured)

        delta, found = clip_ee_delta(action7, limits)
        violations.extend(found)
        if delta is None:
            return self._hold(violations)
        target_pose = apply_ee_delta(self._target_pose, delta[:6])
        position, found = clamp_to_workspace(target_pose[:3, 3], limits)
        violations.extend(found)
        target_pose[:3, 3] = position

        ik = solve_ik(
            target_pose,
            self._joint_targets,
            position_tolerance_m=self.config.ik_position_tolerance_m,
            orientation_tolerance_rad=self.config.ik_orientation_tolerance_rad,
            max_iterations=self.config.ik_max_iterations,
        )
        if not ik.success:
            violations.append(
                Violation(IK_FAILED, "tool_target_pose", position.tolist(), f"IK: {ik.reason}; holding")
            )
            return self._hold(violations, ik.iterations)

        joint_targets, found = limit_joint_step(
            ik.joints_rad, self._joint_targets, self.config.step_dt_s / MIN_JERK_PEAK_SPEED_RATIO, limits
        )
        violations.extend(found)
        # The realised tool step (FK of what is commanded) obeys the per-step bound after IK and
        # every clamp, not only the requested delta.
        joint_targets, tool_found = limit_tool_step(self._joint_targets, joint_targets, limits)
        violations.extend(tool_found)
        if found or tool_found:  # the arm will not reach the IK answer: track what is really commanded
            target_pose = forward_kinematics(joint_targets)
        self._joint_targets = joint_targets
        self._target_pose = target_pose
        self._finger_target_m = gripper_to_finger_m(delta[6])
        return ControlStep(
            True,
            joint_targets.copy(),
            self._finger_target_m,
            target_pose.copy(),
            tuple(violations),
            ik.iterations,
        )


def servo_waypoints(
    start_joints: object, end_joints: object, duration_s: float, servo_hz: float
) -> list[tuple[float, np.ndarray]]:
    """Minimum-jerk interpolation from ``start_joints`` to ``end_joints`` at ``servo_hz``.

    Returns ``(time_from_now_s, joints)`` points spaced at most ``1 / servo_hz`` apart, excluding the
    start and ending exactly at ``(duration_s, end_joints)``. Profile
    ``s(u) = 10u^3 - 15u^4 + 6u^5``: zero velocity and acceleration at both ends, so consecutive
    5 Hz steps do not jerk the servos.
    """
    start = _six_finite(start_joints, "start_joints")
    end = _six_finite(end_joints, "end_joints")
    for name, value in (("duration_s", duration_s), ("servo_hz", servo_hz)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0.0):
            raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    count = max(1, math.ceil(duration_s * servo_hz - 1e-9))
    points = []
    for index in range(1, count + 1):
        u = index / count
        s = u**3 * (10.0 - 15.0 * u + 6.0 * u * u)
        points.append((duration_s * u, start + s * (end - start)))
    points[-1] = (float(duration_s), end.copy())
    return points
