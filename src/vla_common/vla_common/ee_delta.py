"""Apply a Bridge V2 end-effector delta to a tool pose (pure numpy).

Bridge convention (as executed on the real WidowX):

- translation ``[dx, dy, dz]`` (m) is added to the tool position in the base frame;
- rotation ``R_delta = euler_to_matrix(droll, dpitch, dyaw)`` (``Rz @ Ry @ Rx``) acts about
  world-aligned axes centred at the tool point, so ``R_new = R_delta @ R_old`` and the tool point
  itself does not move because of the rotation.
"""

from __future__ import annotations

import numpy as np

from vla_common.rotations import euler_to_matrix


def apply_ee_delta(target_pose: np.ndarray, delta6: np.ndarray) -> np.ndarray:
    """Return the new 4x4 tool pose after the delta ``[dx, dy, dz, droll, dpitch, dyaw]``.

    A 7th (gripper) element is not accepted here: split it off first.
    """
    pose = np.asarray(target_pose, dtype=float)
    if pose.shape != (4, 4):
        raise ValueError(f"target_pose: expected a 4x4 homogeneous matrix, got shape {pose.shape}")
    delta = np.asarray(delta6, dtype=float).reshape(-1)
    if delta.shape != (6,):
        raise ValueError(f"delta6: expected 6 values [dx, dy, dz, droll, dpitch, dyaw], got {delta.size}")
    if not np.all(np.isfinite(delta)):
        raise ValueError(f"delta6: expected finite values, got {delta.tolist()}")
    new_pose = np.eye(4)
    new_pose[:3, :3] = euler_to_matrix(delta[3], delta[4], delta[5]) @ pose[:3, :3]
    new_pose[:3, 3] = pose[:3, 3] + delta[:3]
    return new_pose
