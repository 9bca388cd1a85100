"""Each guard is reachable only by a bug, not by input.

For ANY input, every inbound check a node calls on a message returns a value or raises ``ValueError``
(the reason the node counts and reports); nothing else escapes (hypothesis property tests). And the
nodes' callbacks catch only ``ValueError`` around those checks and are all wrapped in the last-resort
CallbackGuard (an AST check of the node sources): so the guard sees an exception only when the code
has a bug.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vla_actuation.safety import validate_action, validate_joint_state
from vla_common.action_message import decode_action_chunk, encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_common.inbound import (
    IMAGE_CHANNELS,
    check_instruction,
    decode_episode_event,
    decode_joint_trajectory,
    decode_privileged_state,
    image_to_pixels,
    joint_positions,
)
from vla_common.robot import ARM_JOINT_NAMES, JOINT_LOWER_RAD, JOINT_UPPER_RAD, PROPRIO_JOINT_NAMES

SRC = Path(__file__).resolve().parents[3] / "src"
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=40,
)


def _valid_messages() -> dict[str, dict]:
    chunk = json.loads(encode_action_chunk(1, ActionSpace(), np.full((3, 7), 0.01)))
    episode = {"event": "start", "episode": 0, "seed": 7, "stamp_ns": 10**9, "instruction": "pick"}
    privileged = {
        "stamp_ns": 10**9,
        "tool_pose": np.eye(4).tolist(),
        "objects": {"cup": {"position": [0.3, 0.0, 0.02], "size_m": 0.04}},
        "target_object": "cup",
        "finger_m": 0.03,
    }
    return {"action": chunk, "episode": episode, "privileged": privileged}


VALID = _valid_messages()


def _texts(kind: str) -> st.SearchStrategy[str]:
    """Arbitrary text, arbitrary JSON, and the valid message with one field swapped for anything."""
    body = VALID[kind]
    swapped = st.builds(
        lambda key, value: json.dumps({**body, key: value}),
        st.sampled_from(sorted(body) + ["extra"]),
        json_values,
    )
    deep = st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n)
    return st.one_of(st.text(max_size=300), json_values.map(json.dumps), swapped, deep)


def _returns_or_value_error(check, *args, **kwargs) -> None:
    try:
        check(*args, **kwargs)
    except ValueError:
        pass  # the reason: counted, reported, the message dropped; anything else fails the test


@PROPERTY
@given(_texts("action"))
def test_action_chunks(text):
    _returns_or_value_error(decode_action_chunk, text)


@PROPERTY
@given(st.lists(st.one_of(numbers, json_values), max_size=9))
def test_action_rows_in_the_safety_layer_never_raise(row):
    value, violations = validate_action(row, 7)
    assert (value is None) == bool(violations)


@PROPERTY
@given(_texts("episode"))
def test_episode_events(text):
    _returns_or_value_error(decode_episode_event, text)


@PROPERTY
@given(_texts("privileged"))
def test_privileged_states(text):
    _returns_or_value_error(decode_privileged_state, text)


@PROPERTY
@given(st.text(max_size=3000))
def test_instructions(text):
    _returns_or_value_error(check_instruction, text)


@PROPERTY
@given(
    height=st.integers(min_value=-(2**31), max_value=2**31),
    width=st.integers(min_value=-(2**31), max_value=2**31),
    step=st.integers(min_value=-(2**31), max_value=2**31),
    encoding=st.sampled_from([*IMAGE_CHANNELS, "yuv422", "16UC1", ""]),
    data=st.binary(max_size=2000),
)
def test_images(height, width, step, encoding, data):
    image = SimpleNamespace(height=height, width=width, step=step, encoding=encoding, data=data)
    _returns_or_value_error(image_to_pixels, image, what="cam", encoding="rgb8")


names = st.lists(st.one_of(st.sampled_from(PROPRIO_JOINT_NAMES), st.text(max_size=8)), max_size=10)
floats = st.floats(allow_nan=True, allow_infinity=True)


@PROPERTY
@given(names, st.lists(floats, max_size=10))
def test_joint_states(joint_names, positions):
    _returns_or_value_error(joint_positions, joint_names, positions, PROPRIO_JOINT_NAMES, what="joints")
    value, violations = validate_joint_state(joint_names, positions)  # actuation's: never raises
    assert (value is None) == bool(violations)


@PROPERTY
@given(
    st.one_of(names, st.permutations(list(ARM_JOINT_NAMES))),
    st.lists(st.tuples(st.one_of(floats, st.integers(-5, 5)), st.lists(floats, max_size=8)), max_size=5),
)
def test_joint_trajectories(joint_names, points):
    _returns_or_value_error(
        decode_joint_trajectory,
        joint_names,
        points,
        ARM_JOINT_NAMES,
        JOINT_LOWER_RAD,
        JOINT_UPPER_RAD,
        what="arm",
    )


def test_a_trajectory_is_checked_like_the_controller_and_reordered():
    order = list(reversed(ARM_JOINT_NAMES))
    command = decode_joint_trajectory(
        order,
        [(0.04, [0.1, 0.2, 0.3, 0.0, 0.0, 0.0])],
        ARM_JOINT_NAMES,
        JOINT_LOWER_RAD,
        JOINT_UPPER_RAD,
        what="arm",
    )
    assert command.positions.tolist() == [[0.0, 0.0, 0.0, 0.3, 0.2, 0.1]]
    bad = {
        "are not the controller's": (order[:5], [(0.04, [0.0] * 5)]),
        "0 points": (order, []),
        "are not 6 finite numbers": (order, [(0.04, [math.nan] + [0.0] * 5)]),
        "wrist_rotate 4.0000 is outside its limits": (order, [(0.04, [4.0] + [0.0] * 5)]),
        "time_from_start 0.04 s is not finite, >= 0 and increasing": (order, [(0.04, [0.0] * 6)] * 2),
    }
    for reason, (joint_names, points) in bad.items():
        try:
            decode_joint_trajectory(
                joint_names, points, ARM_JOINT_NAMES, JOINT_LOWER_RAD, JOINT_UPPER_RAD, what="arm"
            )
        except ValueError as exc:
            assert reason in str(exc), (reason, str(exc))
        else:
            raise AssertionError(f"accepted: {reason}")


def test_joint_positions_pick_the_wanted_joints_in_order():
    names = ["right_finger", *reversed(PROPRIO_JOINT_NAMES)]
    positions = [9.0, *range(7)]
    assert joint_positions(names, positions, PROPRIO_JOINT_NAMES, what="j").tolist() == [6, 5, 4, 3, 2, 1, 0]


# --- the nodes call only these, catch only ValueError, and wrap every callback --------------------

NODES = [
    SRC / "vla_actuation/vla_actuation/actuation_node.py",
    SRC / "vla_policy/vla_policy/policy_node.py",
    SRC / "vla_sim/vla_sim/sim_node.py",
    SRC / "vla_perception/vla_perception/perception_node.py",
]


def _methods(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_message_callbacks_catch_only_value_error():
    for path in NODES:
        for name, method in _methods(path).items():
            if not name.startswith("_on_"):
                continue
            for handler in (n for n in ast.walk(method) if isinstance(n, ast.ExceptHandler)):
                caught = ast.unparse(handler.type) if handler.type is not None else "everything"
                assert caught == "ValueError", f"{path.name}:{handler.lineno} {name} catches {caught}"


def test_every_subscription_and_timer_callback_is_guarded():
    for path in NODES:
        tree = ast.parse(path.read_text())
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            function = ast.unparse(call.func)
            position = {"self.create_subscription": 2, "self.create_timer": 1}.get(function)
            if position is None:
                continue
            callback = ast.unparse(call.args[position])
            assert "wrap(" in callback or callback.startswith("guard("), (
                f"{path.name}:{call.lineno} {callback}"
            )
