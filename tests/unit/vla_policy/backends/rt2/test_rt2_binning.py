"""RT-2 bins -> Bridge actions: exact round trip through the project's discrete codec and wire format."""

from __future__ import annotations

import numpy as np
import pytest

from vla_common.action_message import decode_action_chunk, encode_action_chunk
from vla_common.action_space import dequantize_actions, quantize_actions
from vla_policy.backends.rt2.backend import output_from_action_text
from vla_policy.backends.rt2.binning import RT1_ACTION_HIGH, RT1_ACTION_LOW, ActionBinning
from vla_policy.contract import validate_output

ALL_BINS = np.repeat(np.arange(256)[:, None], 7, axis=1)  # every bin in every dimension
WIDOWX_LOW = (-0.03, -0.04, -0.03, -0.1, -0.1, -0.2, 0.0)
WIDOWX_HIGH = (0.03, 0.04, 0.04, 0.1, 0.08, 0.2, 1.0)

BINNINGS = [
    ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "rt1_levels", "rt1"),
    ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "bin_centers", "rt1"),
    ActionBinning(WIDOWX_LOW, WIDOWX_HIGH, "rt1_levels", "bridge"),
    ActionBinning(WIDOWX_LOW, WIDOWX_HIGH, "bin_centers", "bridge"),
]


@pytest.mark.parametrize("binning", BINNINGS, ids=lambda b: f"{b.bin_decoding}-{b.gripper_convention}")
def test_every_bin_decodes_exactly_through_the_declared_space(binning):
    space = binning.action_space("discrete")
    wire_bins = binning.bridge_bins(ALL_BINS)
    expected = binning.bridge_actions(ALL_BINS)
    np.testing.assert_allclose(dequantize_actions(wire_bins, space), expected, rtol=0, atol=1e-12)
    # and back: the project's quantiser gives the same bins (values sit on the space's bin centres)
    np.testing.assert_array_equal(quantize_actions(expected, space), wire_bins)


@pytest.mark.parametrize("binning", BINNINGS, ids=lambda b: f"{b.bin_decoding}-{b.gripper_convention}")
def test_wire_message_carries_the_exact_actions(binning):
    space = binning.action_space("discrete")
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = " ".join(str(v) for v in [0, *rng.integers(0, 256, 7)])
        output = output_from_action_text(text, binning)
        chunk = validate_output(output, space)
        decoded = decode_action_chunk(encode_action_chunk(1, space, chunk, policy="rt2"))
        np.testing.assert_allclose(decoded.values[0], output.info["action"], atol=1e-12)


def test_rt1_levels_hit_the_range_ends_and_centres_sit_half_a_bin_inside():
    levels = ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "rt1_levels", "bridge")
    values = levels.model_values(np.array([[0] * 7, [255] * 7]))
    np.testing.assert_allclose(values, [RT1_ACTION_LOW, RT1_ACTION_HIGH])
    centres = ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "bin_centers", "bridge")
    width = (np.asarray(RT1_ACTION_HIGH) - np.asarray(RT1_ACTION_LOW)) / 256
    np.testing.assert_allclose(centres.model_values(np.zeros(7, int)), np.asarray(RT1_ACTION_LOW) + width / 2)
    # The half-bin offset is carried by the statistics: q01/q99 equal the range only for bin centres.
    np.testing.assert_allclose(centres.norm_stats().q01, RT1_ACTION_LOW)
    assert levels.norm_stats().q01[0] < RT1_ACTION_LOW[0]


def test_rt1_gripper_is_converted_to_bridge_open_one_closed_zero():
    binning = ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "rt1_levels", "rt1")
    open_bins, closed_bins = np.array([0] * 7), np.array([255] * 7)  # RT-1: -1 open, +1 closed
    assert binning.bridge_actions(open_bins)[6] == pytest.approx(1.0)
    assert binning.bridge_actions(closed_bins)[6] == pytest.approx(0.0)
    assert binning.bridge_bins(open_bins)[6] == 255 and binning.bridge_bins(closed_bins)[6] == 0
    assert binning.bridge_bins(open_bins)[:6].tolist() == [0] * 6  # other dimensions untouched
    space = binning.action_space("discrete")
    assert dequantize_actions(binning.bridge_bins(open_bins), space)[6] == pytest.approx(1.0)


def test_bridge_gripper_passes_through():
    binning = ActionBinning(WIDOWX_LOW, WIDOWX_HIGH, "rt1_levels", "bridge")
    assert binning.bridge_actions(np.array([0] * 7))[6] == pytest.approx(0.0)
    assert binning.bridge_actions(np.array([255] * 7))[6] == pytest.approx(1.0)
    assert not binning.gripper_reversed


def test_terminate_becomes_policy_output_terminate_not_an_action_dimension():
    binning = BINNINGS[0]
    stop = output_from_action_text("1 10 20 30 40 50 60 70", binning)
    go = output_from_action_text("0 10 20 30 40 50 60 70", binning)
    assert stop.terminate is True and go.terminate is False
    assert stop.chunk.shape == (1, 7) and stop.chunk.dtype == np.int64
    np.testing.assert_array_equal(stop.chunk, go.chunk)


def test_continuous_kind_emits_the_bridge_action():
    binning = BINNINGS[0]
    output = output_from_action_text("0 0 128 255 0 128 255 0", binning, "continuous")
    validate_output(output, binning.action_space("continuous"))
    np.testing.assert_allclose(output.chunk[0], output.info["action"])
    assert output.chunk[0, 0] == pytest.approx(-1.0) and output.chunk[0, 2] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"low": (0.0,) * 6}, "expected 7 values"),
        ({"high": (1.0,) * 6 + (-2.0,)}, r"high\[6\]=-2.0 is not above low\[6\]"),
        ({"high": (np.inf,) * 7}, "finite"),
        ({"bin_decoding": "round"}, "bin_decoding 'round'"),
        ({"gripper_convention": "google"}, "gripper_convention 'google'"),
    ],
)
def test_invalid_binning_names_the_field(kwargs, message):
    arguments = {"low": RT1_ACTION_LOW, "high": RT1_ACTION_HIGH, **kwargs}
    with pytest.raises(ValueError, match=message):
        ActionBinning(**arguments)
