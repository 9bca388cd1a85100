"""Safety limits and pure checks for the actuation path (numpy only, no exceptions for bad data).

Every check returns what may be sent (or ``None`` = hold) together with a tuple of
:class:`Violation` records, so the caller can count and log them. Defaults follow safety.md:
Bridge's per-step clip (0.05 m, 0.25 rad per 0.2 s step) and workspace box, MoveIt Servo's joint
margin (halt only motion toward a bound, 0.1 rad) and whole-command velocity scaling, a command
freshness bound of about two policy periods (0.4 s at 5 Hz).

Translation clipping is by Euclidean norm, not per axis: it bounds the true tool displacement per
step to ``max_translation_step_m`` (per-axis clipping lets a diagonal step reach sqrt(3) times the
bound) and it keeps the commanded direction. Rotation is clipped per axis, as the Euler deltas are.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vla_common.robot import ARM_JOINT_NAMES, JOINT_LOWER_RAD, JOINT_UPPER_RAD

# Violation codes (stable strings: nodes count them as diagnostics keys).
WRONG_LENGTH = "wrong_length"
NOT_NUMERIC = "not_numeric"
NAN = "nan"
INF = "inf"
TRANSLATION_CLIPPED = "translation_clipped"
ROTATION_CLIPPED = "rotation_clipped"
GRIPPER_CLIPPED = "gripper_clipped"
WORKSPACE_CLAMPED = "workspace_clamped"
JOINT_MARGIN = "joint_margin"
JOINT_VELOCITY_SCALED = "joint_velocity_scaled"
INVALID_DT = "invalid_dt"
JOINT_MISSING = "joint_missing"
JOINT_STATE_READ_FAILURE = "joint_state_read_failure"
JOINT_OUT_OF_LIMITS = "joint_out_of_limits"

# A joint state this far outside the URDF limits is a bad reading, not a small overshoot.
JOINT_STATE_LIMIT_TOLERANCE_RAD = 0.2
_READ_FAILURE_ATOL_RAD = 1e-3
_JOINT_LIMITS = dict(zip(ARM_JOINT_NAMES, zip(JOINT_LOWER_RAD, JOINT_UPPER_RAD, strict=True), strict=True))


@dataclass(frozen=True)
class Violation:
    """One safety finding: a stable ``code``, the ``field`` it concerns, the offending value, a message."""

    code: str
    field: str
    value: object
    message: str


def _float_tuple(name: str, value: object, length: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in np.asarray(value, dtype=float).reshape(-1))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected {length} numbers, got {value!r}") from error
    if len(values) != length or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}: expected {length} finite numbers, got {value!r}")
    return values


@dataclass(frozen=True)
class SafetyLimits:
    """Per-step limits for the actuation path; validated on construction."""

    max_translation_step_m: float = 0.05  # Euclidean norm of the tool translation per step
    max_rotation_step_rad: float = 0.25  # per Euler axis per step
    workspace_low_m: tuple[float, float, float] = (0.10, -0.20, -0.01)  # tool xyz box, base frame
    workspace_high_m: tuple[float, float, float] = (0.45, 0.25, 0.30)
    joint_margin_rad: float = 0.1  # motion toward a joint limit halts inside this margin
    max_joint_velocity_rad_s: float | tuple[float, ...] = math.pi  # scalar or one per arm joint
    command_timeout_s: float = 0.4  # an action older than this is stale
    max_future_stamp_s: float = 0.05  # an action stamped further ahead than this is stale
    max_tracking_error_rad: float = 0.5  # measured vs commanded joints before re-seeding

    def __post_init__(self) -> None:
        for name in (
            "max_translation_step_m",
            "max_rotation_step_rad",
            "joint_margin_rad",
            "command_timeout_s",
            "max_future_stamp_s",
            "max_tracking_error_rad",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
            if value < 0.0:
                raise ValueError(f"{name}: must be >= 0, got {value}")
        for name in ("command_timeout_s", "max_tracking_error_rad"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        low = _float_tuple("workspace_low_m", self.workspace_low_m, 3)
        high = _float_tuple("workspace_high_m", self.workspace_high_m, 3)
        for axis, lo, hi in zip("xyz", low, high, strict=True):
            if lo >= hi:
                raise ValueError(
                    f"workspace_low_m: {axis} low {lo} must be below workspace_high_m {axis} {hi}"
                )
        object.__setattr__(self, "workspace_low_m", low)
        object.__setattr__(self, "workspace_high_m", high)
        velocity = self.max_joint_velocity_rad_s
        if np.ndim(velocity) == 0:
            speeds: tuple[float, ...] = _float_tuple("max_joint_velocity_rad_s", velocity, 1)
            object.__setattr__(self, "max_joint_velocity_rad_s", speeds[0])
        else:
            speeds = _float_tuple("max_joint_velocity_rad_s", velocity, len(ARM_JOINT_NAMES))
            object.__setattr__(self, "max_joint_velocity_rad_s", speeds)
        if min(speeds) <= 0.0:
            raise ValueError(f"max_joint_velocity_rad_s: must be > 0, got {velocity!r}")
        margins = np.asarray(JOINT_UPPER_RAD) - np.asarray(JOINT_LOWER_RAD)
        if 2.0 * self.joint_margin_rad >= float(np.min(margins)):
            raise ValueError(
                f"joint_margin_rad: {self.joint_margin_rad} leaves no room inside the joint limits"
            )

    def joint_velocity_limits(self) -> np.ndarray:
        """Per-joint speed limits (rad/s) as an array of 6."""
        return np.broadcast_to(np.asarray(self.max_joint_velocity_rad_s, dtype=float), (6,)).copy()


def validate_action(values: object, expected_dim: int) -> tuple[np.ndarray | None, tuple[Violation, ...]]:
    """Return the action as a float64 vector, or ``None`` with the reasons it was rejected."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:  # ragged input and the like
        return None, (Violation(NOT_NUMERIC, "action", values, f"action: not an array of numbers ({error})"),)
    if array.dtype.kind not in "iuf":
        message = f"action: expected real numbers, got dtype {array.dtype}"
        return None, (Violation(NOT_NUMERIC, "action", array.dtype.str, message),)
    if array.ndim != 1 or array.shape[0] != expected_dim:
        message = f"action: expected {expected_dim} values, got shape {array.shape}"
        return None, (Violation(WRONG_LENGTH, "action", array.shape, message),)
    action = array.astype(float)
    violations = []
    for index in np.flatnonzero(np.isnan(action)):
        violations.append(Violation(NAN, f"action[{index}]", float(action[index]), f"action[{index}]: NaN"))
    for index in np.flatnonzero(np.isinf(action)):
        value = float(action[index])
        violations.append(Violation(INF, f"action[{index}]", value, f"action[{index}]: {value}"))
    return (None, tuple(violations)) if violations else (action, ())


