"""Real-time chunking through the Octo backend (tiny random model): observation.committed freezes
the prefix, bends the overlap, and without it the chunk is exactly the unguided one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.processor import unnormalize_actions
from vla_policy.contract import CommittedActions, Observation

INSTRUCTION = "put the red cube in the bowl"


def images(backend, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        c: rng.integers(0, 256, (*backend.image_size[c], 3), dtype=np.uint8) for c in backend.camera_names
    }


def infer(backend, committed: CommittedActions | None, seed: int = 3):
    """A chunk on the second (full-window) observation after reset(seed)."""
    backend.reset(seed=seed)
    backend.infer(Observation(1, images(backend, 0), INSTRUCTION))
    return backend.infer(Observation(2, images(backend, 1), INSTRUCTION, committed=committed))


def test_the_octo_backend_says_it_guides_its_chunks(tiny_backend):
    assert type(tiny_backend).guides_chunks is True


def test_without_committed_the_chunk_is_the_unguided_sample_bit_for_bit(tiny_backend):
    out = infer(tiny_backend, None)
    assert (out.info["rtc_frozen"], out.info["rtc_overlap"], out.info["rtc_frozen_clamped"]) == (0, 0, False)
    # the same chunk by hand, through the model's unguided sampler
    tiny_backend.reset(seed=3)
    model = tiny_backend.model
    frames = [tiny_backend._images(images(tiny_backend, i)) for i in (0, 1)]
    text, text_mask = tiny_backend._text_embedding(INSTRUCTION)
    window = tiny_backend.config.window
    with torch.no_grad():
        for step in (1, 2):
            seen = frames[max(0, step - window) : step]
            seen = [seen[0]] * (window - len(seen)) + seen
            batch = {c: torch.from_numpy(np.stack([f[c] for f in seen]))[None] for c in frames[0]}
            pad = torch.tensor([[step - window + i >= 0 for i in range(window)]])
            readout = model(batch, text, pad, None, text_mask=text_mask)
            normalized = model.sample_actions(readout[:, -1], tiny_backend.sampler, tiny_backend.generator)
    space = tiny_backend.action_space
    expected = unnormalize_actions(normalized[0].numpy(), space.stats, space.dim_names)
    np.testing.assert_array_equal(out.chunk, expected)


@pytest.mark.parametrize("frozen", [1, 2, 3])
def test_the_frozen_prefix_is_the_committed_actions(tiny_backend, frozen):
    unguided = infer(tiny_backend, None).chunk
    horizon = tiny_backend.config.action_horizon
    committed = unguided.copy()
    committed[:, :6] += np.linspace(-0.01, 0.01, 6)  # somewhere else, in Bridge units
    committed[:, 6] = 1.0 - np.round(unguided[:, 6])
    out = infer(tiny_backend, CommittedActions(committed, frozen))
    np.testing.assert_allclose(out.chunk[:frozen], committed[:frozen], rtol=0, atol=1e-6)
    assert out.info["rtc_frozen"] == frozen and out.info["rtc_overlap"] == horizon - frozen
    assert out.info["rtc_frozen_clamped"] is False


def test_the_overlap_moves_toward_the_committed_actions(tiny_backend):
    stats = tiny_backend.action_space.stats
    std = np.asarray(stats.std)[:6]
    moved = []
    for seed in (3, 4, 5):
        unguided = infer(tiny_backend, None, seed).chunk
        committed = unguided.copy()
        committed[:, :6] += 0.8 * std  # 0.8 normalised units away on every arm dimension
        guided = infer(tiny_backend, CommittedActions(committed, 1), seed).chunk
        before = np.abs(unguided[1:, :6] - committed[1:, :6]) / std
        after = np.abs(guided[1:, :6] - committed[1:, :6]) / std
        moved.append(before.sum() - after.sum())
        assert after.sum() < before.sum(), f"seed {seed}: overlap {after.sum():.3f} vs {before.sum():.3f}"
    assert min(moved) > 0.05 * 0.8 * 18  # not a rounding difference: > 5 % of the offset, summed


def test_a_frozen_prefix_covering_the_chunk_is_clamped_and_reported(tiny_backend):
    horizon = tiny_backend.config.action_horizon
    committed = np.tile(infer(tiny_backend, None).chunk[:1], (horizon + 2, 1))
    out = infer(tiny_backend, CommittedActions(committed, horizon + 1))
    assert out.info["rtc_frozen"] == horizon - 1 and out.info["rtc_overlap"] == 1
    assert out.info["rtc_frozen_clamped"] is True
    np.testing.assert_allclose(out.chunk[: horizon - 1], committed[: horizon - 1], rtol=0, atol=1e-6)


def test_fewer_committed_actions_than_the_chunk_leave_a_fresh_tail(tiny_backend):
    base = infer(tiny_backend, None).chunk
    out = infer(tiny_backend, CommittedActions(base[:2] + 0.005, 1))
    assert out.info["rtc_frozen"] == 1 and out.info["rtc_overlap"] == 1
    np.testing.assert_allclose(out.chunk[:1], base[:1] + 0.005, rtol=0, atol=1e-6)


def test_committed_actions_of_the_wrong_width_are_refused_naming_them(tiny_backend):
    tiny_backend.reset(seed=0)
    bad = Observation(1, images(tiny_backend), INSTRUCTION, committed=CommittedActions(np.zeros((4, 6)), 1))
    with pytest.raises(ValueError, match=r"observation\.committed: actions are 6 wide.*7 dimensions"):
        tiny_backend.infer(bad)
    # refused before the frame entered the history: the next observation is still the first
    assert tiny_backend.infer(Observation(2, images(tiny_backend), INSTRUCTION)).info["pad_timesteps"] == 1


def test_infer_prepared_takes_committed_too(tiny_backend):
    prepared = images(tiny_backend, 1)
    committed = CommittedActions(np.full((4, 7), 0.002), 2)
    tiny_backend.reset(seed=0)
    out = tiny_backend.infer_prepared(prepared, None, INSTRUCTION, committed=committed)
    np.testing.assert_allclose(out.chunk[:2], committed.actions[:2], rtol=0, atol=1e-6)
    assert out.info["rtc_frozen"] == 2
