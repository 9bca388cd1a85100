"""Rotation helpers and the Bridge V2 end-effector state convention (pure numpy).

Conventions
-----------
- Euler angles are extrinsic roll (x), pitch (y), yaw (z) about fixed, world-aligned axes:
  ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``. This is the convention of the Bridge robot code.
- Bridge state: ``[x, y, z, roll, pitch, yaw]`` where the Euler angles are taken from
  ``R @ BRIDGE_DOWN.T`` with ``BRIDGE_DOWN = Ry(pi/2)``. The wx250s tool frame (ee_gripper_link)
  has its x axis along the fingers, so ``R = BRIDGE_DOWN`` (gripper pointing straight down) reads
  as Euler (0, 0, 0).
- ``rotation_vector`` is the SO(3) logarithm (axis * angle, angle in [0, pi]); ``axis_angle_matrix``
  is its inverse (Rodrigues' formula).
"""

from __future__ import annotations

import math

import numpy as np

BRIDGE_DOWN = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
BRIDGE_DOWN.setflags(write=False)

# Below this |cos(pitch)| the roll and yaw axes coincide (gimbal lock); roll is then reported as 0.
_GIMBAL_EPS = 1e-9


def _as_rotation(rotation: np.ndarray, name: str = "rotation") -> np.ndarray:
    matrix = np.asarray(rotation, dtype=float)
    if matrix.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3x3 matrix, got shape {matrix.shape}")
    return matrix


def euler_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Return ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` as a 3x3 array."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`euler_to_matrix`: (roll, pitch, yaw), pitch in [-pi/2, pi/2].

    At gimbal lock (pitch = +-pi/2) roll is set to 0 and the whole rotation about z goes to yaw.
    """
    r = _as_rotation(rotation)
    cos_pitch = math.hypot(r[0, 0], r[1, 0])
    pitch = math.atan2(-r[2, 0], cos_pitch)
    if cos_pitch > _GIMBAL_EPS:
        roll = math.atan2(r[2, 1], r[2, 2])
        yaw = math.atan2(r[1, 0], r[0, 0])
    else:
        roll = 0.0
        yaw = math.atan2(-r[0, 1], r[1, 1])
    return roll, pitch, yaw


def rotation_angle(rotation: np.ndarray) -> float:
    """Angle in [0, pi] of a rotation matrix (accurate near 0 and near pi)."""
    r = _as_rotation(rotation)
    sin_term = 0.5 * math.sqrt((r[2, 1] - r[1, 2]) ** 2 + (r[0, 2] - r[2, 0]) ** 2 + (r[1, 0] - r[0, 1]) ** 2)
    cos_term = 0.5 * (r[0, 0] + r[1, 1] + r[2, 2] - 1.0)
    return math.atan2(sin_term, cos_term)


def rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """SO(3) logarithm: the axis-angle vector ``w`` with ``axis_angle_matrix(w) == rotation``."""
    r = _as_rotation(rotation)
    skew = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    sin_angle = 0.5 * float(np.linalg.norm(skew))
    cos_angle = 0.5 * (r[0, 0] + r[1, 1] + r[2, 2] - 1.0)
    angle = math.atan2(sin_angle, cos_angle)
    if angle < 1e-6:
        return 0.5 * skew  # first-order: R ~ I + [w]
    if cos_angle > -0.9:
        return skew * (angle / (2.0 * sin_angle))
    # Near pi the skew part vanishes; read the axis from the symmetric part instead:
    # (R + R^T)/2 = cos(a) I + (1 - cos(a)) u u^T.
    outer = (0.5 * (r + r.T) - cos_angle * np.eye(3)) / (1.0 - cos_angle)
    column = int(np.argmax(np.diag(outer)))
    axis = outer[:, column] / math.sqrt(max(outer[column, column], 1e-300))
    if float(axis @ skew) < 0.0:
        axis = -axis
    return axis * angle


def axis_angle_matrix(rotation_vec: np.ndarray) -> np.ndarray:
    """SO(3) exponential (Rodrigues): rotation by ``|w|`` about ``w / |w|``."""
    w = np.asarray(rotation_vec, dtype=float).reshape(3)
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = w / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def _as_pose(pose: np.ndarray, name: str = "pose") -> np.ndarray:
    matrix = np.asarray(pose, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 homogeneous matrix, got shape {matrix.shape}")
    return matrix


def tool_pose_to_bridge_state(pose: np.ndarray) -> np.ndarray:
    """Tool pose (4x4, base frame) -> Bridge state ``[x, y, z, roll, pitch, yaw]``."""
    matrix = _as_pose(pose)
    roll, pitch, yaw = matrix_to_euler(matrix[:3, :3] @ BRIDGE_DOWN.T)
    return np.array([matrix[0, 3], matrix[1, 3], matrix[2, 3], roll, pitch, yaw])


def bridge_state_to_tool_pose(state: np.ndarray) -> np.ndarray:
    """Bridge state ``[x, y, z, roll, pitch, yaw]`` -> tool pose (4x4, base frame)."""
    values = np.asarray(state, dtype=float).reshape(-1)
    if values.shape != (6,):
        raise ValueError(f"state: expected 6 values [x, y, z, roll, pitch, yaw], got {values.size}")
    pose = np.eye(4)
    pose[:3, :3] = euler_to_matrix(values[3], values[4], values[5]) @ BRIDGE_DOWN
    pose[:3, 3] = values[:3]
    return pose
