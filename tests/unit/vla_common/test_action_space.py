import numpy as np
import pytest

from vla_common.action_space import (
    BRIDGE_ORIG_STATS,
    ActionSpace,
    NormStats,
    bin_centers,
    bin_edges,
    decode_bins,
    dequantize_actions,
    encode_bins,
    normalize,
    openvla_bin_from_token,
    openvla_token_from_bin,
    quantize_actions,
    unnormalize,
)


def test_bins_follow_openvla_formulas():
    edges, centers = bin_edges(), bin_centers()
    assert edges.shape == (256,) and centers.shape == (255,)
    assert centers[1] - centers[0] == pytest.approx(2 / 255)
    # digitize(a, bins) in 1..256, token = 32000 - digitize; our index = digitize - 1
    for a in [-1.0, -0.5, 0.0, 0.3, 0.999, 1.0]:
        digitize = int(np.digitize(a, edges))
        assert encode_bins(np.array([a]))[0] == min(digitize - 1, 254)
        assert openvla_token_from_bin(np.array([digitize - 1]))[0] == 32000 - digitize


def test_bin_edges_and_top_bin():
    edges = bin_edges()
    # exactly on an edge lands in the bin that starts there
    assert encode_bins(np.array([edges[10]]))[0] == 10
    assert encode_bins(np.array([edges[10] - 1e-9]))[0] == 9
    # -1 and below -> bin 0; +1 and above -> top bin 254 (decoder clip)
    assert encode_bins(np.array([-1.0, -3.0]))[0] == 0
    assert list(encode_bins(np.array([1.0, 7.0]))) == [254, 254]
    assert decode_bins(np.array([254]))[0] == pytest.approx(centers_top := bin_centers()[-1])
    assert centers_top == pytest.approx(1 - 1 / 255)


def test_token_decode_clips_like_openvla():
    tokens = np.array([32000 - 1, 32000 - 256, 31000, 32000])
    assert list(openvla_bin_from_token(tokens)) == [0, 254, 254, 0]


def test_normalize_unnormalize_and_gripper_mask():
    stats = BRIDGE_ORIG_STATS
    action = np.array([0.01, -0.02, 0.03, 0.05, -0.05, 0.1, 1.0])
    norm = normalize(action, stats)
    assert norm[6] == 1.0  # gripper passes through
    np.testing.assert_allclose(unnormalize(norm, stats)[:6], action[:6], atol=1e-7)
    # q01 -> -1, q99 -> +1
    np.testing.assert_allclose(normalize(np.array(stats.q01), stats)[:6], -1.0, atol=1e-6)
    np.testing.assert_allclose(normalize(np.array(stats.q99), stats)[:6], 1.0, atol=1e-6)


def test_quantize_round_trip_error_is_half_a_bin():
    space = ActionSpace(kind="discrete")
    rng = np.random.default_rng(0)
    q01, q99 = np.array(space.stats.q01), np.array(space.stats.q99)
    actions = rng.uniform(q01, q99, size=(500, 7))
    actions[:, 6] = rng.integers(0, 2, 500)
    back = dequantize_actions(quantize_actions(actions, space), space)
    bin_width = (q99 - q01) / 255
    assert np.all(np.abs(back - actions)[:, :6] <= bin_width[:6] * 0.5001)  # +1e-8 in the normaliser
    # gripper: 1 -> 0.996 (top bin centre), 0 -> 0 (centre of the middle bin)
    assert np.all((back[:, 6] > 0.99) == (actions[:, 6] == 1))
    assert np.all(np.abs(back[actions[:, 6] == 0, 6]) < 1e-9)


def test_stats_validation_names_field():
    with pytest.raises(ValueError, match="q99"):
        NormStats(q01=(0.0, 0.0), q99=(1.0,), mask=(True, True))
    with pytest.raises(ValueError, match=r"q99\[1\]"):
        NormStats(q01=(0.0, 1.0), q99=(1.0, 0.0), mask=(True, True))
    with pytest.raises(ValueError, match="kind"):
        ActionSpace(kind="tokens")
