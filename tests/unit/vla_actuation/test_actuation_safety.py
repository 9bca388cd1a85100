"""Safety limits: every clamp, every violation code, no exceptions for bad data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation import safety
from vla_actuation.kinematics import ARM_JOINT_NAMES, JOINT_LOWER_RAD, JOINT_UPPER_RAD
from vla_actuation.safety import (
    SafetyLimits,
    clamp_to_workspace,
    clip_ee_delta,
    command_is_stale,
    limit_joint_step,
    validate_action,
    validate_joint_state,
)

LIMITS = SafetyLimits()
NS = 1_000_000_000


def _codes(violations: tuple[safety.Violation, ...]) -> list[str]:
    return [v.code for v in violations]


# --- SafetyLimits -----------------------------------------------------------------------------
def test_defaults_follow_safety_md() -> None:
    assert LIMITS.max_translation_step_m == 0.05 and LIMITS.max_rotation_step_rad == 0.25
    assert LIMITS.workspace_low_m == (0.10, -0.20, -0.01) and LIMITS.workspace_high_m == (0.45, 0.25, 0.30)
    assert LIMITS.joint_margin_rad == 0.1 and LIMITS.command_timeout_s == 0.4
    assert LIMITS.max_future_stamp_s == 0.05 and LIMITS.max_tracking_error_rad == 0.5
    np.testing.assert_allclose(LIMITS.joint_velocity_limits(), np.full(6, math.pi))


def test_limits_accept_lists_and_per_joint_speeds() -> None:
    limits = SafetyLimits(workspace_low_m=[0.1, -0.1, 0.0], max_joint_velocity_rad_s=np.arange(1.0, 7.0))
    assert limits.workspace_low_m == (0.1, -0.1, 0.0)
    np.testing.assert_allclose(limits.joint_velocity_limits(), np.arange(1.0, 7.0))
    hash(limits)  # frozen and hashable: usable as a config value


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_translation_step_m": -0.01}, "max_translation_step_m"),
        ({"max_rotation_step_rad": float("nan")}, "max_rotation_step_rad"),
        ({"command_timeout_s": 0.0}, "command_timeout_s"),
        ({"workspace_low_m": (0.5, -0.2, -0.01)}, "workspace_low_m"),
        ({"workspace_high_m": (0.45, 0.25)}, "workspace_high_m"),
        ({"max_joint_velocity_rad_s": 0.0}, "max_joint_velocity_rad_s"),
        ({"max_joint_velocity_rad_s": [1.0, 2.0]}, "max_joint_velocity_rad_s"),
        ({"joint_margin_rad": 2.0}, "joint_margin_rad"),
        ({"max_tracking_error_rad": "big"}, "max_tracking_error_rad"),
    ],
)
def test_limits_validate_and_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SafetyLimits(**kwargs)


# --- validate_action --------------------------------------------------------------------------
def test_valid_action_passes_as_float64() -> None:
    action, violations = validate_action([0, 1, 2, 3, 4, 5, 1], 7)
    assert violations == () and action.dtype == np.float64
    np.testing.assert_array_equal(action, [0, 1, 2, 3, 4, 5, 1])


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ([0.0] * 6, safety.WRONG_LENGTH),
        (np.zeros((1, 7)), safety.WRONG_LENGTH),
        (["a"] * 7, safety.NOT_NUMERIC),
        ([None] * 7, safety.NOT_NUMERIC),
        (np.array([1j] * 7), safety.NOT_NUMERIC),
        ([0, 0, float("nan"), 0, 0, 0, 1], safety.NAN),
        ([0, 0, 0, float("inf"), 0, 0, 1], safety.INF),
        ([0, 0, 0, 0, 0, -float("inf"), 1], safety.INF),
    ],
)
def test_invalid_actions_are_rejected(values: object, code: str) -> None:
    action, violations = validate_action(values, 7)
    assert action is None
    assert _codes(violations) == [code]
    assert violations[0].message


def test_nan_violation_names_the_index() -> None:
    _, violations = validate_action([0, 0, 0, 0, float("nan"), 0, 0], 7)
    assert violations[0].field == "action[4]"


# --- clip_ee_delta ----------------------------------------------------------------------------
def test_small_delta_passes_unchanged() -> None:
    delta = np.array([0.01, -0.02, 0.01, 0.1, -0.1, 0.2, 0.7])
    clipped, violations = clip_ee_delta(delta, LIMITS)
    assert violations == ()
    np.testing.assert_array_equal(clipped, delta)


def test_huge_delta_is_clipped_per_step() -> None:
    delta = np.array([0.5, 0.0, 0.0, 2.5, -2.5, 0.1, 10.0])  # 10x the bounds
    clipped, violations = clip_ee_delta(delta, LIMITS)
    np.testing.assert_allclose(clipped, [0.05, 0, 0, 0.25, -0.25, 0.1, 1.0])
    assert _codes(violations) == [
        safety.TRANSLATION_CLIPPED,
        safety.ROTATION_CLIPPED,
        safety.ROTATION_CLIPPED,
        safety.GRIPPER_CLIPPED,
    ]
    assert violations[0].value == pytest.approx(0.5)
    assert "0.4500" in violations[0].message  # clipped by 0.45 m
    assert [v.field for v in violations[1:3]] == ["roll", "pitch"]


def test_translation_is_norm_clipped_keeping_direction() -> None:
    clipped, violations = clip_ee_delta([0.04, 0.04, 0.04, 0, 0, 0, 0.5], LIMITS)
    assert np.linalg.norm(clipped[:3]) == pytest.approx(0.05)
    np.testing.assert_allclose(clipped[:3] / np.linalg.norm(clipped[:3]), np.ones(3) / math.sqrt(3))
    assert _codes(violations) == [safety.TRANSLATION_CLIPPED]


def test_negative_gripper_is_clipped_to_zero() -> None:
    clipped, violations = clip_ee_delta([0, 0, 0, 0, 0, 0, -0.3], LIMITS)
    assert clipped[6] == 0.0 and _codes(violations) == [safety.GRIPPER_CLIPPED]


def test_clip_rejects_invalid_input_without_raising() -> None:
    clipped, violations = clip_ee_delta([0, 0, float("nan"), 0, 0, 0, 1], LIMITS)
    assert clipped is None and _codes(violations) == [safety.NAN]


# --- clamp_to_workspace -----------------------------------------------------------------------
def test_workspace_clamp() -> None:
    inside, violations = clamp_to_workspace([0.3, 0.0, 0.1], LIMITS)
    assert violations == ()
    np.testing.assert_array_equal(inside, [0.3, 0.0, 0.1])
    clamped, violations = clamp_to_workspace([0.6, -0.5, 0.1], LIMITS)
    np.testing.assert_allclose(clamped, [0.45, -0.20, 0.1])
    assert _codes(violations) == [safety.WORKSPACE_CLAMPED] * 2
    assert [v.field for v in violations] == ["x", "y"]
    assert violations[1].value == pytest.approx(-0.5)


# --- limit_joint_step -------------------------------------------------------------------------
def _upper_margin(index: int) -> float:
    return float(JOINT_UPPER_RAD[index] - LIMITS.joint_margin_rad)


def test_step_within_limits_is_unchanged() -> None:
    current = np.zeros(6)
    target = np.array([0.1, -0.1, 0.05, 0.0, 0.1, -0.1])
    limited, violations = limit_joint_step(target, current, 0.2, LIMITS)
    assert violations == ()
    np.testing.assert_array_equal(limited, target)


def test_target_past_the_margin_is_clamped_to_it() -> None:
    current = np.zeros(6)
    current[2] = _upper_margin(2) - 0.2  # elbow approaching its upper bound
    target = current.copy()
    target[2] = JOINT_UPPER_RAD[2] + 0.3
    limited, violations = limit_joint_step(target, current, 1.0, LIMITS)
    assert limited[2] == pytest.approx(_upper_margin(2))
    assert _codes(violations) == [safety.JOINT_MARGIN] and violations[0].field == "elbow"


def test_joint_inside_the_margin_halts_toward_the_bound() -> None:
    current = np.zeros(6)
    current[4] = _upper_margin(4) + 0.05  # wrist_angle already inside its margin
    target = current.copy()
    target[4] += 0.02  # still toward the bound
    target[0] = 0.1  # another joint keeps moving
    limited, violations = limit_joint_step(target, current, 0.2, LIMITS)
    assert limited[4] == current[4]
    assert limited[0] == pytest.approx(0.1)
    assert _codes(violations) == [safety.JOINT_MARGIN] and "halted" in violations[0].message


def test_joint_inside_the_margin_may_move_away_from_the_bound() -> None:
    current = np.zeros(6)
    current[1] = JOINT_LOWER_RAD[1] + 0.03  # shoulder inside its lower margin
    target = current.copy()
    target[1] += 0.05  # away from the bound, still inside the margin
    limited, violations = limit_joint_step(target, current, 0.2, LIMITS)
    assert violations == ()
    assert limited[1] == pytest.approx(target[1])


def test_velocity_scaling_is_uniform() -> None:
    current = np.zeros(6)
    target = np.array([1.0, 0.5, -0.25, 0.0, 0.0, 0.0])  # waist at 5 rad/s over 0.2 s
    limited, violations = limit_joint_step(target, current, 0.2, LIMITS)
    step = limited - current
    assert np.max(np.abs(step)) == pytest.approx(math.pi * 0.2)
    np.testing.assert_allclose(step / step[0], target / target[0])  # direction kept
    assert _codes(violations) == [safety.JOINT_VELOCITY_SCALED] and violations[0].field == "waist"
    assert violations[0].value == pytest.approx(1.0 / (math.pi * 0.2))


def test_per_joint_velocity_limits() -> None:
    limits = SafetyLimits(max_joint_velocity_rad_s=(1.0, 1.0, 1.0, 1.0, 1.0, 0.1))
    target = np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.1])  # wrist_rotate 1 rad/s against 0.1
    limited, violations = limit_joint_step(target, np.zeros(6), 0.1, limits)
    np.testing.assert_allclose(limited, [0.01, 0, 0, 0, 0, 0.01])
    assert violations[0].field == "wrist_rotate"


@pytest.mark.parametrize(
    ("target", "dt_s", "code"),
    [
        (np.array([0, 0, np.nan, 0, 0, 0]), 0.2, safety.NAN),
        (np.zeros(5), 0.2, safety.WRONG_LENGTH),
        (np.full(6, 0.1), 0.0, safety.INVALID_DT),
        (np.full(6, 0.1), float("inf"), safety.INVALID_DT),
    ],
)
def test_bad_joint_step_holds(target: np.ndarray, dt_s: float, code: str) -> None:
    current = np.full(6, 0.05)
    limited, violations = limit_joint_step(target, current, dt_s, LIMITS)
    np.testing.assert_array_equal(limited, current)
    assert _codes(violations) == [code]


# --- command_is_stale -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stamp_ns", "now_ns", "stale", "phrase"),
    [
        (10 * NS, 10 * NS + int(0.1 * NS), False, ""),
        (10 * NS, 10 * NS + int(0.39 * NS), False, ""),
        (10 * NS, 10 * NS + int(0.41 * NS), True, "old"),
        (0, 10 * NS, True, "zero"),
        (10 * NS + int(0.04 * NS), 10 * NS, False, ""),
        (10 * NS + int(0.06 * NS), 10 * NS, True, "future"),
    ],
)
def test_command_staleness(stamp_ns: int, now_ns: int, stale: bool, phrase: str) -> None:
    result, reason = command_is_stale(stamp_ns, now_ns, LIMITS)
    assert result is stale
    assert phrase in reason and (reason != "") is stale


# --- validate_joint_state ---------------------------------------------------------------------
def _joint_state() -> tuple[list[str], list[float]]:
    names = ["left_finger", *reversed(ARM_JOINT_NAMES), "right_finger"]
    positions = [0.03, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, -0.03]
    return names, positions


def test_joint_state_is_reordered_and_extras_ignored() -> None:
    joints, violations = validate_joint_state(*_joint_state())
    assert violations == ()
    np.testing.assert_allclose(joints, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_joint_state_missing_joint() -> None:
    names, positions = _joint_state()
    index = names.index("elbow")
    del names[index], positions[index]
    joints, violations = validate_joint_state(names, positions)
    assert joints is None and _codes(violations) == [safety.JOINT_MISSING] and violations[0].field == "elbow"


def test_joint_state_nan_and_length_mismatch() -> None:
    names, positions = _joint_state()
    positions[names.index("wrist_angle")] = float("nan")
    joints, violations = validate_joint_state(names, positions)
    assert joints is None and _codes(violations) == [safety.NAN] and violations[0].field == "wrist_angle"
    joints, violations = validate_joint_state(names, positions[:-1])
    assert joints is None and _codes(violations) == [safety.WRONG_LENGTH]


def test_joint_state_read_failure_all_minus_pi() -> None:
    joints, violations = validate_joint_state(list(ARM_JOINT_NAMES), [-math.pi] * 6)
    assert joints is None and _codes(violations) == [safety.JOINT_STATE_READ_FAILURE]
    # One joint legitimately at -pi (waist) is not a read failure.
    joints, violations = validate_joint_state(list(ARM_JOINT_NAMES), [-3.1, 0, 0, 0, 0, 0])
    assert joints is not None and violations == ()


def test_joint_state_out_of_limits_tolerance() -> None:
    positions = [0.0] * 6
    positions[2] = float(JOINT_UPPER_RAD[2]) + 0.1  # small overshoot: accepted as measured
    joints, violations = validate_joint_state(list(ARM_JOINT_NAMES), positions)
    assert joints is not None and joints[2] == pytest.approx(positions[2])
    positions[2] = float(JOINT_UPPER_RAD[2]) + 0.3
    joints, violations = validate_joint_state(list(ARM_JOINT_NAMES), positions)
    assert joints is None and _codes(violations) == [safety.JOINT_OUT_OF_LIMITS]
    assert violations[0].field == "elbow"