def clip_ee_delta(delta7: object, limits: SafetyLimits) -> tuple[np.ndarray | None, tuple[Violation, ...]]:
    """Clip a Bridge action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` to the per-step limits.

    Invalid input (see :func:`validate_action`) gives ``None``.
    """
    action, violations = validate_action(delta7, 7)
    if action is None:
        return None, violations
    clipped = action.copy()
    found: list[Violation] = []
    norm = float(np.linalg.norm(action[:3]))
    if norm > limits.max_translation_step_m:
        clipped[:3] *= limits.max_translation_step_m / norm
        message = (
            f"translation: |{norm:.4f}| m clipped to {limits.max_translation_step_m} m "
            f"(by {norm - limits.max_translation_step_m:.4f} m)"
        )
        found.append(Violation(TRANSLATION_CLIPPED, "translation", norm, message))
    bound = limits.max_rotation_step_rad
    for index, axis in zip(range(3, 6), ("roll", "pitch", "yaw"), strict=True):
        value = float(action[index])
        if abs(value) > bound:
            clipped[index] = math.copysign(bound, value)
            message = (
                f"{axis}: {value:.4f} rad clipped to {clipped[index]:.4f} (by {abs(value) - bound:.4f} rad)"
            )
            found.append(Violation(ROTATION_CLIPPED, axis, value, message))
    gripper = float(action[6])
    if not 0.0 <= gripper <= 1.0:
        clipped[6] = min(max(gripper, 0.0), 1.0)
        message = f"gripper: {gripper:.4f} clipped to {clipped[6]:.1f} (by {abs(gripper - clipped[6]):.4f})"
        found.append(Violation(GRIPPER_CLIPPED, "gripper", gripper, message))
    return clipped, tuple(found)


