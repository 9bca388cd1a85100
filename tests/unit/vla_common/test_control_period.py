"""The control period from control_hz, and the check that a chunk was timed for it."""

from __future__ import annotations

import json

import pytest

from vla_common.control_period import step_dt_mismatch, step_period_s


def test_the_period_is_one_over_the_rate():
    assert step_period_s(5.0) == 0.2 and step_period_s(10) == 0.1


@pytest.mark.parametrize("control_hz", [0.0, -5.0, float("inf"), float("nan"), "5", True])
def test_a_rate_that_is_not_a_positive_number_is_refused(control_hz):
    with pytest.raises(ValueError, match="control_hz"):
        step_period_s(control_hz)


def test_a_chunk_timed_for_this_rate_passes_after_a_json_round_trip():
    assert step_dt_mismatch(json.loads(json.dumps(1.0 / 3.0)), 3.0) is None
    assert step_dt_mismatch(0.2 * (1 + 1e-6), 5.0) is None


def test_a_chunk_timed_for_another_rate_is_named():
    problem = step_dt_mismatch(0.1, 5.0)
    assert problem == "chunk step_dt_s 0.1 s differs from this node's control period 0.2 s (control_hz 5)"


def test_the_tolerance_is_relative_and_tight():
    assert step_dt_mismatch(0.2 * 1.01, 5.0) is not None
    assert step_dt_mismatch(0.2 * 1.01, 5.0, rel_tolerance=0.02) is None


def test_a_step_that_is_not_a_number_is_a_mismatch():
    assert "None" in step_dt_mismatch(None, 5.0)
