"""The per-step tool bound holds on the realised step (FK of the commanded joints), after IK and clamps."""

from __future__ import annotations

import numpy as np
import pytest

from vla_actuation.ee_delta_controller import EeDeltaController
from vla_actuation.safety import SafetyLimits
from vla_actuation.tool_bound import TOOL_STEP_SCALED, limit_tool_step, tool_travel

NEUTRAL = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160])
LIMITS = SafetyLimits()


def test_a_step_within_the_bound_is_kept():
    target = NEUTRAL + np.array([0.0, 0.05, 0.0, 0.0, 0.0, 0.0])
    limited, found = limit_tool_step(NEUTRAL, target, LIMITS)
    assert found == () and np.array_equal(limited, target)


def test_a_step_beyond_the_bound_is_scaled_onto_it_keeping_its_direction():
    target = NEUTRAL + np.array([0.0, 0.3, 0.3, 0.0, 0.0, 0.0])  # 0.10 m, 0.6 rad
    limited, found = limit_tool_step(NEUTRAL, target, LIMITS)
    translation, rotation = tool_travel(NEUTRAL, limited)
    assert translation <= LIMITS.max_translation_step_m and rotation <= LIMITS.max_rotation_step_rad
    assert max(translation / 0.05, rotation / 0.25) > 0.999  # as far as the bound allows, not less
    fraction = (limited - NEUTRAL)[[1, 2]] / (target - NEUTRAL)[[1, 2]]
    assert fraction[0] == pytest.approx(fraction[1]) and np.array_equal(
        limited[[0, 3, 4, 5]], NEUTRAL[[0, 3, 4, 5]]
    )
    assert [v.code for v in found] == [TOOL_STEP_SCALED] and "0.6000 rad" in found[0].message


def test_ten_times_the_bound_on_every_axis_moves_the_tool_within_the_bound_each_step():
    controller = EeDeltaController()
    controller.reset(NEUTRAL)
    previous = NEUTRAL
    rng = np.random.default_rng(6)
    for _ in range(30):
        action = np.append(rng.choice([-1.0, 1.0], size=6) * np.array([0.5] * 3 + [2.5] * 3), 1.0)
        step = controller.step(action, previous)
        translation, rotation = tool_travel(previous, step.joint_targets_rad)
        assert translation <= LIMITS.max_translation_step_m + 1e-9, translation
        assert rotation <= LIMITS.max_rotation_step_rad + 1e-9, rotation
        previous = step.joint_targets_rad
