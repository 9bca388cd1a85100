"""The actuation node's input checks: a value or a reason that names the value, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from vla_actuation.actuation_inputs import action_size_problem, joint_state_jump_rad


def test_an_action_over_the_byte_bound_is_refused_naming_both_sizes():
    assert action_size_problem(1000, 1000) is None
    assert (
        action_size_problem(24_000_000, 262144) == "message of 24000000 bytes exceeds max_action_bytes 262144"
    )


def test_joint_state_jump_is_the_largest_joint_change():
    assert joint_state_jump_rad(None, [1.0, 2.0]) == 0.0
    assert joint_state_jump_rad([0.0, 0.0], [0.1, -0.4]) == pytest.approx(0.4)
    # an arm at its speed limit between late joint states: no jump; beyond it, the excess
    assert joint_state_jump_rad([0.0, 0.0], [0.1, -0.4], 0.2, np.pi) <= 0.0
    assert joint_state_jump_rad([0.0, 0.0], [0.1, -0.4], 0.2, [np.pi, 1.0]) == pytest.approx(0.2)
    assert joint_state_jump_rad([0.0], [0.5], -1.0, np.pi) == pytest.approx(0.5)  # stamps going back
