"""The per-step end-effector delta pipeline and servo interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation import ee_delta_controller as controller_module
from vla_actuation import safety
from vla_actuation.ee_delta_controller import (
    MIN_JERK_PEAK_SPEED_RATIO,
    ControllerConfig,
    EeDeltaController,
    servo_waypoints,
)
from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD, FINGER_UPPER_M, forward_kinematics
from vla_actuation.safety import SafetyLimits
from vla_common.rotations import euler_to_matrix, rotation_angle

NEUTRAL = BRIDGE_NEUTRAL_JOINTS_RAD.copy()


def _controller(**limits: object) -> EeDeltaController:
    controller = EeDeltaController(ControllerConfig(limits=SafetyLimits(**limits)))
    controller.reset(NEUTRAL, finger_m=0.02)
    return controller


def _action(*values: float) -> np.ndarray:
    action = np.zeros(7)
    action[: len(values)] = values
    return action


def _codes(step: controller_module.ControlStep) -> list[str]:
    return [v.code for v in step.violations]


def test_config_validates_and_names_the_field() -> None:
    with pytest.raises(ValueError, match="step_dt_s"):
        ControllerConfig(step_dt_s=0.0)
    with pytest.raises(ValueError, match="ik_max_iterations"):
        ControllerConfig(ik_max_iterations=0)
    with pytest.raises(ValueError, match="limits"):
        ControllerConfig(limits={"max_translation_step_m": 0.05})


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        EeDeltaController().step(_action(), NEUTRAL)


def test_reset_does_not_jump() -> None:
    controller = _controller()
    np.testing.assert_allclose(controller.tool_target_pose, forward_kinematics(NEUTRAL))
    step = controller.step(_action(0, 0, 0, 0, 0, 0, 0.0), NEUTRAL)
    assert step.accepted and step.violations == ()
    assert np.max(np.abs(step.joint_targets_rad - NEUTRAL)) < 1e-3
    np.testing.assert_allclose(step.tool_target_pose, forward_kinematics(NEUTRAL), atol=1e-12)
    assert step.finger_target_m == pytest.approx(0.015)  # gripper 0 = closed


def test_translation_moves_the_tool_by_the_delta() -> None:
    controller = _controller()
    start = forward_kinematics(NEUTRAL)
    step = controller.step(_action(0.02, -0.01, 0.01, 0, 0, 0, 1.0), NEUTRAL)
    assert step.accepted
    np.testing.assert_allclose(step.tool_target_pose[:3, 3], start[:3, 3] + [0.02, -0.01, 0.01], atol=1e-12)
    reached = forward_kinematics(step.joint_targets_rad)
    assert np.linalg.norm(reached[:3, 3] - step.tool_target_pose[:3, 3]) < 1e-3
    assert rotation_angle(reached[:3, :3] @ start[:3, :3].T) < 1e-2
    assert step.finger_target_m == pytest.approx(FINGER_UPPER_M)
    assert step.ik_iterations >= 1


def test_rotation_is_applied_about_world_axes() -> None:
    controller = _controller()
    start = forward_kinematics(NEUTRAL)
    step = controller.step(_action(0, 0, 0, 0, 0, 0.2, 1.0), NEUTRAL)
    assert step.accepted
    np.testing.assert_allclose(step.tool_target_pose[:3, :3], euler_to_matrix(0, 0, 0.2) @ start[:3, :3])
    np.testing.assert_allclose(step.tool_target_pose[:3, 3], start[:3, 3])


def test_deltas_accumulate_on_the_target_not_the_measured_pose() -> None:
    controller = _controller()
    start_x = forward_kinematics(NEUTRAL)[0, 3]
    for _ in range(3):  # the arm lags: measured stays at neutral (within the tracking bound)
        step = controller.step(_action(0.01), NEUTRAL)
    assert step.accepted and step.violations == ()
    assert step.tool_target_pose[0, 3] == pytest.approx(start_x + 0.03)


def test_huge_delta_is_clipped_to_one_step() -> None:
    controller = _controller()
    start = forward_kinematics(NEUTRAL)[:3, 3]
    step = controller.step(_action(0.5, 0, 0, 0, 0, 0, 1.0), NEUTRAL)
    assert step.accepted
    assert np.linalg.norm(step.tool_target_pose[:3, 3] - start) == pytest.approx(0.05)
    assert safety.TRANSLATION_CLIPPED in _codes(step)


def test_workspace_box_caps_the_target() -> None:
    controller = _controller()
    measured = NEUTRAL
    for _ in range(5):  # z from 0.247 up by 0.05 per step: capped at 0.30
        step = controller.step(_action(0, 0, 0.05, 0, 0, 0, 1.0), measured)
        measured = step.joint_targets_rad
    assert step.accepted
    assert step.tool_target_pose[2, 3] == pytest.approx(0.30)
    assert safety.WORKSPACE_CLAMPED in _codes(step)


@pytest.mark.parametrize("action", [_action(0, 0, math.nan), np.zeros(6), [math.inf] * 7])
def test_invalid_action_holds(action: object) -> None:
    controller = _controller()
    accepted = controller.step(_action(0.01, 0, 0, 0, 0, 0, 1.0), NEUTRAL)
    held = controller.step(action, accepted.joint_targets_rad)
    assert not held.accepted and held.violations
    np.testing.assert_array_equal(held.joint_targets_rad, accepted.joint_targets_rad)
    np.testing.assert_array_equal(held.tool_target_pose, accepted.tool_target_pose)
    assert held.finger_target_m == accepted.finger_target_m
    assert held.ik_iterations == 0


def test_ik_failure_holds_without_advancing_the_target() -> None:
    controller = _controller(workspace_high_m=(2.0, 0.25, 0.30))  # let x run out of reach
    measured = NEUTRAL
    previous = None
    for _ in range(30):
        step = controller.step(_action(0.05, 0, 0, 0, 0, 0, 1.0), measured)
        if not step.accepted:
            break
        previous, measured = step, step.joint_targets_rad
    else:
        pytest.fail("the arm never ran out of reach")
    assert previous is not None
    assert _codes(step) == [controller_module.IK_FAILED] and "IK" in step.violations[0].message
    np.testing.assert_array_equal(step.joint_targets_rad, previous.joint_targets_rad)
    np.testing.assert_array_equal(step.tool_target_pose, previous.tool_target_pose)
    # Backing off works again from the held target.
    back = controller.step(_action(-0.05, 0, 0, 0, 0, 0, 1.0), measured)
    assert back.accepted
    assert back.tool_target_pose[0, 3] < previous.tool_target_pose[0, 3] - 0.02


def test_tracking_error_reseeds_from_the_measured_joints() -> None:
    controller = _controller()
    controller.step(_action(0.01), NEUTRAL)
    pushed = NEUTRAL + np.array([0.6, 0, 0, 0, 0, 0])  # someone moved the waist by 0.6 rad
    step = controller.step(_action(0, 0, 0.01, 0, 0, 0, 1.0), pushed)
    assert step.accepted and _codes(step)[0] == controller_module.TRACKING_ERROR
    expected = forward_kinematics(pushed)[:3, 3] + [0, 0, 0.01]
    np.testing.assert_allclose(step.tool_target_pose[:3, 3], expected, atol=1e-12)
    assert np.max(np.abs(step.joint_targets_rad - pushed)) < 0.1


def test_measured_nan_holds() -> None:
    controller = _controller()
    step = controller.step(_action(0.01), np.full(6, math.nan))
    assert not step.accepted and _codes(step) == [controller_module.MEASURED_INVALID]
    np.testing.assert_array_equal(step.joint_targets_rad, NEUTRAL)


def test_joint_speed_is_limited_at_the_profile_peak() -> None:
    speed = 0.5
    controller = _controller(max_joint_velocity_rad_s=speed)
    step = controller.step(_action(0.0, 0.0, -0.05, 0, 0, 0, 1.0), NEUTRAL)
    assert step.accepted and safety.JOINT_VELOCITY_SCALED in _codes(step)
    largest = float(np.max(np.abs(step.joint_targets_rad - NEUTRAL)))
    assert largest == pytest.approx(speed * 0.2 / MIN_JERK_PEAK_SPEED_RATIO)
    # The target pose follows what is really commanded, so it cannot run away from the arm.
    np.testing.assert_allclose(step.tool_target_pose, forward_kinematics(step.joint_targets_rad), atol=1e-12)


def test_reset_keeps_the_finger_target_when_not_given() -> None:
    controller = _controller()
    controller.step(_action(0, 0, 0, 0, 0, 0, 1.0), NEUTRAL)
    controller.reset(NEUTRAL)
    held = controller.step(_action(math.nan), NEUTRAL)
    assert held.finger_target_m == pytest.approx(FINGER_UPPER_M)
    with pytest.raises(ValueError, match="measured_joints_rad"):
        controller.reset(np.zeros(5))


@pytest.mark.parametrize("finger_m", [math.nan, math.inf, -math.inf])
def test_a_reset_refused_for_its_finger_changes_nothing(finger_m: float) -> None:
    controller = _controller()  # reset at NEUTRAL
    false_pose = NEUTRAL + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.28])  # the soak's lie: wrist_rotate far off
    with pytest.raises(ValueError, match=f"finger_m: expected a finite value, got {finger_m}"):
        controller.reset(false_pose, finger_m)
    np.testing.assert_array_equal(controller.joint_targets_rad, NEUTRAL)  # not half-applied
    np.testing.assert_allclose(controller.tool_target_pose, forward_kinematics(NEUTRAL), atol=1e-12)


# --- servo_waypoints --------------------------------------------------------------------------
def test_servo_waypoints_min_jerk() -> None:
    start = np.zeros(6)
    end = np.linspace(-0.3, 0.3, 6)
    points = servo_waypoints(start, end, 0.2, 100.0)
    assert len(points) == 20
    times = [t for t, _ in points]
    np.testing.assert_allclose(times, np.arange(1, 21) * 0.01)
    assert points[-1][0] == 0.2
    np.testing.assert_array_equal(points[-1][1], end)
    np.testing.assert_allclose(points[9][1], 0.5 * end)  # symmetric profile: half way at half time
    np.testing.assert_allclose(points[0][1], (10 * 0.05**3 - 15 * 0.05**4 + 6 * 0.05**5) * end)
    speeds = np.diff([0.0] + [p[1][5] for p in points]) / 0.01
    assert np.max(speeds) == pytest.approx(MIN_JERK_PEAK_SPEED_RATIO * 0.3 / 0.2, rel=0.02)


def test_servo_waypoints_odd_duration_and_validation() -> None:
    points = servo_waypoints(np.zeros(6), np.ones(6), 0.25, 30.0)
    assert len(points) == 8 and points[-1][0] == 0.25
    assert max(np.diff([0.0] + [t for t, _ in points])) <= 1 / 30.0 + 1e-12
    with pytest.raises(ValueError, match="duration_s"):
        servo_waypoints(np.zeros(6), np.ones(6), 0.0, 100.0)
    with pytest.raises(ValueError, match="end_joints"):
        servo_waypoints(np.zeros(6), np.ones(5), 0.2, 100.0)
