"""Prompt, pixels and the action-token codec of the OpenVLA backend against the published formulas."""

from __future__ import annotations

import numpy as np
import pytest

from vla_common.action_space import BRIDGE_ORIG_STATS, bin_centers, bin_edges, encode_bins, normalize
from vla_policy.backends.openvla.processing import (
    bins_to_actions,
    build_prompt,
    pixel_values,
    prompt_token_ids,
    synthetic_tokenizer,
    tokens_to_bins,
)

EDGES = bin_edges(256)
CENTERS = bin_centers(256)


def reference_token(a: float, vocab: int = 32000) -> int:
    """OpenVLA's ActionTokenizer: token = V - digitize(clip(a, -1, 1), linspace(-1, 1, 256))."""
    return vocab - int(np.digitize(np.clip(a, -1.0, 1.0), EDGES))


def reference_decode(token: int, vocab: int = 32000) -> float:
    """OpenVLA's decode: bin_centers[clip(V - token - 1, 0, 254)]."""
    return CENTERS[int(np.clip(vocab - token - 1, 0, 254))]


@pytest.mark.parametrize("vocab", [32000, 512])
@pytest.mark.parametrize("i", [0, 1, 100, 127, 128, 253, 254, 255])
def test_tokens_decode_like_the_reference_at_edges_and_neighbours(vocab, i):
    for a in (EDGES[i], np.nextafter(EDGES[i], -2.0), np.nextafter(EDGES[i], 2.0)):
        token = reference_token(a, vocab)
        assert vocab - 256 <= token <= vocab - 1
        decoded = bins_to_actions(tokens_to_bins(np.array([token]), vocab), _identity_stats(1))[0]
        assert decoded == pytest.approx(reference_decode(token, vocab))
        # our encoder's bin and the decoder agree with the token path
        assert tokens_to_bins(np.array([token]), vocab)[0] == min(encode_bins(np.array([a]))[0], 254)


def test_top_bin_and_out_of_range_tokens_clip():
    # a = 1 digitizes to 256 -> token V - 256 -> index clip(255) = 254, the top centre
    assert reference_token(1.0) == 31744
    assert tokens_to_bins(np.array([31744]))[0] == 254
    assert bins_to_actions(np.array([254]), _identity_stats(1))[0] == pytest.approx(CENTERS[-1])
    # tokens outside the action range (text tokens, padding) clip to the end bins
    assert list(tokens_to_bins(np.array([29871, 31999, 32000, 32063]))) == [254, 0, 0, 0]
    # +-1 around the boundary tokens
    assert list(tokens_to_bins(np.array([31743, 31744, 31745]))) == [254, 254, 254]
    assert list(tokens_to_bins(np.array([31998, 31999]))) == [1, 0]


def test_unnormalisation_uses_q01_q99_and_leaves_the_gripper():
    bins = np.array([0, 254, 127, 10, 200, 254, 254])
    centers = CENTERS[bins]
    actions = bins_to_actions(bins, BRIDGE_ORIG_STATS)
    q01, q99 = np.array(BRIDGE_ORIG_STATS.q01), np.array(BRIDGE_ORIG_STATS.q99)
    expected = 0.5 * (centers + 1) * (q99 - q01) + q01
    np.testing.assert_allclose(actions[:6], expected[:6])
    assert actions[6] == pytest.approx(centers[6])  # mask False: the bin centre itself (~0.996, open)
    # and the encoder round trip: encode(normalise(decoded)) returns the bins
    np.testing.assert_array_equal(encode_bins(normalize(actions, BRIDGE_ORIG_STATS)), bins)


def test_prompt_is_exact_and_lower_cased():
    assert build_prompt("Put the Red Cube in the bowl") == (
        "In: What action should the robot take to put the red cube in the bowl?\nOut:"
    )


def test_prompt_ids_start_with_bos_and_end_with_the_empty_token():
    tokenizer = synthetic_tokenizer(512)
    space = tokenizer.convert_tokens_to_ids("▁")
    ids = prompt_token_ids(tokenizer, "Pick up the cup", suffix_token_id=space)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == space
    text = tokenizer.decode(ids[1:-1])
    assert text == "In: What action should the robot take to pick up the cup?\nOut:"
    assert ids.count(tokenizer.bos_token_id) == 1


def test_pixel_values_stack_dino_and_siglip_normalisation():
    image = np.zeros((224, 224, 3), np.uint8)
    image[..., 0] = 255
    pixels = pixel_values(image, 224)
    assert pixels.shape == (6, 224, 224) and pixels.dtype == np.float32
    np.testing.assert_allclose(
        pixels[:3, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6
    )
    np.testing.assert_allclose(pixels[3:, 0, 0], [1.0, -1.0, -1.0])


def test_pixel_values_resize_any_input_and_reject_bad_arrays():
    assert pixel_values(np.zeros((97, 131, 3), np.uint8), 224).shape == (6, 224, 224)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        pixel_values(np.zeros((10, 10), np.uint8), 224)


def _identity_stats(dim: int):
    from vla_common.action_space import NormStats

    return NormStats(q01=(-1.0,) * dim, q99=(1.0,) * dim, mask=(True,) * dim)
