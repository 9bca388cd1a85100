"""Bridge end-effector deltas: translation in the base frame, rotation about world axes at the tool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_common.ee_delta import apply_ee_delta
from vla_common.rotations import BRIDGE_DOWN, euler_to_matrix, tool_pose_to_bridge_state


def _pose(rotation: np.ndarray, position: tuple[float, float, float]) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = position
    return pose


def test_translation_is_added_in_the_base_frame() -> None:
    start = _pose(BRIDGE_DOWN, (0.3, 0.0, 0.2))  # tool axes differ from base axes
    moved = apply_ee_delta(start, np.array([0.01, -0.02, 0.03, 0, 0, 0]))
    np.testing.assert_allclose(moved[:3, 3], [0.31, -0.02, 0.23], atol=1e-15)
    np.testing.assert_allclose(moved[:3, :3], BRIDGE_DOWN, atol=1e-15)


def test_rotation_is_about_world_axes_at_the_tool() -> None:
    start = _pose(BRIDGE_DOWN, (0.3, 0.1, 0.2))
    moved = apply_ee_delta(start, np.array([0, 0, 0, 0, 0, math.pi / 2]))
    np.testing.assert_allclose(moved[:3, 3], [0.3, 0.1, 0.2], atol=1e-15)  # the tool point stays
    np.testing.assert_allclose(moved[:3, :3], euler_to_matrix(0, 0, math.pi / 2) @ BRIDGE_DOWN, atol=1e-15)
    # World yaw of a downward gripper shows up as Bridge-state yaw only.
    np.testing.assert_allclose(tool_pose_to_bridge_state(moved)[3:], [0, 0, math.pi / 2], atol=1e-12)
    # Left-multiplication: differs from a tool-frame (right) multiplication.
    assert not np.allclose(moved[:3, :3], BRIDGE_DOWN @ euler_to_matrix(0, 0, math.pi / 2))


def test_small_deltas_compose_in_the_bridge_state() -> None:
    pose = _pose(BRIDGE_DOWN, (0.25, 0.0, 0.15))
    for _ in range(4):
        pose = apply_ee_delta(pose, np.array([0.0, 0.01, 0.0, 0.0, 0.0, 0.1]))
    np.testing.assert_allclose(tool_pose_to_bridge_state(pose), [0.25, 0.04, 0.15, 0, 0, 0.4], atol=1e-12)


def test_bad_input_raises_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="delta6"):
        apply_ee_delta(np.eye(4), np.zeros(7))
    with pytest.raises(ValueError, match="delta6"):
        apply_ee_delta(np.eye(4), np.array([0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="target_pose"):
        apply_ee_delta(np.eye(3), np.zeros(6))