def clamp_to_workspace(
    position_xyz: object, limits: SafetyLimits
) -> tuple[np.ndarray, tuple[Violation, ...]]:
    """Clamp a tool position into the workspace box; one violation per clamped axis."""
    position = np.asarray(position_xyz, dtype=float).reshape(3)
    clamped = np.clip(position, limits.workspace_low_m, limits.workspace_high_m)
    found = []
    for index, axis in enumerate("xyz"):
        if clamped[index] != position[index]:
            value = float(position[index])
            message = (
                f"workspace {axis}: {value:.4f} m clamped to {clamped[index]:.4f} m "
                f"(by {abs(value - clamped[index]):.4f} m)"
            )
            found.append(Violation(WORKSPACE_CLAMPED, axis, value, message))
    return clamped, tuple(found)


def limit_joint_step(
    target_joints: object, current_joints: object, dt_s: float, limits: SafetyLimits
) -> tuple[np.ndarray, tuple[Violation, ...]]:
    """Limit a joint step: position margin first, then uniform velocity scaling.

    Margin (MoveIt Servo semantics): a target beyond ``[lower + margin, upper - margin]`` is
    clamped to the margin; a joint already inside the margin may not move further toward its
    bound (it halts) but may move away from it. Velocity: if any joint would exceed its speed
    limit over ``dt_s``, the whole step is scaled by the same factor so the direction is kept.
    Non-finite input or a bad ``dt_s`` returns the current joints (hold).
    """
    current = np.asarray(current_joints, dtype=float).reshape(-1)
    target = np.asarray(target_joints, dtype=float).reshape(-1)
    if current.shape != (6,) or target.shape != (6,) or not np.all(np.isfinite(target)):
        message = f"target_joints: expected 6 finite values, got {target.tolist()}"
        return current.copy(), (
            Violation(NAN if target.size == 6 else WRONG_LENGTH, "target_joints", target, message),
        )
    if not (isinstance(dt_s, (int, float)) and math.isfinite(dt_s) and dt_s > 0.0):
        return current.copy(), (Violation(INVALID_DT, "dt_s", dt_s, f"dt_s: expected > 0, got {dt_s}"),)
    lower = JOINT_LOWER_RAD + limits.joint_margin_rad
    upper = JOINT_UPPER_RAD - limits.joint_margin_rad
    # Above upper: clamp to upper, but never beyond max(upper, current) nor past the target going down.
    limited = np.where(target > upper, np.maximum(upper, np.minimum(current, target)), target)
    limited = np.where(target < lower, np.minimum(lower, np.maximum(current, target)), limited)
    found = []
    for index in np.flatnonzero(limited != target):
        name = ARM_JOINT_NAMES[index]
        halted = limited[index] == current[index]
        bound = upper[index] if target[index] > upper[index] else lower[index]
        message = (
            f"{name}: target {target[index]:.4f} rad is within {limits.joint_margin_rad} rad of its limit; "
            + (
                "motion toward the limit halted"
                if halted
                else f"clamped to {limited[index]:.4f} (margin {bound:.4f})"
            )
        )
        found.append(Violation(JOINT_MARGIN, name, float(target[index]), message))
    step = limited - current
    max_step = limits.joint_velocity_limits() * dt_s
    ratio = float(np.max(np.abs(step) / max_step))
    if ratio > 1.0:
        step /= ratio
        worst = int(np.argmax(np.abs(limited - current) / max_step))
        message = (
            f"joint step scaled by {1.0 / ratio:.3f}: {ARM_JOINT_NAMES[worst]} would move "
            f"{abs(limited[worst] - current[worst]) / dt_s:.3f} rad/s (limit {max_step[worst] / dt_s:.3f})"
        )
        found.append(Violation(JOINT_VELOCITY_SCALED, ARM_JOINT_NAMES[worst], ratio, message))
    return current + step, tuple(found)


