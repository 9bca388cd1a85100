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
        (lambda b: b.update(values=[[1, 2, 3]]), "shape"),
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
