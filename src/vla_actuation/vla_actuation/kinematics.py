"""WidowX 250 6DOF (wx250s) kinematics: product-of-exponentials FK, Jacobians and IK (pure numpy).

Frames: the space frame is the robot's ``base_link`` (z up, x forward); the tool frame is
``ee_gripper_link`` (x along the fingers). With all joints at zero the tool sits at
``HOME_TOOL_POSE`` (identity rotation, (0.458325, 0, 0.36065) m).

Forward kinematics (space form): ``T(q) = exp([S1] q1) ... exp([S6] q6) @ M`` with the screw axes
``S_i = (omega_i; v_i)`` in ``SCREW_AXES`` (one row per joint).

Inverse kinematics is Levenberg-Marquardt (damped least squares, adaptive damping) on the error
``[p_target - p; log(R_target @ R.T)]`` expressed in the base frame, with the matching Jacobian of
the tool point. It is seeded with the current joints. If that attempt does not converge inside the
joint limits, it restarts (with the limits enforced at every iteration) from the closed-form
branches of the arm that lie inside the limits (axes 4-6 meet at a wrist centre, so there are up to
8), nearest to the seed first, then from the seed and the Bridge neutral pose; the first converged
restart wins, so the answer is the branch nearest the seed. It never raises: a bad or unreachable
target gives ``IkResult(success=False, reason=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_common.robot import (  # noqa: F401 - re-exported: the kinematics' joint order and limits
    ARM_JOINT_NAMES,
    CONTINUOUS_LIMIT_RAD,
    FINGER_JOINT_NAME,
    FINGER_LOWER_M,
    FINGER_UPPER_M,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
)
from vla_common.rotations import rotation_vector

HOME_TOOL_POSE = np.array(
    [[1.0, 0.0, 0.0, 0.458325], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.36065], [0.0, 0.0, 0.0, 1.0]]
)
# Rows: (omega_x, omega_y, omega_z, v_x, v_y, v_z) for waist .. wrist_rotate.
SCREW_AXES = np.array(
    [
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, -0.11065, 0.0, 0.0],
        [0.0, 1.0, 0.0, -0.36065, 0.0, 0.04975],
        [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
        [0.0, 1.0, 0.0, -0.36065, 0.0, 0.29975],
        [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
    ]
)
HOME_JOINTS_RAD = np.zeros(6)
SLEEP_JOINTS_RAD = np.array([0.0, -1.80, 1.55, 0.0, 0.8, 0.0])
BRIDGE_NEUTRAL_JOINTS_RAD = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160])

# Geometry used to reject targets before iterating. The shoulder pivot is on the waist axis at
# z = 0.11065 m; upper arm 0.2549 m, forearm to wrist_angle 0.25 m, wrist_angle to tool 0.158575 m.
SHOULDER_PIVOT_M = np.array([0.0, 0.0, 0.11065])
MAX_REACH_FROM_SHOULDER_M = math.hypot(0.04975, 0.25) + 0.25 + 0.158575
# Conservative keep-out around the turret: the tool point may not be within this radius of the
# waist axis below shoulder height.
BASE_KEEP_OUT_RADIUS_M = 0.06
BASE_KEEP_OUT_TOP_M = 0.11065

for _array in (
    HOME_TOOL_POSE,
    SCREW_AXES,
    HOME_JOINTS_RAD,
    SLEEP_JOINTS_RAD,
    BRIDGE_NEUTRAL_JOINTS_RAD,
    SHOULDER_PIVOT_M,
):
    _array.setflags(write=False)

# Precomputed per-axis terms for Rodrigues' formula: K = [omega], K2 = K @ K, and K v, K2 v.
_OMEGA = SCREW_AXES[:, :3]
_V = SCREW_AXES[:, 3:]
_K = np.zeros((6, 3, 3))
_K[:, 0, 1], _K[:, 0, 2], _K[:, 1, 2] = -_OMEGA[:, 2], _OMEGA[:, 1], -_OMEGA[:, 0]
_K[:, 1, 0], _K[:, 2, 0], _K[:, 2, 1] = _OMEGA[:, 2], -_OMEGA[:, 1], _OMEGA[:, 0]
_K2 = _K @ _K
_KV = np.einsum("nij,nj->ni", _K, _V)
_K2V = np.einsum("nij,nj->ni", _K2, _V)
# A point on each joint axis at home: q = omega x v for a unit omega and v = -omega x q (q _|_ omega).
_AXIS_POINTS = np.cross(_OMEGA, _V)
# Every joint of this arm turns about a base-frame coordinate axis at home (omega = +x, +y or +z), so
# the chain below composes each joint's rotation in closed form, on Python floats: a 6-joint chain
# of 3-vectors is too small for numpy, whose per-call cost was most of the IK time.
_AXIS_INDEX = tuple(int(np.argmax(omega)) for omega in _OMEGA)
if not all(np.array_equal(omega, np.eye(3)[axis]) for omega, axis in zip(_OMEGA, _AXIS_INDEX, strict=True)):
    raise ValueError(f"kinematics: screw axes {_OMEGA.tolist()} must each be +x, +y or +z")
# Per joint: the translation terms (v, K v, K2 v) and its axis point, as float tuples.
_JOINT_TERMS = tuple(
    (
        tuple(map(float, _V[i])),
        tuple(map(float, _KV[i])),
        tuple(map(float, _K2V[i])),
        tuple(map(float, _AXIS_POINTS[i])),
    )
    for i in range(6)
)
_HOME_ROTATION = HOME_TOOL_POSE[:3, :3]
_HOME_OFFSET = tuple(map(float, HOME_TOOL_POSE[:3, 3]))
_CONTINUOUS_MASK = np.array([True, False, False, True, False, True])
# Planar geometry of the arm for the closed-form seeds (see _analytic_seeds).
_UPPER_ARM_M = math.hypot(0.04975, 0.25)
_UPPER_ARM_ANGLE = math.atan2(0.25, 0.04975)
_FOREARM_M = 0.25
_WRIST_TO_TOOL_M = 0.158575
_ORIENTATION_WEIGHT_M = 0.1  # metres per radian when mixing position and orientation errors
_MAX_STEP_RAD = 0.5  # largest joint change per iteration
# IK error weights: [position (m); orientation (rad) x _ORIENTATION_WEIGHT_M]
_ERROR_WEIGHTS = np.array(
    [1.0, 1.0, 1.0, _ORIENTATION_WEIGHT_M, _ORIENTATION_WEIGHT_M, _ORIENTATION_WEIGHT_M]
)
_ERROR_WEIGHTS_COLUMN = _ERROR_WEIGHTS[:, None]


@dataclass(frozen=True)
class IkResult:
    """Outcome of :func:`solve_ik`. ``joints_rad`` is the best estimate even when not successful."""

    joints_rad: np.ndarray
    success: bool
    position_error_m: float
    orientation_error_rad: float
    iterations: int
    reason: str


def _joint_array(joints_rad: np.ndarray, name: str) -> np.ndarray:
    q = np.asarray(joints_rad, dtype=float).reshape(-1)
    if q.shape != (6,):
        raise ValueError(f"{name}: expected 6 joint values, got {q.size}")
    return q


_Frame = tuple[float, float, float, float, float, float, float, float, float, float, float, float]


def _frames(q: np.ndarray) -> tuple[_Frame, list[_Frame]]:
    """The flange frame after the 6 joint exponentials, and the frame each joint acts in (T_1 ... T_{i-1}).

    A frame is (r00, r01, r02, r10, r11, r12, r20, r21, r22, p0, p1, p2): rotation row-major, then
    position. Joint i adds the translation q v + (1 - cos q) K v + (q - sin q) K2 v (Rodrigues) and
    turns two columns of the rotation about its coordinate axis.
    """
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    p0 = p1 = p2 = 0.0
    parents = []
    for i in range(6):
        parents.append((r00, r01, r02, r10, r11, r12, r20, r21, r22, p0, p1, p2))
        angle = float(q[i])
        s, c = math.sin(angle), math.cos(angle)
        c1, qs = 1.0 - c, angle - s
        v, kv, k2v, _ = _JOINT_TERMS[i]
        t0 = angle * v[0] + c1 * kv[0] + qs * k2v[0]
        t1 = angle * v[1] + c1 * kv[1] + qs * k2v[1]
        t2 = angle * v[2] + c1 * kv[2] + qs * k2v[2]
        p0 += r00 * t0 + r01 * t1 + r02 * t2
        p1 += r10 * t0 + r11 * t1 + r12 * t2
        p2 += r20 * t0 + r21 * t1 + r22 * t2
        axis = _AXIS_INDEX[i]
        if axis == 0:  # R @ Rx(q): columns y, z turn
            r01, r02 = c * r01 + s * r02, c * r02 - s * r01
            r11, r12 = c * r11 + s * r12, c * r12 - s * r11
            r21, r22 = c * r21 + s * r22, c * r22 - s * r21
        elif axis == 1:  # R @ Ry(q): columns z, x turn
            r00, r02 = c * r00 - s * r02, c * r02 + s * r00
            r10, r12 = c * r10 - s * r12, c * r12 + s * r10
            r20, r22 = c * r20 - s * r22, c * r22 + s * r20
        else:  # R @ Rz(q): columns x, y turn
            r00, r01 = c * r00 + s * r01, c * r01 - s * r00
            r10, r11 = c * r10 + s * r11, c * r11 - s * r10
            r20, r21 = c * r20 + s * r21, c * r21 - s * r20
    return (r00, r01, r02, r10, r11, r12, r20, r21, r22, p0, p1, p2), parents


def _tool(flange: _Frame) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Tool rotation (3x3) and tool position from the flange frame (flange @ HOME_TOOL_POSE)."""
    r00, r01, r02, r10, r11, r12, r20, r21, r22, p0, p1, p2 = flange
    h0, h1, h2 = _HOME_OFFSET
    position = (
        r00 * h0 + r01 * h1 + r02 * h2 + p0,
        r10 * h0 + r11 * h1 + r12 * h2 + p1,
        r20 * h0 + r21 * h1 + r22 * h2 + p2,
    )
    rotation = np.array(((r00, r01, r02), (r10, r11, r12), (r20, r21, r22))) @ _HOME_ROTATION
    return rotation, position


