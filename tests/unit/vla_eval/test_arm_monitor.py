"""ArmMonitor on hand-made command streams: each kind of violation is caught, a legal stream passes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD, forward_kinematics
from vla_common.robot import JOINT_UPPER_RAD
from vla_eval.arm_monitor import ArmMonitor, StreamedCommand, Tolerance, ToolKinematics, rotation_angle_rad

SERVO_S = 0.02  # a 50 Hz stream
START = np.array(BRIDGE_NEUTRAL_JOINTS_RAD)


def command(t_s: float, joints, tfs_s: float = 2 * SERVO_S) -> StreamedCommand:
    return StreamedCommand(
        received_s=t_s + 0.001,
        stamp_ns=int(round(t_s * 1e9)),
        positions=tuple(float(j) for j in joints),
        time_from_start_s=tfs_s,
    )


def stream(monitor: ArmMonitor, joints_list, t0_s: float = 10.0, tfs_s: float = 2 * SERVO_S) -> float:
    """Feed joints at 50 Hz; returns the time after the last one."""
    t = t0_s
    for joints in joints_list:
        monitor.add(command(t, joints, tfs_s))
        t += SERVO_S
    return t


def ramp(start, end, n: int) -> list[np.ndarray]:
    return [start + (end - start) * k / n for k in range(1, n + 1)]


def kinds(monitor: ArmMonitor) -> set[str]:
    return {v.kind for v in monitor.violations}


def test_the_sim_models_tool_matches_the_product_of_exponentials_model():
    """Two independent kinematics of the wx250s (MuJoCo MJCF, actuation's PoE) agree."""
    kinematics = ToolKinematics()
    rng = np.random.default_rng(0)
    for joints in [np.zeros(6), START, *rng.uniform(-1.0, 1.0, (5, 6))]:
        position, rotation = kinematics.pose(joints)
        expected = forward_kinematics(joints)
        assert np.allclose(position, expected[:3, 3], atol=1e-6)
        assert rotation_angle_rad(rotation, expected[:3, :3]) < 1e-6


def test_a_legal_stream_passes():
    monitor = ArmMonitor()
    # 1 s at 0.5 rad/s on the waist and shoulder: ~0.1 rad and well under 0.05 m per 0.2 s
    target = START + np.array([0.5, 0.3, 0.0, 0.0, 0.0, 0.0])
    stream(monitor, [START, *ramp(START, target, 50)])
    assert monitor.violations == []
    summary = monitor.summary()
    assert summary["commands"] == 51
    assert set(summary["violations"].values()) == {0}
    assert summary["max_joint_speed_rad_s"] == pytest.approx(0.5 / 50 / (2 * SERVO_S))  # 0.01 rad per 0.04 s
    assert 0.0 < summary["max_tool_step_m"] <= 0.05


def test_a_jump_after_a_stall_is_too_fast():
    """The issue's stall: 0.29 rad in time_from_start 0.04 s is 7.3 rad/s."""
    monitor = ArmMonitor()
    jumped = START + np.array([0.0, 0.0, 0.29, 0.0, 0.0, 0.0])
    t = stream(monitor, [START, START])
    found = monitor.add(command(t + 0.5, jumped, 0.04))
    assert [v.kind for v in found if v.kind == "joint_speed"] == ["joint_speed"]
    speed = next(v for v in found if v.kind == "joint_speed")
    assert speed.value == pytest.approx(0.29 / 0.04) and speed.bound == pytest.approx(math.pi)
    assert speed.stamp_ns == int(round((t + 0.5) * 1e9))  # the offending command's stamp
    assert "elbow moves 0.2900 rad" in speed.detail and "7.250 rad/s" in speed.detail


def test_speed_is_judged_by_time_from_start_with_a_small_tolerance():
    monitor = ArmMonitor()
    t = stream(monitor, [START])
    at_limit = START + np.array([math.pi * 0.04, 0, 0, 0, 0, 0])
    assert monitor.add(command(t, at_limit, 0.04)) == []  # exactly the limit
    over = at_limit + np.array([math.pi * 0.04 * 1.03, 0, 0, 0, 0, 0])  # 3 % over: 3.25 rad/s
    assert [v.kind for v in monitor.add(command(t + SERVO_S, over, 0.04))] == ["joint_speed"]
    zero_time = over + np.array([0.001, 0, 0, 0, 0, 0])
    found = monitor.add(command(t + 2 * SERVO_S, zero_time, 0.0))
    assert [v.kind for v in found] == ["joint_speed"] and math.isinf(found[0].value)


def test_a_command_beyond_a_joint_limit_or_not_finite():
    monitor = ArmMonitor()
    t = stream(monitor, [START])
    beyond = START.copy()
    beyond[1] = JOINT_UPPER_RAD[1] + 0.01
    found = monitor.add(command(t, beyond, 10.0))
    assert [v.kind for v in found] == ["position_limit"]
    assert found[0].bound == pytest.approx(JOINT_UPPER_RAD[1]) and "shoulder" in found[0].detail
    nan = START.copy()
    nan[4] = float("nan")
    found = monitor.add(command(t + SERVO_S, nan, 10.0))
    assert [v.kind for v in found] == ["position_limit"] and "wrist_angle nan" in found[0].detail


def test_the_tool_may_not_travel_more_than_the_bound_in_one_window():
    """Slow enough for the joints, too far for the tool: 10x the per-step bound at 5 Hz."""
    monitor = ArmMonitor()
    far = START + np.array([0.0, 0.5, -0.5, 0.0, 0.0, 0.0])  # about 0.1 m and more of tool travel
    position_far = forward_kinematics(far)[:3, 3]
    assert np.linalg.norm(position_far - forward_kinematics(START)[:3, 3]) > 0.08
    t = stream(monitor, [START])
    found = monitor.add(command(t, far, 0.19))  # arrives 0.17 s after START: within one window
    assert "tool_step_m" in {v.kind for v in found} and "joint_speed" not in {v.kind for v in found}


def test_the_tool_window_is_measured_between_arrivals():
    """A bound per 0.2 s: the same travel spread over 0.4 s of arrivals passes."""
    monitor = ArmMonitor()
    far = START + np.array([0.0, 0.35, 0.0, 0.0, 0.0, 0.0])
    travel = np.linalg.norm(forward_kinematics(far)[:3, 3] - forward_kinematics(START)[:3, 3])
    assert 0.06 < travel < 0.1  # over the bound (0.05 m) in one window, under it in two
    stream(monitor, [START, *ramp(START, far, 20)])  # 0.4 s
    assert monitor.violations == []
    assert monitor.max_tool_step_m <= 0.05 * 1.1
    fast = ArmMonitor()
    stream(fast, [START, *ramp(START, far, 8)])  # 0.16 s
    assert kinds(fast) == {"tool_step_m", "tool_step_rad"}  # the shoulder also turns the tool 0.35 rad


def test_the_tool_window_keeps_only_recent_commands_even_when_the_clock_goes_back():
    monitor = ArmMonitor()
    stream(monitor, [START] * 200)  # 4 s at 50 Hz
    assert len(monitor._recent) <= 2.0 / SERVO_S + 2
    stream(monitor, [START] * 5, t0_s=1.0)  # a restarted clock, 9 s back
    assert len(monitor._recent) == 5 and monitor.violations == []


def test_rotation_of_the_tool_beyond_the_bound():
    monitor = ArmMonitor()
    turned = START + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.4])  # wrist_rotate: pure tool rotation
    stream(monitor, [START, *ramp(START, turned, 8)])  # 0.4 rad in 0.16 s: 2.5 rad/s, legal speed
    assert kinds(monitor) == {"tool_step_rad"}
    worst = max(v.value for v in monitor.violations)
    assert worst == pytest.approx(0.4, abs=1e-6)


