"""The actuation node's input checks: a value or a reason that names the value, never an exception."""

from __future__ import annotations

import pytest

from vla_actuation.actuation_inputs import action_size_problem, joint_state_jump_rad, parse_episode_event


def test_an_action_over_the_byte_bound_is_refused_naming_both_sizes():
    assert action_size_problem(1000, 1000) is None
    assert (
        action_size_problem(24_000_000, 262144) == "message of 24000000 bytes exceeds max_action_bytes 262144"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"event": "start", "stamp_ns": 12}', (12, None)),
        ('{"event": "end", "stamp_ns": 12}', (None, None)),
        ('{"event": "start"}', (0, None)),
    ],
)
def test_episode_events_are_read(text, expected):
    assert parse_episode_event(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not JSON (JSONDecodeError)"),
        ("[" * 3000 + "]" * 3000, "exceeds 4096"),
        ("[" * 2000 + "]" * 2000, "not JSON (RecursionError)"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"event": "start", "stamp_ns": "12"}', "stamp_ns must be a number >= 0, got '12'"),
        ('{"event": "start", "stamp_ns": true}', "got True"),
        ('{"event": "start", "stamp_ns": -1}', "got -1"),
    ],
)
def test_bad_episode_events_give_a_reason(text, reason):
    start, problem = parse_episode_event(text)
    assert start is None and reason in problem


def test_joint_state_jump_is_the_largest_joint_change():
    assert joint_state_jump_rad(None, [1.0, 2.0]) == 0.0
    assert joint_state_jump_rad([0.0, 0.0], [0.1, -0.4]) == pytest.approx(0.4)
