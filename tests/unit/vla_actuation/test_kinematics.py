"""WidowX 250 6DOF kinematics: FK against the published poses, Jacobians, IK against FK."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vla_actuation.kinematics import (
    ARM_JOINT_NAMES,
    BRIDGE_NEUTRAL_JOINTS_RAD,
    FINGER_LOWER_M,
    FINGER_UPPER_M,
    HOME_TOOL_POSE,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
    SCREW_AXES,
    check_position_reachable,
    finger_m_to_gripper,
    forward_kinematics,
    gripper_to_finger_m,
    solve_ik,
    space_jacobian,
    tool_point_jacobian,
)
from vla_common.rotations import rotation_angle, rotation_vector

WORKSPACE_LOW = np.array([0.10, -0.20, -0.01])
WORKSPACE_HIGH = np.array([0.45, 0.25, 0.30])


def test_constants_match_the_urdf() -> None:
    assert ARM_JOINT_NAMES == ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
    np.testing.assert_allclose(np.degrees(JOINT_LOWER_RAD[1:3]), [-108.0, -123.0])
    np.testing.assert_allclose(np.degrees(JOINT_UPPER_RAD[[1, 2, 4]]), [114.0, 92.0, 123.0])
    assert JOINT_LOWER_RAD[4] == pytest.approx(np.radians(-100.0))
    assert JOINT_UPPER_RAD[0] == pytest.approx(np.pi - 1e-5)
    np.testing.assert_allclose(JOINT_VELOCITY_LIMIT_RAD_S, np.pi)
    assert SCREW_AXES.shape == (6, 6) and HOME_TOOL_POSE.shape == (4, 4)
    assert (FINGER_LOWER_M, FINGER_UPPER_M) == (0.015, 0.037)


def test_fk_at_home_is_the_home_pose() -> None:
    pose = forward_kinematics(np.zeros(6))
    np.testing.assert_allclose(pose[:3, 3], [0.458325, 0.0, 0.36065], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3], np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    ("joints", "position"),
    [
        ([0, -1.80, 1.55, 0, 0.8, 0], (0.123, 0.0, 0.081)),  # sleep
        ([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160], (0.120, -0.019, 0.247)),  # Bridge neutral
    ],
)
def test_fk_matches_the_named_poses(joints: list[float], position: tuple[float, float, float]) -> None:
    np.testing.assert_allclose(forward_kinematics(np.array(joints))[:3, 3], position, atol=2e-3)


def test_fk_single_joint_motions() -> None:
    # Waist +90 deg swings the tool onto +y; shoulder +90 deg (about +y) drops the arm forward/down.
    pose = forward_kinematics(np.array([np.pi / 2, 0, 0, 0, 0, 0]))
    np.testing.assert_allclose(pose[:3, 3], [0.0, 0.458325, 0.36065], atol=1e-9)
    pose = forward_kinematics(np.array([0, np.pi / 2, 0, 0, 0, 0]))
    # Rotating about y through the shoulder pivot (0, 0, 0.11065): (x, dz) -> (dz, -x).
    np.testing.assert_allclose(pose[:3, 3], [0.36065 - 0.11065, 0.0, 0.11065 - 0.458325], atol=1e-9)


def _numeric_jacobians(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base = forward_kinematics(q)
    tool = np.zeros((6, 6))
    space = np.zeros((6, 6))
    h = 1e-7
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = h
        moved = forward_kinematics(q + dq)
        tool[:3, i] = (moved[:3, 3] - base[:3, 3]) / h
        tool[3:, i] = rotation_vector(moved[:3, :3] @ base[:3, :3].T) / h
        twist = (moved - base) / h @ np.linalg.inv(base)
        space[:, i] = [twist[2, 1], twist[0, 2], twist[1, 0], *twist[:3, 3]]
    return tool, space


def test_jacobians_match_finite_differences() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = rng.uniform(JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        tool, space = _numeric_jacobians(q)
        np.testing.assert_allclose(tool_point_jacobian(q), tool, atol=1e-5)
        np.testing.assert_allclose(space_jacobian(q), space, atol=1e-5)
    np.testing.assert_allclose(space_jacobian(np.zeros(6)), SCREW_AXES.T, atol=1e-12)


def _reachable_samples(rng: np.random.Generator, count: int, in_workspace: bool) -> list[np.ndarray]:
    samples = []
    while len(samples) < count:
        q = rng.uniform(JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        position = forward_kinematics(q)[:3, 3]
        if check_position_reachable(position):
            continue
        if in_workspace and not (np.all(position >= WORKSPACE_LOW) and np.all(position <= WORKSPACE_HIGH)):
            continue
        samples.append(q)
    return samples


def _assert_solves(target: np.ndarray, seed: np.ndarray) -> int:
    result = solve_ik(target, seed)
    assert result.success, result.reason
    reached = forward_kinematics(result.joints_rad)
    assert np.linalg.norm(reached[:3, 3] - target[:3, 3]) < 1e-3
    assert rotation_angle(reached[:3, :3] @ target[:3, :3].T) < 0.01
    assert result.position_error_m < 1e-3 and result.orientation_error_rad < 0.01
    assert np.all(result.joints_rad >= JOINT_LOWER_RAD) and np.all(result.joints_rad <= JOINT_UPPER_RAD)
    return result.iterations


def test_ik_recovers_fk_from_perturbed_seeds() -> None:
    rng = np.random.default_rng(1234)
    for q in _reachable_samples(rng, 250, in_workspace=False):
        seed = np.clip(q + rng.uniform(-0.3, 0.3, 6), JOINT_LOWER_RAD, JOINT_UPPER_RAD)
        _assert_solves(forward_kinematics(q), seed)


def test_ik_from_the_bridge_neutral_pose_over_the_workspace_box() -> None:
    rng = np.random.default_rng(99)
    for q in _reachable_samples(rng, 200, in_workspace=True):
        _assert_solves(forward_kinematics(q), BRIDGE_NEUTRAL_JOINTS_RAD)


def test_ik_prefers_the_solution_nearest_the_seed() -> None:
    q = np.array([0.2, -0.3, 0.4, 0.5, 0.9, -0.4])
    result = solve_ik(forward_kinematics(q), q + 0.05)
    assert result.success
    np.testing.assert_allclose(result.joints_rad, q, atol=1e-3)
    # The wrist-flipped twin reaches the same pose; seeded near it, IK must return the twin.
    twin = q + np.array([0, 0, 0, -np.pi, 0, np.pi])
    twin[4] = -q[4]
    np.testing.assert_allclose(forward_kinematics(twin), forward_kinematics(q), atol=1e-12)
    result = solve_ik(forward_kinematics(q), twin + 0.05)
    assert result.success
    np.testing.assert_allclose(result.joints_rad, twin, atol=1e-3)


@pytest.mark.parametrize(
    ("position", "phrase"),
    [((1.5, 0.0, 0.3), "reaches at most"), ((0.0, 1.5, 0.1), "reaches at most"), ((0.01, 0.0, 0.05), "base")],
)
def test_ik_unreachable_targets_fail_with_a_reason(position: tuple[float, ...], phrase: str) -> None:
    target = np.eye(4)
    target[:3, 3] = position
    result = solve_ik(target, BRIDGE_NEUTRAL_JOINTS_RAD)
    assert not result.success
    assert phrase in result.reason


def test_ik_rejects_a_solution_outside_the_joint_limits_naming_the_joint() -> None:
    # wrist_angle 2.6 rad > 123 deg, and its wrist-flipped twin (-2.6) is below -100 deg.
    target = forward_kinematics(np.array([0.0, 0.0, 0.0, 0.0, 2.6, 0.0]))
    result = solve_ik(target, np.array([0.0, 0.0, 0.0, 0.0, 2.0, 0.0]))
    assert not result.success
    assert "wrist_angle" in result.reason and "2.6" in result.reason


@pytest.mark.parametrize(
    ("target", "seed", "phrase"),
    [
        (np.full((4, 4), np.nan), np.zeros(6), "target_pose"),
        (np.eye(3), np.zeros(6), "target_pose"),
        (np.diag([1.0, 1.0, 2.0, 1.0]), np.zeros(6), "orthonormal"),
        (np.eye(4), np.zeros(5), "seed_joints_rad"),
        (np.eye(4), np.array([0, 0, np.nan, 0, 0, 0]), "seed_joints_rad"),
    ],
)
def test_ik_bad_input_never_raises(target: np.ndarray, seed: np.ndarray, phrase: str) -> None:
    result = solve_ik(target, seed)
    assert not result.success
    assert phrase in result.reason


def test_gripper_mapping_and_inverse() -> None:
    assert gripper_to_finger_m(1.0) == pytest.approx(0.037)
    assert gripper_to_finger_m(0.0) == pytest.approx(0.015)
    assert gripper_to_finger_m(0.5) == pytest.approx(0.026)
    assert gripper_to_finger_m(3.0) == pytest.approx(0.037)
    assert gripper_to_finger_m(-1.0) == pytest.approx(0.015)
    for value in (0.0, 0.25, 0.8, 1.0):
        assert finger_m_to_gripper(gripper_to_finger_m(value)) == pytest.approx(value)
    with pytest.raises(ValueError, match="gripper"):
        gripper_to_finger_m(float("nan"))


def test_pure_modules_import_without_ros() -> None:
    code = (
        "import sys\n"
        "sys.modules['rclpy'] = None\n"
        "import vla_actuation.kinematics, vla_common.rotations, vla_common.ee_delta\n"
        "import vla_actuation.safety, vla_actuation.chunk_executor, vla_actuation.ee_delta_controller\n"
        "loaded = [name for name, module in sys.modules.items() if module is not None]\n"
        "assert not any(name.startswith(('rclpy', 'sensor_msgs')) for name in loaded)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