def _fk_and_jacobian(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tool rotation, tool position and the 6x6 tool-point Jacobian [linear; angular] (base frame)."""
    flange, parents = _frames(q)
    tool_rot, (x, y, z) = _tool(flange)
    columns = []  # per joint: (tool-point velocity; angular velocity) for a unit joint rate
    for i, (a00, a01, a02, a10, a11, a12, a20, a21, a22, b0, b1, b2) in enumerate(parents):
        axis = _AXIS_INDEX[i]  # the joint's axis in the base frame: that column of its frame
        w0, w1, w2 = (a00, a10, a20) if axis == 0 else (a01, a11, a21) if axis == 1 else (a02, a12, a22)
        point = _JOINT_TERMS[i][3]
        d0 = x - (a00 * point[0] + a01 * point[1] + a02 * point[2] + b0)  # tool point - axis point
        d1 = y - (a10 * point[0] + a11 * point[1] + a12 * point[2] + b1)
        d2 = z - (a20 * point[0] + a21 * point[1] + a22 * point[2] + b2)
        columns.append((w1 * d2 - w2 * d1, w2 * d0 - w0 * d2, w0 * d1 - w1 * d0, w0, w1, w2))
    jacobian = np.array(columns).T
    return tool_rot, np.array((x, y, z)), jacobian


def _cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (n,3) arrays (np.cross is slow for tiny inputs)."""
    return np.stack(
        [
            a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
            a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
            a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0],
        ],
        axis=1,
    )


