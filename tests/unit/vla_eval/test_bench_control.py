"""vla-stack bench control's arithmetic: intervals, pooling jobs, the table rows (no sim, no DDS)."""

from __future__ import annotations

import pytest

from vla_eval.bench_control import control_row, merge
from vla_eval.bench_report import wilson_interval


def test_wilson_interval_matches_the_textbook_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(64, 80) == pytest.approx((0.6995, 0.8730), abs=1e-4)
    with pytest.raises(ValueError, match="wilson_interval"):
        wilson_interval(3, 2)


def _part(successes, steps, idle, jumps_p99, over, f2a, speed):
    execution = {
        "control_steps": steps,
        "idle_steps": idle,
        "boundaries": steps // 2,
        "boundary_jump_joint_rad_p50": jumps_p99 / 2,
        "boundary_jump_joint_rad_p99": jumps_p99,
        "boundary_jump_tool_m_p99": None,
        "boundary_jump_tool_rad_p99": 0.01,
        "boundary_jumps_over_bound": over,
    }
    return {
        "successes": successes,
        "execution": execution,
        "frame_to_action_ms": f2a,
        "max_joint_speed_rad_s": speed,
    }


def test_jobs_of_one_configuration_pool_their_ticks_and_keep_the_worst_join():
    merged = merge(
        [
            _part([True, False], 90, 10, 0.05, 1, [30.0, 40.0], 2.0),
            _part([True], 100, 0, 0.02, 0, [35.0], 2.5),
        ]
    )
    assert merged["successes"] == [True, False, True]
    assert merged["idle_fraction"] == pytest.approx(10 / 200)
    assert merged["boundaries"] == 95
    assert merged["jump_joint_rad_p99"] == 0.05 and merged["jump_tool_m_p99"] is None
    assert merged["jumps_over_bound"] == 1
    assert merged["frame_to_action_ms"][0] == pytest.approx(35.0)
    assert merged["max_joint_speed_rad_s"] == 2.5


def test_a_row_shows_what_was_measured_and_dashes_the_rest():
    merged = merge([_part([True, True], 50, 0, 0.03, 0, [], 1.0)])
    row = control_row("replica", 0.3, {**merged, "inference_ms": None})
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["replica", "300", "2", "2/2 (100 %, 34-100)"]
    assert cells[4] == "-" and cells[5] == "-"  # no inference time in the replica, no frame_to_action
    assert cells[6] == "0.00 %"
