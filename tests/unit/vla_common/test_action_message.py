import json

import numpy as np
import pytest

from vla_common.action_message import decode_action_chunk, encode_action_chunk
from vla_common.action_space import ActionSpace, quantize_actions


def test_continuous_round_trip():
    space = ActionSpace()
    chunk = np.arange(28, dtype=float).reshape(4, 7) / 100
    decoded = decode_action_chunk(encode_action_chunk(123, space, chunk, policy="p", inference_ms=1.5))
    assert decoded.stamp_ns == 123 and decoded.policy == "p" and decoded.horizon == 4
    assert decoded.space.dim_names == space.dim_names and decoded.space.step_dt_s == 0.2
    np.testing.assert_array_equal(decoded.values, chunk)
    assert decoded.bins is None


def test_discrete_round_trip_carries_statistics():
    space = ActionSpace(kind="discrete")
    action = np.array([[0.01, 0.0, -0.01, 0.0, 0.02, -0.05, 1.0]])
    bins = quantize_actions(action, space)
    text = encode_action_chunk(5, space, bins)
    body = json.loads(text)
    assert body["kind"] == "discrete" and body["n_bins"] == 256 and len(body["stats"]["q01"]) == 7
    decoded = decode_action_chunk(text)
    np.testing.assert_array_equal(decoded.bins, bins)
    assert np.abs(decoded.values - action)[0, :6].max() < 0.001
    assert decoded.values[0, 6] == pytest.approx(1 - 1 / 255)  # top bin centre: still "open"


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda b: b.pop("stamp_ns"), "stamp_ns"),
        (lambda b: b.update(stamp_ns="soon"), "stamp_ns"),
        (lambda b: b.update(kind="tokens"), "kind"),
        (lambda b: b.update(schema="other/v0"), "schema"),
        (lambda b: b.update(values=[[1, 2, 3]]), r"values\[0\] is 3 values"),
        (lambda b: b.update(values=[["a"] * 7]), "values"),
    ],
)
def test_bad_messages_name_the_field(mutate, field):
    body = json.loads(encode_action_chunk(1, ActionSpace(), np.zeros((1, 7))))
    mutate(body)
    with pytest.raises(ValueError, match=field):
        decode_action_chunk(json.dumps(body))


def test_out_of_range_bins_and_garbage():
    body = json.loads(encode_action_chunk(1, ActionSpace(kind="discrete"), np.zeros((1, 7), int)))
    body["bins"] = [[0, 0, 0, 0, 0, 0, 300]]
    with pytest.raises(ValueError, match="out of range"):
        decode_action_chunk(json.dumps(body))
    with pytest.raises(ValueError, match="not JSON"):
        decode_action_chunk("{nope")
    with pytest.raises(ValueError, match="object"):
        decode_action_chunk("[1, 2]")


def test_nan_survives_to_the_safety_layer():
    # The codec transports what the policy said; rejecting NaN is the actuation safety layer's job.
    decoded = decode_action_chunk(encode_action_chunk(1, ActionSpace(), np.full((1, 7), np.nan)))
    assert np.isnan(decoded.values).all()


def _body(**changes) -> dict:
    body = json.loads(encode_action_chunk(1, ActionSpace(), np.zeros((2, 7))))
    body.update(changes)
    return body


def test_deeply_nested_arrays_are_refused_by_name_before_parsing():
    depth = 100_000  # json.loads would raise RecursionError
    text = json.dumps(_body())[:-1] + ',"junk":' + "[" * depth + "]" * depth + "}"
    with pytest.raises(ValueError, match=r"nested 100001 levels deep, more than the limit of 16"):
        decode_action_chunk(text)
    with pytest.raises(ValueError, match="nested"):
        decode_action_chunk("[" * depth)  # unbalanced too


def test_brackets_inside_strings_do_not_count_as_nesting():
    decoded = decode_action_chunk(json.dumps(_body(policy="[" * 50 + '\\"{' * 50)))
    assert decoded.policy.startswith("[[[")


@pytest.mark.parametrize(
    "value, match",
    [
        ("0.01", r"values\[1\]\[3\] is str '0.01'; expected a number"),
        (True, r"values\[1\]\[3\] is bool True"),
    ],
)
def test_numeric_strings_and_booleans_are_not_numbers(value, match):
    values = [[0.0] * 7, [0.0] * 7]
    values[1][3] = value
    with pytest.raises(ValueError, match=match):
        decode_action_chunk(json.dumps(_body(values=values)))