def test_a_waypoint_from_the_previous_episode_after_a_start_is_caught():
    """The issue's reset: the wrist swung from 0 to -2.39 rad with a waypoint stamped in the new episode."""
    monitor = ArmMonitor()
    old = START.copy()
    old[5] = -2.39
    t = stream(monitor, [old, old])
    home = np.zeros(6)
    monitor.episode_start(int(t * 1e9), received_s=t)
    assert monitor.joint_state(t + 0.005, home) == []
    found = monitor.add(command(t + 0.01, old, 0.04))  # the old target, stamped after the start
    assert [v.kind for v in found] == ["previous_episode"]
    assert "wrist_rotate" in found[0].detail and found[0].value == pytest.approx(2.39 / 0.04)
    assert monitor.summary()["violations"]["previous_episode"] == 1 and monitor.summary()["episodes"] == 1


def test_an_episode_that_starts_from_the_measured_joints_passes():
    monitor = ArmMonitor()
    old = START.copy()
    t = stream(monitor, [old, old])
    home = np.zeros(6)
    monitor.episode_start(int(t * 1e9), received_s=t)
    monitor.add(command(t - 0.01, old, 0.04))  # stamped before the start: late, the sim drops it
    monitor.joint_state(t + 0.005, home + 0.01)  # the measurement may lag the arm a little
    stream(monitor, ramp(home, home + np.array([0.05, 0, 0, 0, 0, 0]), 10), t0_s=t + 0.02)
    assert monitor.violations == []