def forward_kinematics(joints_rad: np.ndarray) -> np.ndarray:
    """4x4 homogeneous pose of ee_gripper_link in base_link for the 6 arm joints (rad)."""
    flange, _ = _frames(_joint_array(joints_rad, "joints_rad"))
    rotation, position = _tool(flange)
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = position
    return pose


def space_jacobian(joints_rad: np.ndarray) -> np.ndarray:
    """6x6 space Jacobian: column i is the twist (omega; v) of joint i in the base frame."""
    q = _joint_array(joints_rad, "joints_rad")
    _, tool_pos, jacobian = _fk_and_jacobian(q)
    omegas = jacobian[3:].T
    # v of the base-frame origin = velocity of the tool point - omega x tool_pos.
    origin_velocity = jacobian[:3].T - _cross_rows(omegas, np.tile(tool_pos, (6, 1)))
    return np.vstack([omegas.T, origin_velocity.T])


def tool_point_jacobian(joints_rad: np.ndarray) -> np.ndarray:
    """6x6 Jacobian mapping joint rates to [tool-point linear velocity; angular velocity] (base frame)."""
    return _fk_and_jacobian(_joint_array(joints_rad, "joints_rad"))[2]


def check_position_reachable(position_m: np.ndarray) -> str:
    """Return '' when the tool point could reach ``position_m``, else the reason it cannot."""
    p = np.asarray(position_m, dtype=float).reshape(3)
    distance = float(np.linalg.norm(p - SHOULDER_PIVOT_M))
    if distance > MAX_REACH_FROM_SHOULDER_M:
        return (
            f"target position ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m is {distance:.3f} m from the shoulder; "
            f"the arm reaches at most {MAX_REACH_FROM_SHOULDER_M:.3f} m"
        )
    if math.hypot(p[0], p[1]) < BASE_KEEP_OUT_RADIUS_M and p[2] < BASE_KEEP_OUT_TOP_M:
        return (
            f"target position ({p[0]:.3f}, {p[1]:.3f}, {p[2]:.3f}) m is inside the base keep-out "
            f"(radius {BASE_KEEP_OUT_RADIUS_M} m, below z={BASE_KEEP_OUT_TOP_M} m)"
        )
    return ""