def test_ragged_rows_and_rows_that_are_not_lists_are_refused():
    with pytest.raises(ValueError, match=r"values\[1\] is 6 values"):
        decode_action_chunk(json.dumps(_body(values=[[0.0] * 7, [0.0] * 6])))
    with pytest.raises(ValueError, match=r"values\[0\] is a float"):
        decode_action_chunk(json.dumps(_body(values=[0.0] * 7)))
    with pytest.raises(ValueError, match="has 0 steps"):
        decode_action_chunk(json.dumps(_body(values=[])))


def test_chunk_length_and_byte_size_are_bounded():
    from vla_common.action_message import MAX_ACTION_BYTES, MAX_CHUNK_STEPS

    longest = encode_action_chunk(1, ActionSpace(), np.full((MAX_CHUNK_STEPS, 7), -0.123456789012345))
    assert len(longest) < MAX_ACTION_BYTES  # the longest allowed chunk fits the byte bound
    assert decode_action_chunk(longest).horizon == MAX_CHUNK_STEPS
    too_long = encode_action_chunk(1, ActionSpace(), np.zeros((MAX_CHUNK_STEPS + 1, 7)))
    with pytest.raises(ValueError, match=f"has {MAX_CHUNK_STEPS + 1} steps; expected 1..{MAX_CHUNK_STEPS}"):
        decode_action_chunk(too_long)
    assert decode_action_chunk(too_long, max_steps=MAX_CHUNK_STEPS + 1).horizon == MAX_CHUNK_STEPS + 1
    with pytest.raises(ValueError, match=f"more than the limit of {MAX_ACTION_BYTES}"):
        decode_action_chunk(json.dumps(_body(policy="x" * MAX_ACTION_BYTES)))


def test_a_chunk_far_beyond_the_row_bound_is_refused_before_parsing(monkeypatch):
    """A 4000-row chunk fits the byte bound (about 200 KB) but would become 32,000 short-lived Python
    objects; its brackets are counted on the text and json.loads never runs."""
    from vla_common import inbound
    from vla_common.action_message import MAX_CHUNK_STEPS, MAX_HEADER_CONTAINERS

    huge = json.dumps(_body(values=[[0.001] * 7] * 4000))
    parsed = []
    monkeypatch.setattr(inbound.json, "loads", lambda text: parsed.append(text))
    limit = MAX_CHUNK_STEPS + MAX_HEADER_CONTAINERS
    with pytest.raises(ValueError, match=f"4003 JSON arrays/objects, more than the limit of {limit}"):
        decode_action_chunk(huge)
    assert parsed == []


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"stamp_ns": -5}, "stamp_ns"),
        ({"stamp_ns": True}, "stamp_ns"),
        ({"step_dt_s": 0}, "step_dt_s"),
        ({"dims": [1, 2, 3, 4, 5, 6, 7]}, "dims"),
        ({"terminate": "yes"}, "terminate"),
        ({"stats": {"q01": 5, "q99": [], "mask": []}}, "stats"),
    ],
)
def test_header_fields_are_checked(changes, match):
    with pytest.raises(ValueError, match=match):
        decode_action_chunk(json.dumps(_body(**changes)))


def test_an_integer_beyond_float64_and_an_overlong_literal_are_value_errors():
    text = json.dumps(_body()).replace("[0.0,", "[1" + "0" * 400 + ",", 1)
    with pytest.raises(ValueError, match="beyond float64"):
        decode_action_chunk(text)
    text = json.dumps(_body()).replace("[0.0,", "[1" + "0" * 5000 + ",", 1)
    with pytest.raises(ValueError, match="action message"):
        decode_action_chunk(text)


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_fuzzed_action_messages_raise_only_value_errors(kind):
    import random

    rng = random.Random(22)
    space = ActionSpace(kind=kind)
    chunk = np.zeros((3, 7), int) if kind == "discrete" else np.full((3, 7), 0.01)
    valid = encode_action_chunk(1, space, chunk)
    texts = []
    for _ in range(300):
        texts.append(valid[: rng.randrange(len(valid))])
        chars = list(valid)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice('[]{}",:0-9.eEtfnaIN\\x')
        texts.append("".join(chars))
    body = json.loads(valid)
    for key in body:
        for junk in (None, True, "0.01", -1, 1e308, [], {}, [[1, 2]], [["0.01"] * 7], "x" * 100):
            texts.append(json.dumps({**body, key: junk}))
    rejected = 0
    for text in texts:
        try:
            decode_action_chunk(text)
        except ValueError:
            rejected += 1
    assert rejected > 300  # the fuzz reaches the checks; anything but a ValueError fails the test
