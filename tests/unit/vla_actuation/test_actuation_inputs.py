"""The actuation node's input checks: a value or a reason that names the value, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from vla_actuation.actuation_inputs import (
    ACCEPT,
    RESET,
    UNCONFIRMED,
    JointStateContinuity,
    action_size_problem,
    decode_joint_state,
    episode_start_problem,
    joint_state_jump_rad,
    joint_state_stamp_problem,
)
from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD
from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAME

ARM = BRIDGE_NEUTRAL_JOINTS_RAD.copy()
NAMES = [*ARM_JOINT_NAMES, FINGER_JOINT_NAME, "right_finger"]


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


@pytest.mark.parametrize("finger", [np.nan, np.inf, -np.inf, 0.5, -0.02])
def test_a_joint_state_with_a_bad_finger_is_refused_whole(finger):
    joints, finger_m, violations = decode_joint_state(NAMES, [*ARM, finger, -0.02])
    assert joints is None and finger_m is None and violations
    assert violations[0].field == FINGER_JOINT_NAME, violations
    assert FINGER_JOINT_NAME in violations[0].message and str(round(finger, 4))[:3] in violations[0].message


def test_a_joint_state_decodes_arm_and_finger_in_any_order_or_without_a_finger():
    joints, finger_m, violations = decode_joint_state(NAMES[::-1], [-0.02, 0.03, *ARM[::-1]])
    np.testing.assert_array_equal(joints, ARM)
    assert finger_m == 0.03 and violations == ()
    joints, finger_m, _ = decode_joint_state(ARM_JOINT_NAMES, ARM)
    np.testing.assert_array_equal(joints, ARM)
    assert finger_m is None
    assert decode_joint_state(ARM_JOINT_NAMES[:5], ARM[:5])[0] is None  # a missing arm joint: refused


def _continuity(confirm_s=0.1):
    return JointStateContinuity(0.3, np.pi, confirm_s, arrival_slack_s=0.5)


def _ns(seconds):
    return int(seconds * 1e9)


def test_a_single_lie_changes_nothing_and_the_next_true_state_is_accepted():
    continuity = _continuity()
    assert continuity.admit(ARM, _ns(1.0), _ns(1.0))[0] == ACCEPT
    lie = ARM + np.array([0, 0, 0, 0, 1.28, 0])
    verdict, jump = continuity.admit(lie, _ns(1.02), _ns(1.02))
    assert verdict == UNCONFIRMED and jump == pytest.approx(1.28 - np.pi * 0.02)
    np.testing.assert_array_equal(continuity.accepted[0], ARM)  # the lie was not stored
    assert continuity.in_doubt  # the node sends nothing new meanwhile
    assert continuity.admit(ARM, _ns(1.04), _ns(1.04))[0] == ACCEPT
    assert not continuity.in_doubt
    # The same lie again, later: a fresh pending jump, not one confirmed by the first.
    assert continuity.admit(lie, _ns(1.2), _ns(1.2))[0] == UNCONFIRMED


def test_a_jump_that_lasts_confirm_s_is_a_reset():
    continuity = _continuity()
    continuity.admit(ARM, _ns(1.0), _ns(1.0))
    moved = ARM + 1.0
    verdicts = [continuity.admit(moved, _ns(1.0 + 0.02 * k), _ns(1.0 + 0.02 * k))[0] for k in range(1, 7)]
    assert verdicts == [UNCONFIRMED] * 5 + [RESET], verdicts
    assert continuity.admit(moved, _ns(1.14), _ns(1.14))[0] == ACCEPT


def test_a_state_stamped_in_the_future_buys_no_room_to_jump():
    continuity = _continuity()
    continuity.admit(ARM, _ns(1.0), _ns(1.0))
    lie = ARM + np.array([0, 0, 0, 0, 2.5, 0])  # 2.5 rad: allowed over 10 s of stamps, not over 0.52 s
    assert continuity.admit(lie, _ns(11.0), _ns(1.02))[0] == UNCONFIRMED
    # and two lies with different stamps that disagree with each other never confirm one another
    assert continuity.admit(lie - [0, 0, 0, 0, 5.0, 0], _ns(11.2), _ns(1.04))[0] == UNCONFIRMED
    assert continuity.admit(ARM, _ns(1.06), _ns(1.06))[0] == ACCEPT


def test_a_reset_pose_stays_a_jump_until_confirmed_even_once_the_elapsed_time_would_allow_it():
    """An episode's reset pose 0.6 rad away (found over DDS): after 0.11 s the speed allowed since the
    last accepted state (0.3 + pi * 0.11 rad) covered it, and it was accepted as continuous, so the
    node never re-anchored and streamed on from the old pose. It is a reset once confirmed."""
    continuity = _continuity()
    continuity.admit(ARM, _ns(1.0), _ns(1.0))
    reset_pose = ARM + np.array([0, 0, 0, 0, 0.6, 0])
    verdicts = [
        continuity.admit(reset_pose, _ns(1.0 + 0.02 * k), _ns(1.0 + 0.02 * k))[0] for k in range(1, 7)
    ]
    assert verdicts == [UNCONFIRMED] * 5 + [RESET], verdicts
    assert continuity.admit(reset_pose, _ns(1.14), _ns(1.14))[0] == ACCEPT


def test_a_start_event_without_a_stamp_is_refused_by_name():
    assert "without stamp_ns" in episode_start_problem(0)
    assert episode_start_problem(17_010_000_000) is None


def test_a_jump_confirmed_by_stamps_alone_is_not_a_reset():
    """A lie, then the same lie stamped 10 s later (found over DDS): its stamps span 10 s, its
    arrivals 0.02 s; a reset needs both to span confirm_s."""
    continuity = _continuity()
    continuity.admit(ARM, _ns(1.0), _ns(1.0))
    lie = ARM + np.array([0, 0, 0, 0, -2.5, 0])  # beyond what arrival_slack_s allows
    assert continuity.admit(lie, _ns(1.02), _ns(1.02))[0] == UNCONFIRMED
    assert continuity.admit(lie, _ns(11.02), _ns(1.04))[0] == UNCONFIRMED


def test_a_joint_state_stamped_ahead_of_the_clock_is_refused_naming_how_far():
    assert joint_state_stamp_problem(_ns(1.4), _ns(1.0), 0.5) is None
    assert joint_state_stamp_problem(_ns(0.0), _ns(1.0), 0.5) is None  # old: the timeout's business
    assert joint_state_stamp_problem(_ns(11.0), _ns(1.0), 0.5) == (
        "joint_states: stamped 10.000 s ahead of this node's clock (> 0.5 s)"
    )