def limit_violation(joints_rad: np.ndarray) -> str:
    """Return '' when every joint is within its limits, else a reason naming the first bad joint."""
    q = _joint_array(joints_rad, "joints_rad")
    for name, value, low, high in zip(ARM_JOINT_NAMES, q, JOINT_LOWER_RAD, JOINT_UPPER_RAD, strict=True):
        if not low <= value <= high:
            return f"joint '{name}' = {value:.4f} rad is outside its limits [{low:.4f}, {high:.4f}]"
    return ""


_CONTINUOUS_INDICES = tuple(int(i) for i in np.flatnonzero(_CONTINUOUS_MASK))
_LIMITS = tuple(zip(JOINT_LOWER_RAD.tolist(), JOINT_UPPER_RAD.tolist(), strict=True))


def _wrap_and_clip(q: np.ndarray, enforce_limits: bool) -> np.ndarray:
    """Continuous joints wrapped to [-pi, pi); then every joint clipped to its limits, or (without
    ``enforce_limits``) the continuous ones to +-CONTINUOUS_LIMIT_RAD. On floats: 6 values."""
    values = q.tolist()
    for i in _CONTINUOUS_INDICES:
        values[i] = (values[i] + math.pi) % (2.0 * math.pi) - math.pi  # Python's % floors like numpy's
    if enforce_limits:
        values = [min(max(value, low), high) for value, (low, high) in zip(values, _LIMITS, strict=True)]
    else:
        for i in _CONTINUOUS_INDICES:
            values[i] = min(max(values[i], -CONTINUOUS_LIMIT_RAD), CONTINUOUS_LIMIT_RAD)
    return np.array(values)


@dataclass
class _Attempt:
    joints: np.ndarray
    converged: bool
    position_error: float
    orientation_error: float
    iterations: int


