"""Real-time chunking for the diffusion head: the soft mask, the guided sampler's frozen prefix, and
that guidance really shrinks the jump at the chunk join on a random model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vla_common.action_space import NormStats
from vla_policy.backends.octo.action_head import DiffusionSampler
from vla_policy.backends.octo.processor import unnormalize_actions
from vla_policy.backends.octo.realtime_chunking import (
    PrefixGuide,
    guided_step,
    normalize_actions,
    soft_mask,
)


@pytest.fixture()
def head_and_embedding(tiny_backend):
    """The tiny random Octo's diffusion head (conftest's ``tiny_backend``) and two readout embeddings."""
    head = tiny_backend.model.action_head.eval()
    embedding = torch.randn(2, tiny_backend.config.width, generator=torch.Generator().manual_seed(0)) * 0.5
    return tiny_backend.config, head, embedding


def test_soft_mask_is_one_on_the_prefix_decays_over_the_overlap_and_is_zero_after():
    w = soft_mask(3, 4, 10)
    assert w.shape == (10,)
    assert np.all(w[:3] == 1.0) and np.all(w[7:] == 0.0)
    overlap = w[3:7]
    assert np.all((overlap > 0) & (overlap < 1)) and np.all(np.diff(overlap) < 0)
    assert np.all(np.diff(w) <= 0)  # monotone non-increasing over the whole chunk
    # Black et al. 2025, eq. 5: c = (H - s - i) / (H - s - d + 1), w = c (e^c - 1) / (e - 1)
    c = (7 - 3) / 5
    assert w[3] == pytest.approx(c * (math.e**c - 1) / (math.e - 1))
    np.testing.assert_array_equal(soft_mask(0, 0, 4), np.zeros(4))
    np.testing.assert_array_equal(soft_mask(2, 0, 4), [1, 1, 0, 0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((4, 0, 4), "frozen=4 leaves nothing new"),
        ((2, 3, 4), r"frozen \+ overlap = 2 \+ 3 exceeds horizon=4"),
        ((-1, 0, 4), "frozen=-1"),
        ((0, -2, 4), "overlap=-2"),
        ((0, 0, 0), "horizon must be >= 1, got 0"),
        ((1.5, 0, 4), "frozen must be an integer, got 1.5"),
    ],
)
def test_soft_mask_refuses_bad_values_naming_them(args, message):
    with pytest.raises(ValueError, match=message):
        soft_mask(*args)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_guided_sample_freezes_the_prefix_exactly(head_and_embedding, kind):
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config, kind, 10)
    target = torch.randn(config.action_horizon, config.action_dim, generator=torch.Generator().manual_seed(4))
    guide = PrefixGuide.build(target, frozen=2, overlap=1)
    out = sampler.sample(head, embedding, torch.Generator().manual_seed(1), guide=guide)
    assert out.shape == (2, config.action_horizon, config.action_dim)
    torch.testing.assert_close(out[:, :2], target[:2].expand(2, -1, -1), rtol=0, atol=0)
    free = sampler.sample(head, embedding, torch.Generator().manual_seed(1))
    assert not torch.allclose(out[:, 3:], target[3:].expand(2, -1, -1))  # the tail is not pinned
    assert torch.all(torch.isfinite(out)) and not torch.equal(out, free)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_no_frozen_prefix_and_no_overlap_is_the_unguided_sample_bit_for_bit(head_and_embedding, kind):
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config, kind, 10)
    target = torch.randn(2, config.action_horizon, config.action_dim)  # ignored: every weight is 0
    guide = PrefixGuide.build(target, frozen=0, overlap=0)
    guided = sampler.sample(head, embedding, torch.Generator().manual_seed(7), guide=guide)
    plain = sampler.sample(head, embedding, torch.Generator().manual_seed(7))
    torch.testing.assert_close(guided, plain, rtol=0, atol=0)


def test_guided_step_noises_the_target_to_the_level_with_the_given_draw():
    x, target, eps = torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 8)
    weights = torch.tensor([1.0, 0.5, 0.0, 0.0]).repeat_interleave(2)
    out = guided_step(x, target, weights, 0.64, eps)
    expected_pinned = 0.8 * target + 0.6 * eps
    torch.testing.assert_close(out[:, :2], expected_pinned[:, :2])
    torch.testing.assert_close(out[:, 2:4], 0.5 * expected_pinned[:, 2:4] + 0.5 * x[:, 2:4])
    torch.testing.assert_close(out[:, 4:], x[:, 4:], rtol=0, atol=0)
    torch.testing.assert_close(guided_step(x, target, weights, 1.0, eps)[:, :2], target[:, :2])


def _join_measures(config, head, embedding, kind: str, guided: bool) -> dict[str, float]:
    """Means over seeds at the join, the new chunk sampled on a fresh seed (two independent draws):
    "jump": previous chunk's last action run before the new chunk's own part -> the new chunk's first
    own action; "off_plan": that first own action's distance from the previous chunk's action at
    the same time; "own_jump": the previous chunk's own step across the same boundary."""
    sampler = DiffusionSampler(config, kind, 10)
    executed, frozen = 1, 1
    join = executed + frozen  # the previous chunk's index of the new chunk's first own action
    measures: dict[str, list[float]] = {"jump": [], "off_plan": [], "own_jump": []}
    for seed in range(24):
        previous = sampler.sample(head, embedding[:1], torch.Generator().manual_seed(seed))[0]
        guide = PrefixGuide.from_previous(previous, executed, frozen, config.action_horizon)
        generator = torch.Generator().manual_seed(10_000 + seed)
        new = sampler.sample(head, embedding[:1], generator, guide=guide if guided else None)[0]
        measures["jump"].append(torch.linalg.norm(new[frozen] - previous[join - 1]).item())
        measures["off_plan"].append(torch.linalg.norm(new[frozen] - previous[join]).item())
        measures["own_jump"].append(torch.linalg.norm(previous[join] - previous[join - 1]).item())
    return {name: float(np.mean(values)) for name, values in measures.items()}


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_guidance_shrinks_the_jump_at_the_chunk_join(head_and_embedding, kind):
    """On a random model consecutive actions of one chunk are nearly independent draws, so even a
    join that follows the previous plan exactly jumps by the plan's own step ("own_jump"): guidance
    brings the join down to that, and the first own action onto the previous plan."""
    config, head, embedding = head_and_embedding
    with_rtc = _join_measures(config, head, embedding, kind, guided=True)
    without = _join_measures(config, head, embedding, kind, guided=False)
    assert with_rtc["off_plan"] < 0.2 * without["off_plan"], (with_rtc, without)
    assert with_rtc["jump"] < 0.95 * without["jump"], (with_rtc, without)
    assert with_rtc["jump"] < 1.1 * with_rtc["own_jump"], (with_rtc, without)


