"""What is streamed obeys the joint speed limit: across chunk switches, late ticks and re-plans."""

from __future__ import annotations

import numpy as np
import pytest

from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController
from vla_actuation.safety import SafetyLimits
from vla_actuation.servo_stream import (
    ServoStream,
    plan_duration,
    streamed_speed_violations,
    tool_window_violations,
)
from vla_actuation.tool_bound import tool_travel

NEUTRAL = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160])
LIMITS = SafetyLimits()
SPEED = LIMITS.joint_velocity_limits()
SERVO_HZ = 50.0
STEP_S = 0.2


def _run(stream: ServoStream, ticks_s, plans: dict[int, np.ndarray]) -> tuple[list[float], list[np.ndarray]]:
    """Tick at ``ticks_s``; before tick i, plan to ``plans[i]`` if given. Returns stamps and joints sent."""
    stamps, sent = [stream.last[0]], [stream.last[1].copy()]
    for index, now_s in enumerate(ticks_s):
        if index in plans:
            stream.plan(plans[index], now_s)
        point = stream.tick(now_s)
        if point is not None:
            assert np.max(np.abs(point.joints - sent[-1]) / SPEED) <= point.time_from_start_s + 1e-9
            stamps.append(point.stamp_s)
            sent.append(point.joints)
    return stamps, sent


def test_the_speed_check_finds_a_fast_point_and_passes_a_slow_one():
    joints = [NEUTRAL, NEUTRAL + 0.05, NEUTRAL + 0.30]
    assert streamed_speed_violations([0.0, 0.02, 0.04], joints, SPEED) == [
        (2, pytest.approx(0.25 / 0.02 / np.pi))
    ]
    assert streamed_speed_violations([0.0, 0.02, 0.2], joints, SPEED) == []
    assert streamed_speed_violations([0.0, 0.0], [NEUTRAL, NEUTRAL + 0.01], SPEED)[0][1] == np.inf


def test_a_far_target_is_stretched_to_the_distance():
    far = NEUTRAL + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.5])  # 1.5 rad: ~0.9 s at pi rad/s with min-jerk
    assert plan_duration(NEUTRAL, far, STEP_S, LIMITS) >= 1.875 * 1.5 / np.pi - 1e-9
    assert plan_duration(NEUTRAL, NEUTRAL, STEP_S, LIMITS) == STEP_S
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    stamps, sent = _run(stream, np.arange(1, 200) * 0.02, {0: far})
    assert streamed_speed_violations(stamps, sent, SPEED) == []
    assert np.allclose(sent[-1], far)


def test_a_chunk_switch_starts_from_the_last_streamed_point_not_the_previous_target():
    # The case: a new target one full step from the PREVIOUS TARGET arrives mid-step, when the
    # stream has not reached that target yet; planned from the target, the stream would jump.
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    step = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.33])  # just under one step at the peak speed limit
    stamps, sent = _run(stream, np.arange(1, 60) * 0.02, {0: NEUTRAL - step, 5: NEUTRAL + step, 9: NEUTRAL})
    assert streamed_speed_violations(stamps, sent, SPEED) == []


def test_a_stall_never_jumps_the_stream():
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    target = NEUTRAL + np.array([0.3, -0.3, 0.3, 0.0, 0.0, 0.0])
    ticks = [0.02, 0.04, 0.6, 0.62, 0.64] + list(0.64 + np.arange(1, 60) * 0.02)  # 0.56 s paused
    stamps, sent = _run(stream, ticks, {0: target})
    assert streamed_speed_violations(stamps, sent, SPEED) == []
    assert np.allclose(sent[-1], target)


def test_random_chunk_timings_never_exceed_the_speed_limit():
    """Property-style: random targets and arrival times, jittered and stalled ticks."""
    rng = np.random.default_rng(22)
    for _ in range(15):
        stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
        stream.anchor(NEUTRAL, 0.0)
        ticks = np.cumsum(rng.choice([0.02, 0.02, 0.02, 0.01, 0.035, 0.3, 0.6], size=150, p=None))
        ticks += rng.uniform(-0.004, 0.004, size=ticks.size)
        ticks = np.maximum.accumulate(ticks)
        plans = {
            int(i): NEUTRAL + rng.uniform(-0.6, 0.6, size=6) for i in rng.choice(150, size=20, replace=False)
        }
        stamps, sent = _run(stream, ticks, plans)
        assert streamed_speed_violations(stamps, sent, SPEED) == [], (ticks, plans)


def test_plan_before_anchor_is_a_bug():
    with pytest.raises(RuntimeError, match="before anchor"):
        ServoStream(SERVO_HZ, LIMITS, STEP_S).plan(NEUTRAL, 0.0)
    with pytest.raises(ValueError, match="servo_hz"):
        ServoStream(0.0, LIMITS, STEP_S)


def test_the_tool_moves_within_the_bound_over_any_step_window_across_chunk_switches():
    """Targets switched mid-plan, stalled ticks: no step window nor stall moves the tool past the bound."""
    rng = np.random.default_rng(625)
    for _ in range(4):
        stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
        stream.anchor(NEUTRAL, 0.0)
        ticks = np.cumsum(rng.choice([0.02] * 20 + [0.4], size=150))  # now and then a stall
        plans, target = {}, NEUTRAL.copy()
        for index in np.sort(rng.choice(150, size=60, replace=False)):
            target = target + rng.uniform(-0.15, 0.15, size=6)
            plans[int(index)] = target
        stamps, sent = _run(stream, ticks, plans)
        assert tool_window_violations(stamps, sent, STEP_S, LIMITS) == []
        assert streamed_speed_violations(stamps, sent, SPEED) == []