def _levenberg_marquardt(
    target_rot: np.ndarray,
    target_pos: np.ndarray,
    seed: np.ndarray,
    tolerances: tuple[float, float],
    max_iterations: int,
    enforce_limits: bool,
) -> _Attempt:
    def evaluate(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        rot, pos, jac = _fk_and_jacobian(q)
        position_error = target_pos - pos
        orientation_error = rotation_vector(target_rot @ rot.T)
        return (
            np.concatenate([position_error, orientation_error]) * _ERROR_WEIGHTS,
            jac * _ERROR_WEIGHTS_COLUMN,
            math.sqrt(position_error @ position_error),  # what np.linalg.norm computes, without its checks
            math.sqrt(orientation_error @ orientation_error),
        )

    q = _wrap_and_clip(seed, enforce_limits)
    error, jac, pos_err, rot_err = evaluate(q)
    cost = float(error @ error)
    damping = 1e-4
    iterations = 0
    while iterations < max_iterations:
        if pos_err <= tolerances[0] and rot_err <= tolerances[1]:
            return _Attempt(q, True, pos_err, rot_err, iterations)
        iterations += 1
        normal = jac.T @ jac
        damped = normal.copy()  # normal + damping * (diag(normal) + 1e-6 I)
        damped.flat[::7] += damping * (normal.diagonal() + 1e-6)
        step = np.linalg.solve(damped, jac.T @ error)
        largest = float(np.max(np.abs(step)))
        if largest > _MAX_STEP_RAD:
            step *= _MAX_STEP_RAD / largest
        candidate = _wrap_and_clip(q + step, enforce_limits)
        c_error, c_jac, c_pos_err, c_rot_err = evaluate(candidate)
        c_cost = float(c_error @ c_error)
        if c_cost < cost:
            q, error, jac, pos_err, rot_err, cost = candidate, c_error, c_jac, c_pos_err, c_rot_err, c_cost
            damping = max(damping / 3.0, 1e-9)
        else:
            damping *= 4.0
            if damping > 1e4:  # stuck in a local minimum (or against a joint limit)
                break
    converged = pos_err <= tolerances[0] and rot_err <= tolerances[1]
    return _Attempt(q, converged, pos_err, rot_err, iterations)


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wrist_solutions(wrist_rot: np.ndarray, seed_roll: float) -> list[tuple[float, float, float]]:
    """(forearm_roll, wrist_angle, wrist_rotate) with Rx(a) @ Ry(b) @ Rx(c) == wrist_rot (two branches)."""
    b = math.acos(min(max(wrist_rot[0, 0], -1.0), 1.0))
    if math.sin(b) < 1e-6:  # roll and rotate axes aligned: only a +- c is defined; keep the seed roll
        residual = _rot_y(b).T @ _rot_x(seed_roll).T @ wrist_rot
        return [(seed_roll, b, math.atan2(residual[2, 1], residual[1, 1]))]
    a = math.atan2(wrist_rot[1, 0], -wrist_rot[2, 0])
    c = math.atan2(wrist_rot[0, 1], wrist_rot[0, 2])
    return [(a, b, c), (a + math.pi, -b, c + math.pi)]


def _analytic_seeds(target_rot: np.ndarray, target_pos: np.ndarray, seed: np.ndarray) -> list[np.ndarray]:
    """Closed-form candidates (up to 8 branches) from the spherical wrist: axes 4-6 meet at the wrist centre.

    Used only as seeds for the iterative solver, which then polishes them on the PoE model.
    """
    wrist_centre = target_pos - target_rot @ np.array([_WRIST_TO_TOOL_M, 0.0, 0.0])
    radial = math.hypot(wrist_centre[0], wrist_centre[1])
    height = wrist_centre[2] - SHOULDER_PIVOT_M[2]
    waist = math.atan2(wrist_centre[1], wrist_centre[0]) if radial > 1e-9 else float(seed[0])
    candidates = []
    for waist_angle, plane_r in ((waist, radial), (waist + math.pi, -radial)):
        distance_sq = plane_r**2 + height**2
        cos_bend = (distance_sq - _UPPER_ARM_M**2 - _FOREARM_M**2) / (2.0 * _UPPER_ARM_M * _FOREARM_M)
        for bend in (math.acos(min(max(cos_bend, -1.0), 1.0)), -math.acos(min(max(cos_bend, -1.0), 1.0))):
            upper_angle = math.atan2(height, plane_r) - math.atan2(
                _FOREARM_M * math.sin(bend), _UPPER_ARM_M + _FOREARM_M * math.cos(bend)
            )
            shoulder = _UPPER_ARM_ANGLE - upper_angle
            elbow = -(upper_angle + bend) - shoulder
            wrist_rot = _rot_y(shoulder + elbow).T @ _rot_z(waist_angle).T @ target_rot
            for roll, bend_wrist, rotate in _wrist_solutions(wrist_rot, float(seed[3])):
                q = np.array([waist_angle, shoulder, elbow, roll, bend_wrist, rotate])
                q[1:3] = (q[1:3] + math.pi) % (2.0 * math.pi) - math.pi
                candidates.append(_wrap_and_clip(q, enforce_limits=False))
    return candidates


def _failure(joints: np.ndarray, pos_err: float, rot_err: float, iterations: int, reason: str) -> IkResult:
    return IkResult(np.asarray(joints, dtype=float), False, pos_err, rot_err, iterations, reason)


def solve_ik(
    target_pose: np.ndarray,
    seed_joints_rad: np.ndarray,
    *,
    position_tolerance_m: float = 1e-4,
    orientation_tolerance_rad: float = 1e-3,
    max_iterations: int = 100,
) -> IkResult:
    """Joints that put ee_gripper_link at ``target_pose`` (4x4, base frame), seeded with the current joints.

    ``max_iterations`` bounds each attempt; ``IkResult.iterations`` counts all attempts together.
    """
    try:
        seed = _joint_array(seed_joints_rad, "seed_joints_rad")
        target = np.asarray(target_pose, dtype=float)
    except (TypeError, ValueError) as error:
        return _failure(np.full(6, np.nan), math.inf, math.inf, 0, str(error))
    if not np.all(np.isfinite(seed)):
        return _failure(seed, math.inf, math.inf, 0, f"seed_joints_rad: non-finite value in {seed.tolist()}")
    if target.shape != (4, 4) or not np.all(np.isfinite(target)):
        return _failure(
            seed, math.inf, math.inf, 0, f"target_pose: expected a finite 4x4 matrix, got {target!r}"
        )
    target_rot, target_pos = target[:3, :3], target[:3, 3]
    orthogonality = float(np.max(np.abs(target_rot.T @ target_rot - np.eye(3))))
    if orthogonality > 1e-6 or np.linalg.det(target_rot) < 0.0:
        reason = f"target_pose: rotation is not orthonormal (error {orthogonality:.2e})"
        return _failure(seed, math.inf, math.inf, 0, reason)
    reach_problem = check_position_reachable(target_pos)
    if reach_problem:
        return _failure(seed, math.inf, math.inf, 0, reach_problem)

    tolerances = (position_tolerance_m, orientation_tolerance_rad)
    first = _levenberg_marquardt(target_rot, target_pos, seed, tolerances, max_iterations, False)
    total_iterations = first.iterations
    limit_problem = limit_violation(first.joints) if first.converged else ""
    if first.converged and not limit_problem:
        return IkResult(
            first.joints, True, first.position_error, first.orientation_error, total_iterations, ""
        )

    # Closed-form branches inside the limits, nearest to the seed first, then two generic restarts.
    branches = [q for q in _analytic_seeds(target_rot, target_pos, seed) if not limit_violation(q)]
    branches.sort(key=lambda q: float(np.max(np.abs(q - seed))))
    best = first
    for restart_seed in [*branches, seed, BRIDGE_NEUTRAL_JOINTS_RAD]:
        attempt = _levenberg_marquardt(target_rot, target_pos, restart_seed, tolerances, max_iterations, True)
        total_iterations += attempt.iterations
        if attempt.converged:
            return IkResult(
                attempt.joints, True, attempt.position_error, attempt.orientation_error, total_iterations, ""
            )
        if attempt.position_error + _ORIENTATION_WEIGHT_M * attempt.orientation_error < (
            best.position_error + _ORIENTATION_WEIGHT_M * best.orientation_error
        ):
            best = attempt
    if limit_problem:
        reason = f"the only solution found violates the joint limits: {limit_problem}"
        return _failure(first.joints, best.position_error, best.orientation_error, total_iterations, reason)
    reason = (
        f"no solution within the joint limits: best position error {best.position_error:.4f} m, "
        f"orientation error {best.orientation_error:.4f} rad after {total_iterations} iterations"
    )
    return _failure(best.joints, best.position_error, best.orientation_error, total_iterations, reason)


def gripper_to_finger_m(gripper: float) -> float:
    """Bridge gripper command (1 = open, 0 = closed; clipped to [0, 1]) -> left_finger position (m)."""
    value = float(gripper)
    if not math.isfinite(value):
        raise ValueError(f"gripper: expected a finite value, got {value}")
    fraction = min(max(value, 0.0), 1.0)
    return FINGER_LOWER_M + fraction * (FINGER_UPPER_M - FINGER_LOWER_M)


def finger_m_to_gripper(finger_m: float) -> float:
    """Inverse of :func:`gripper_to_finger_m` (finger position clipped to its limits first)."""
    value = float(finger_m)
    if not math.isfinite(value):
        raise ValueError(f"finger_m: expected a finite value, got {value}")
    clipped = min(max(value, FINGER_LOWER_M), FINGER_UPPER_M)
    return (clipped - FINGER_LOWER_M) / (FINGER_UPPER_M - FINGER_LOWER_M)
