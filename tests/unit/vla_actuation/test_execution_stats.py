"""ExecutionStats: idle ticks, chunk-join jumps (joints and tool) against the per-step bound, speeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation.execution_stats import PENDING_BOUNDARIES, ExecutionStats
from vla_actuation.kinematics import forward_kinematics
from vla_actuation.safety import SafetyLimits

DT = 0.2
HOME = np.array([0.0, -0.3, 0.3, 0.0, 0.3, 0.0])


def _unit(joint: int) -> np.ndarray:
    out = np.zeros(6)
    out[joint] = 1.0
    return out


def _steps(stats: ExecutionStats, start: np.ndarray, step: np.ndarray, n: int, boundary_at: int | None = 0):
    """n steps of ``step`` from ``start`` (the first executed target is start + step); returns the last."""
    q = start.copy()
    for i in range(n):
        q = q + step
        stats.on_step(q, chunk_boundary=i == boundary_at)
    return q


def test_a_join_that_continues_the_motion_scores_zero():
    stats = ExecutionStats(DT)
    stats.start()
    q = _steps(stats, HOME, 0.01 * _unit(0), 4)  # the first chunk: joins nothing
    _steps(stats, q, 0.01 * _unit(0), 4)  # the second continues at the same step
    s = stats.summary()
    assert s["control_steps"] == 8 and s["boundaries"] == 1
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.0, abs=1e-12)
    assert s["boundary_jump_tool_rad_max"] == pytest.approx(0.0, abs=1e-9)  # turns about one axis
    assert s["boundary_jump_tool_m_max"] < 1e-4  # the waist swings the tool on a circle: tiny
    assert s["boundary_step_joint_rad_max"] == pytest.approx(0.01)
    assert s["boundary_jumps_over_bound"] == 0 and s["boundary_steps_over_bound"] == 0


def test_a_known_jump_at_the_join_in_joints_and_tool():
    stats = ExecutionStats(DT)
    stats.start()
    q = _steps(stats, HOME, 0.01 * _unit(1), 3)
    q_next = q + 0.05 * _unit(1)  # the new chunk steps 0.05 where the old one stepped 0.01
    stats.on_step(q_next, chunk_boundary=True)
    s = stats.summary()
    assert s["boundaries"] == 1
    assert s["boundary_jump_joint_rad_p50"] == pytest.approx(0.04)
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.04)
    p2, p1, p0 = (forward_kinematics(j)[:3, 3] for j in (q - 0.01 * _unit(1), q, q_next))
    assert s["boundary_jump_tool_m_max"] == pytest.approx(np.linalg.norm((p0 - p1) - (p1 - p2)))
    # the shoulder turns the tool about one axis: the rotation step goes from 0.01 to 0.05 rad
    assert s["boundary_jump_tool_rad_max"] == pytest.approx(0.04, abs=1e-6)
    assert s["boundary_step_tool_rad_max"] == pytest.approx(0.05, abs=1e-6)


def test_idle_ticks_count_only_while_running():
    stats = ExecutionStats(DT)
    stats.start()
    stats.on_idle()  # waiting for the first chunk: not idle
    q = _steps(stats, HOME, 0.01 * _unit(0), 3)
    stats.on_idle()
    stats.on_idle()  # the chunk ran out
    stats.on_held()  # the safety layer held a step: not idle
    s = stats.summary()
    assert (s["control_steps"], s["idle_steps"]) == (3, 2)
    assert s["idle_fraction"] == pytest.approx(2 / 5)
    stats.start()  # terminate / e-stop / next episode: not running until the next step
    stats.on_idle()
    assert stats.summary()["idle_steps"] == 2
    stats.on_step(q, chunk_boundary=True)
    stats.on_idle()
    assert stats.summary()["idle_steps"] == 3


def test_a_join_after_the_arm_stopped_scores_its_whole_step_and_is_over_a_small_bound():
    limits = SafetyLimits(max_joint_velocity_rad_s=0.1)  # 0.02 rad per 0.2 s step
    stats = ExecutionStats(DT, limits)
    np.testing.assert_allclose(stats.joint_step_bound_rad, np.full(6, 0.02))
    stats.start()
    q = _steps(stats, HOME, 0.015 * _unit(2), 2)
    stats.on_idle()  # the arm holds: its step is 0
    stats.on_step(q + 0.015 * _unit(2), chunk_boundary=True)
    s = stats.summary()
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.015)
    assert s["boundary_jumps_over_bound"] == 0 and s["steps_over_speed_limit"] == 0
    stats.on_step(q + 0.03 * _unit(2), chunk_boundary=False)  # back at speed, no join
    stats.on_step(q + 0.06 * _unit(2), chunk_boundary=True)  # 0.03 > 0.02: a step over the bound
    s = stats.summary()
    assert s["boundaries"] == 2
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.015)
    assert s["boundary_steps_over_bound"] == 1 and s["boundary_jumps_over_bound"] == 0
    assert s["max_joint_speed_rad_s"] == pytest.approx(0.15)
    assert s["max_joint_speed_fraction"] == pytest.approx(1.5)
    assert s["steps_over_speed_limit"] == 1
    stats.on_step(q + 0.06 * _unit(2) - 0.03 * _unit(2), chunk_boundary=True)  # reverses: jump 0.06
    s = stats.summary()
    assert s["boundary_jumps_over_bound"] == 1 and s["boundary_jump_joint_rad_max"] == pytest.approx(0.06)


def test_a_tool_jump_over_the_tool_bound_is_counted():
    limits = SafetyLimits(max_translation_step_m=0.05, max_rotation_step_rad=0.25)
    stats = ExecutionStats(DT, limits)
    assert (stats.tool_step_m, stats.tool_step_rad) == (0.05, 0.25)
    stats.start()
    q = _steps(stats, HOME, 0.1 * _unit(5), 3)  # the wrist rotates 0.1 rad a step
    stats.on_step(q - 0.2 * _unit(5), chunk_boundary=True)  # and back 0.2: a 0.3 rad jump
    s = stats.summary()
    assert s["boundary_jump_tool_rad_max"] == pytest.approx(0.3, abs=1e-6)
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.3)  # under the joint bound (pi * 0.2)
    assert s["boundary_jumps_over_bound"] == 1 and s["boundary_steps_over_bound"] == 0


def test_no_join_is_measured_across_start_and_the_first_chunk_joins_nothing():
    stats = ExecutionStats(DT)
    stats.start()
    q = _steps(stats, HOME, 0.01 * _unit(0), 3)
    stats.start()
    stats.on_step(q + 0.5 * _unit(0), chunk_boundary=True)  # a new episode's first chunk
    stats.on_step(q + 0.6 * _unit(0), chunk_boundary=True)  # one tick since start: not measured
    s = stats.summary()
    assert s["boundaries"] == 0 and s["boundary_jump_joint_rad_p50"] is None
    assert s["boundary_jump_tool_m_max"] is None
    assert s["max_joint_speed_rad_s"] == pytest.approx(0.1 / DT)  # 0.5 across start() is no step


def test_a_held_join_is_measured_at_the_next_executed_step():
    stats = ExecutionStats(DT)
    stats.start()
    q = _steps(stats, HOME, 0.01 * _unit(0), 3)
    stats.on_held(chunk_boundary=True)
    stats.on_step(q + 0.01 * _unit(0), chunk_boundary=False)
    s = stats.summary()
    assert s["boundaries"] == 1 and s["boundary_jump_joint_rad_max"] == pytest.approx(0.01)


def test_percentiles_cover_the_window_and_maxima_everything():
    stats = ExecutionStats(DT, window=2)
    stats.start()
    q = HOME.copy()
    for jump in (0.05, 0.01, 0.02, 0.03, 0.04):
        q = _steps(stats, q, np.zeros(6), 2, boundary_at=None)  # hold still
        q = q + jump * _unit(0)
        stats.on_step(q, chunk_boundary=True)
    s = stats.summary()
    assert s["boundaries"] == 5
    assert s["boundary_jump_joint_rad_max"] == pytest.approx(0.05)
    assert s["boundary_jump_joint_rad_p50"] == pytest.approx(0.035)  # the last two: 0.03, 0.04
    assert s["boundary_jump_tool_m_max"] > s["boundary_jump_tool_m_p99"] > 0  # 0.05's, outside the window
    assert s["boundary_jump_tool_m_max"] == pytest.approx(
        np.linalg.norm(forward_kinematics(HOME + 0.05 * _unit(0))[:3, 3] - forward_kinematics(HOME)[:3, 3])
    )


def test_bad_values_are_refused_naming_them():
    with pytest.raises(ValueError, match="step_dt_s"):
        ExecutionStats(0.0)
    with pytest.raises(ValueError, match="step_dt_s"):
        ExecutionStats(math.inf)
    with pytest.raises(ValueError, match="window"):
        ExecutionStats(DT, window=0)
    stats = ExecutionStats(DT)
    with pytest.raises(ValueError, match="joint_targets_rad"):
        stats.on_step(np.zeros(5), chunk_boundary=False)
    with pytest.raises(ValueError, match="joint_targets_rad"):
        stats.on_step(np.full(6, np.nan), chunk_boundary=False)


def test_an_empty_summary_is_all_zero_counts():
    s = ExecutionStats(DT).summary()
    assert s["control_steps"] == 0 and s["idle_fraction"] == 0.0 and s["boundaries"] == 0
    assert s["max_joint_speed_fraction"] is None


def test_boundaries_waiting_for_their_tool_figures_are_processed_when_the_buffer_is_full():
    stats = ExecutionStats(DT)
    stats.start()
    q = HOME.copy()
    for _ in range(PENDING_BOUNDARIES + 3):  # no summary() in between
        q = _steps(stats, q, np.zeros(6), 2, boundary_at=None)  # holds still, then a join moves
        q = q + 0.001 * _unit(1)
        stats.on_step(q, chunk_boundary=True)
    assert stats._pending_count == 3  # the full buffer was processed on the way
    s = stats.summary()
    assert s["boundaries"] == PENDING_BOUNDARIES + 3
    assert s["boundary_jump_tool_rad_p50"] == pytest.approx(0.001, abs=1e-6)  # every join: 0 -> 0.001 rad