def test_from_previous_aligns_the_previous_chunk_and_sets_the_overlap():
    previous = np.arange(4 * 2, dtype=np.float32).reshape(4, 2)
    guide = PrefixGuide.from_previous(previous, executed=1, frozen=1, horizon=4)
    np.testing.assert_array_equal(guide.target[:3].numpy(), previous[1:])
    np.testing.assert_array_equal(guide.weights.numpy(), soft_mask(1, 2, 4).astype(np.float32))
    with pytest.raises(ValueError, match="frozen=3 steps but the previous chunk has only 2 left"):
        PrefixGuide.from_previous(previous, executed=2, frozen=3, horizon=4)
    with pytest.raises(ValueError, match="executed=5 must be in 0..4"):
        PrefixGuide.from_previous(previous, executed=5, frozen=0, horizon=4)


def test_bad_targets_are_refused_with_a_clear_error(head_and_embedding):
    config, head, embedding = head_and_embedding
    target = np.zeros((config.action_horizon, config.action_dim))
    target[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"target must be finite, got nan at index \[1, 3\]"):
        PrefixGuide.build(target, frozen=1, overlap=1)
    target[1, 3] = np.inf
    with pytest.raises(ValueError, match=r"got inf at index \[1, 3\]"):
        PrefixGuide.build(target, frozen=1, overlap=1)
    with pytest.raises(ValueError, match=r"target must be \(horizon, dim\) .* got shape \[28\]"):
        PrefixGuide.build(np.zeros(28), frozen=1, overlap=0)
    sampler = DiffusionSampler(config, "ddpm", 5)
    wrong_dim = PrefixGuide.build(np.zeros((config.action_horizon, 6)), frozen=1, overlap=0)
    with pytest.raises(
        ValueError, match=r"target shape \[4, 6\] does not match the sampler's chunk \(4, 7\)"
    ):
        sampler.sample(head, embedding, torch.Generator().manual_seed(0), guide=wrong_dim)
    wrong_batch = PrefixGuide.build(np.zeros((3, config.action_horizon, 7)), frozen=1, overlap=0)
    with pytest.raises(ValueError, match="for a batch of 2"):
        sampler.sample(head, embedding, torch.Generator().manual_seed(0), guide=wrong_batch)


def test_normalize_actions_inverts_the_processors_unnormalisation():
    stats = NormStats(
        q01=(-1.0, -1.0, 0.0),
        q99=(1.0, 1.0, 1.0),
        mask=(True, True, False),
        mean=(0.1, -0.2, 0.5),
        std=(0.5, 2.0, 1.0),
    )
    normalized = np.array([[0.3, -1.5, 0.25], [2.0, 0.0, 1.0]])
    actions = unnormalize_actions(normalized, stats, ("x", "y", "gripper"))
    np.testing.assert_allclose(normalize_actions(actions, stats), normalized, atol=1e-12)
    with pytest.raises(ValueError, match="lack mean/std"):
        normalize_actions(actions, NormStats(q01=(0.0,), q99=(1.0,), mask=(True,)))
    with pytest.raises(ValueError, match="action dim 2 does not match the 3 norm stats"):
        normalize_actions(actions[:, :2], stats)