def test_the_window_check_finds_a_window_over_the_bound():
    along_x = [NEUTRAL, NEUTRAL + [0.0, 0.1, -0.1, 0.0, 0.0, 0.0], NEUTRAL + [0.0, 0.2, -0.2, 0.0, 0.0, 0.0]]
    assert tool_window_violations([0.0, 0.1, 0.2], along_x, STEP_S, LIMITS)  # in one step window
    assert tool_window_violations([0.0, 1.0], along_x[:2], STEP_S, LIMITS) == []


def test_a_policy_moving_at_the_bound_every_step_keeps_its_pace():
    """Five steps of one full bound, one per 0.2 s: the stream is within the bound in every window and
    is less than one bound behind when the last step is due (the tool speed limit slows only plans
    faster than the bound), then reaches the target."""
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    controller = EeDeltaController(ControllerConfig(step_dt_s=STEP_S, limits=LIMITS))
    controller.reset(NEUTRAL)
    plans = {}
    for step in range(5):  # +x: the workspace has room for 0.25 m from NEUTRAL
        result = controller.step([0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], controller.joint_targets_rad)
        plans[10 * step] = result.joint_targets_rad
    stamps, sent = _run(stream, np.arange(1, 61) * 0.02, plans)
    assert tool_window_violations(stamps, sent, STEP_S, LIMITS) == []
    due = int(np.argmin(np.abs(np.asarray(stamps) - 1.0)))  # when the last step's plan ends
    assert tool_travel(sent[due], plans[40])[0] < LIMITS.max_translation_step_m
    assert tool_travel(sent[-1], plans[40])[0] < 1e-6


def test_re_planning_from_measured_joints_keeps_the_speed_reference_within_an_episode():
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    assert stream.tick(0.02) is None  # nothing planned
    measured = NEUTRAL + 0.3  # the arm lags its commands
    stream.anchor(measured, 0.02, keep_speed_reference=True)
    stamps, sent = _run(stream, 0.02 + np.arange(1, 80) * 0.02, {0: measured + 0.05})
    assert streamed_speed_violations(stamps, sent, SPEED) == []  # from NEUTRAL, never a jump to measured
    assert np.allclose(sent[-1], measured + 0.05)
    stream.anchor(NEUTRAL, 1.0)  # a reset: speed counts from the new state
    assert stream.last[0] == 1.0 and np.array_equal(stream.last[1], NEUTRAL)


def test_a_protective_stop_heads_for_the_arm_within_the_limits_and_drops_the_plan():
    stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
    stream.anchor(NEUTRAL, 0.0)
    stream.plan(NEUTRAL + 0.3, 0.0)
    stamps, sent = _run(stream, [0.02, 0.04, 0.06], {})
    arm = sent[-1] - 0.2  # the arm lags far behind its commands
    point = stream.stop_toward(arm, 0.08)
    assert streamed_speed_violations([*stamps, point.stamp_s], [*sent, point.joints], SPEED) == []
    assert np.all(point.joints < sent[-1]) and stream.final_target is None and stream.tick(0.1) is None
    assert stream.stop_toward(arm, 0.08) is None  # no time has passed: nothing more to send


def test_the_tool_bound_holds_over_every_window_of_arrivals_too():
    """ArmMonitor (the soak) compares points by their ARRIVAL (stamp + time_from_start): a point given
    more time after a stall arrives later, closer to the next ones (0.0596 m within 0.194 s of
    arrivals in a soak, 11 commands apart). Every pair of points arriving within one step stays
    within the bound."""
    from vla_actuation.kinematics import forward_kinematics  # lazy: only this test needs FK here
    from vla_actuation.tool_bound import pose_travel  # lazy: as above

    rng = np.random.default_rng(194)
    for _ in range(8):
        stream = ServoStream(SERVO_HZ, LIMITS, STEP_S)
        stream.anchor(NEUTRAL, 0.0)
        ticks = np.cumsum(rng.choice([0.02] * 12 + [0.06, 0.15, 0.4], size=150))  # late ticks, stalls
        target, points = NEUTRAL.copy(), []
        for index, now_s in enumerate(ticks):
            if index % 10 == 0:
                target = NEUTRAL + rng.uniform(-0.6, 0.6, size=6) * [0.2, 0.2, 0.2, 1.0, 1.0, 1.0]
                stream.plan(target, now_s)
            point = stream.tick(now_s)
            if point is not None:
                points.append((point.stamp_s + point.time_from_start_s, forward_kinematics(point.joints)))
        for i, (arrival_i, pose_i) in enumerate(points):
            for arrival_j, pose_j in points[i + 1 :]:
                if abs(arrival_j - arrival_i) <= STEP_S:
                    translation, rotation = pose_travel(pose_i, pose_j)
                    assert translation <= LIMITS.max_translation_step_m + 1e-9, (arrival_i, arrival_j)
                    assert rotation <= LIMITS.max_rotation_step_rad + 1e-9, (arrival_i, arrival_j)