def command_is_stale(command_stamp_ns: int, now_ns: int, limits: SafetyLimits) -> tuple[bool, str]:
    """Is a command too old, zero-stamped or from the future? Returns (stale, reason)."""
    if command_stamp_ns == 0:
        return True, "command stamp is zero"
    age_s = (now_ns - command_stamp_ns) * 1e-9
    if age_s > limits.command_timeout_s:
        return True, f"command is {age_s:.3f} s old (timeout {limits.command_timeout_s} s)"
    if -age_s > limits.max_future_stamp_s:
        return True, f"command stamp is {-age_s:.3f} s in the future (allowed {limits.max_future_stamp_s} s)"
    return False, ""


def validate_joint_state(
    names: Sequence[str], positions: Sequence[float], expected_names: Sequence[str] = ARM_JOINT_NAMES
) -> tuple[np.ndarray | None, tuple[Violation, ...]]:
    """Pick ``expected_names`` out of a JointState (any order, extra joints ignored) and check them.

    Rejected (``None``): missing joints, a name/position length mismatch, non-numeric or non-finite
    values, every arm joint at -pi (Interbotix read failure), a joint more than
    ``JOINT_STATE_LIMIT_TOLERANCE_RAD`` outside its limits.
    """
    names = list(names)
    try:
        values = np.asarray(positions, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return None, (
            Violation(NOT_NUMERIC, "position", positions, "joint_states: positions are not numbers"),
        )
    if values.size != len(names):
        message = f"joint_states: {len(names)} names but {values.size} positions"
        return None, (Violation(WRONG_LENGTH, "position", values.size, message),)
    index_of = {}
    for index, name in enumerate(names):
        index_of.setdefault(name, index)
    missing = [name for name in expected_names if name not in index_of]
    if missing:
        return None, tuple(
            Violation(JOINT_MISSING, name, None, f"joint_states: joint '{name}' is missing")
            for name in missing
        )
    joints = np.array([values[index_of[name]] for name in expected_names])
    found = []
    for name, value in zip(expected_names, joints, strict=True):
        if not math.isfinite(value):
            found.append(Violation(NAN if math.isnan(value) else INF, name, float(value), f"{name}: {value}"))
    if found:
        return None, tuple(found)
    arm = [index for index, name in enumerate(expected_names) if name in _JOINT_LIMITS]
    if arm and np.allclose(joints[arm], -math.pi, atol=_READ_FAILURE_ATOL_RAD):
        message = "joint_states: every arm joint reads -pi (driver read failure)"
        return None, (Violation(JOINT_STATE_READ_FAILURE, "position", joints.tolist(), message),)
    for name, value in zip(expected_names, joints, strict=True):
        if name not in _JOINT_LIMITS:
            continue
        low, high = _JOINT_LIMITS[name]
        excess = max(low - value, value - high)
        if excess > JOINT_STATE_LIMIT_TOLERANCE_RAD:
            message = (
                f"{name}: {value:.4f} rad is {excess:.3f} rad outside its limits [{low:.4f}, {high:.4f}]"
            )
            found.append(Violation(JOINT_OUT_OF_LIMITS, name, float(value), message))
    return (None, tuple(found)) if found else (joints, ())