def test_the_first_command_waits_for_a_measurement_after_the_start():
    """Topics are not ordered with each other: a command may arrive before the reset's joint state."""
    monitor = ArmMonitor()
    old = START.copy()
    old[0] = 1.0
    t = stream(monitor, [old])
    monitor.joint_state(t - 0.01, old)  # before the start: not the reset pose
    monitor.episode_start(int(t * 1e9), received_s=t)
    assert monitor.add(command(t + 0.01, old, 0.04)) == []  # judged when the measurement comes
    found = monitor.joint_state(t + 0.02, np.zeros(6))
    assert [v.kind for v in found] == ["previous_episode"] and monitor.violations == found


def test_a_joint_state_stamped_before_the_start_is_not_the_episodes_measurement():
    """A state measured before the reset may arrive after the start event: its stamp says so."""
    monitor = ArmMonitor()
    old = START.copy()
    t = stream(monitor, [old])
    start_ns = int(t * 1e9)
    monitor.episode_start(start_ns, received_s=t)
    assert monitor.joint_state(t + 0.005, old, stamp_ns=start_ns - 20_000_000) == []  # in flight
    assert monitor.add(command(t + 0.01, np.zeros(6), 0.04)) == []  # waits for the reset's state
    assert monitor.joint_state(t + 0.02, np.zeros(6), stamp_ns=start_ns) == []
    assert monitor.violations == []


def test_non_finite_joint_states_are_not_measurements_and_bad_shapes_are_refused():
    monitor = ArmMonitor()
    monitor.episode_start(1_000_000_000, received_s=1.0)
    monitor.joint_state(1.01, [float("nan")] * 6)
    monitor.add(command(1.02, START, 0.04))
    assert monitor.violations == []  # pending: no valid measurement yet
    assert [v.kind for v in monitor.joint_state(1.03, START + 1.0)] == ["previous_episode"]
    with pytest.raises(ValueError, match="5 positions, expected 6"):
        monitor.joint_state(1.04, [0.0] * 5)
    with pytest.raises(ValueError, match="7 positions, expected 6"):
        monitor.add(command(1.05, [0.0] * 7))
    with pytest.raises(ValueError, match="tool_step_m: expected a finite number > 0"):
        ArmMonitor(tool_step_m=0.0)
    with pytest.raises(ValueError, match="Tolerance.speed_rel"):
        Tolerance(speed_rel=-1.0)
