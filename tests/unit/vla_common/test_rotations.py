"""Euler conventions, SO(3) log/exp and the Bridge state convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD, forward_kinematics
from vla_common.rotations import (
    BRIDGE_DOWN,
    axis_angle_matrix,
    bridge_state_to_tool_pose,
    euler_to_matrix,
    matrix_to_euler,
    rotation_angle,
    rotation_vector,
    tool_pose_to_bridge_state,
)


def _rx(a: float) -> np.ndarray:
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def _ry(a: float) -> np.ndarray:
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _rz(a: float) -> np.ndarray:
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def test_euler_is_rz_ry_rx() -> None:
    roll, pitch, yaw = 0.3, -0.7, 2.1
    np.testing.assert_allclose(
        euler_to_matrix(roll, pitch, yaw), _rz(yaw) @ _ry(pitch) @ _rx(roll), atol=1e-15
    )


def test_euler_round_trip_random() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        roll, yaw = rng.uniform(-math.pi, math.pi, 2)
        pitch = rng.uniform(-math.pi / 2 + 1e-3, math.pi / 2 - 1e-3)
        assert matrix_to_euler(euler_to_matrix(roll, pitch, yaw)) == pytest.approx(
            (roll, pitch, yaw), abs=1e-9
        )


@pytest.mark.parametrize("pitch", [math.pi / 2, -math.pi / 2])
def test_euler_gimbal_lock_reproduces_the_matrix(pitch: float) -> None:
    matrix = euler_to_matrix(0.4, pitch, -0.9)
    roll, recovered_pitch, yaw = matrix_to_euler(matrix)
    assert roll == 0.0
    assert recovered_pitch == pytest.approx(pitch)
    np.testing.assert_allclose(euler_to_matrix(roll, recovered_pitch, yaw), matrix, atol=1e-9)


def test_rotation_angle_and_log_exp() -> None:
    rng = np.random.default_rng(1)
    for angle in (0.0, 1e-9, 1e-4, 0.5, 2.0, math.pi - 1e-4, math.pi):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        matrix = axis_angle_matrix(axis * angle)
        assert rotation_angle(matrix) == pytest.approx(angle, abs=1e-9)
        np.testing.assert_allclose(axis_angle_matrix(rotation_vector(matrix)), matrix, atol=1e-9)
    with pytest.raises(ValueError, match="rotation"):
        rotation_angle(np.eye(4))


def test_bridge_down_and_state_convention() -> None:
    np.testing.assert_array_equal(BRIDGE_DOWN, [[0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    np.testing.assert_allclose(BRIDGE_DOWN, _ry(math.pi / 2), atol=1e-15)
    pose = np.eye(4)
    pose[:3, :3] = BRIDGE_DOWN
    pose[:3, 3] = [0.3, -0.09, 0.26]
    np.testing.assert_allclose(tool_pose_to_bridge_state(pose), [0.3, -0.09, 0.26, 0, 0, 0], atol=1e-12)
    # The tool x axis (along the fingers) points straight down.
    np.testing.assert_allclose(pose[:3, :3] @ [1, 0, 0], [0, 0, -1], atol=1e-12)


def test_bridge_state_round_trip_at_neutral() -> None:
    pose = forward_kinematics(BRIDGE_NEUTRAL_JOINTS_RAD)
    state = tool_pose_to_bridge_state(pose)
    # At the Bridge neutral pose the gripper points nearly down: small Euler angles.
    assert np.all(np.abs(state[3:]) < 0.2)
    np.testing.assert_allclose(bridge_state_to_tool_pose(state), pose, atol=1e-12)
    with pytest.raises(ValueError, match="state"):
        bridge_state_to_tool_pose(np.zeros(7))
