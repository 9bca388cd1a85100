"""Block-wise causal attention: task prefix, observations by timestep, read-only readouts, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.transformer import (
    BlockTransformer,
    TokenGroup,
    block_causal_mask,
    octo_groups,
    token_layout,
)

# task: 2 tokens; per timestep: obs_a 2, obs_b 1, readout_action 1; window 2 -> 2 + 2 * 4 = 10 tokens
GROUPS = octo_groups({"language": 2}, {"a": 2, "b": 1}, {"action": 1})
TASK = [0, 1]
OBS = {0: [2, 3, 4], 1: [6, 7, 8]}
READOUT = {0: [5], 1: [9]}


def test_layout_is_task_then_each_timestep():
    group_ids, timesteps = token_layout(GROUPS, window=2)
    assert timesteps.tolist() == [-1, -1, 0, 0, 0, 0, 1, 1, 1, 1]
    names = [GROUPS[i].name for i in group_ids]
    assert names[2:6] == ["obs_a", "obs_a", "obs_b", "readout_action"]


def test_block_causal_mask_structure():
    mask = block_causal_mask(GROUPS, window=2)
    assert mask.shape == (10, 10)
    # the task attends to itself only
    assert mask[np.ix_(TASK, TASK)].all() and not mask[TASK, 2:].any()
    # observations: the task and observations of the same or earlier timesteps, both cameras
    assert mask[np.ix_(OBS[0], TASK + OBS[0])].all()
    assert not mask[np.ix_(OBS[0], OBS[1])].any()
    assert mask[np.ix_(OBS[1], TASK + OBS[0] + OBS[1])].all()
    # nothing but a readout attends to readouts, and a readout only to its own group
    readouts = READOUT[0] + READOUT[1]
    non_readout = [i for i in range(10) if i not in readouts]
    assert not mask[np.ix_(non_readout, readouts)].any()
    assert mask[np.ix_(READOUT[0], TASK + OBS[0] + READOUT[0])].all()
    assert not mask[np.ix_(READOUT[0], OBS[1] + READOUT[1])].any()
    assert mask[np.ix_(READOUT[1], TASK + OBS[0] + OBS[1] + readouts)].all()


def test_a_prefix_attending_to_timesteps_is_refused():
    leaky = [TokenGroup("task_x", 1, True, ("obs_*",)), TokenGroup("obs_a", 1, False, ("obs_*",))]
    with pytest.raises(ValueError, match="task_x"):
        block_causal_mask(leaky, window=1)


def test_readouts_do_not_write_and_the_future_does_not_leak():
    torch.manual_seed(0)
    transformer = BlockTransformer(width=16, num_layers=2, num_heads=2, mlp_dim=32).eval()
    mask = torch.from_numpy(block_causal_mask(GROUPS, window=2))
    tokens = torch.randn(1, 10, 16)
    changed = tokens.clone()
    changed[0, READOUT[0] + READOUT[1]] += torch.randn(2, 16)  # other readout inputs
    changed_future = tokens.clone()
    changed_future[0, OBS[1]] += torch.randn(3, 16)  # other observations at t = 1
    with torch.no_grad():
        base, readout_changed, future_changed = (
            transformer(t, mask) for t in (tokens, changed, changed_future)
        )
    non_readout = [i for i in range(10) if i not in READOUT[0] + READOUT[1]]
    torch.testing.assert_close(base[0, non_readout], readout_changed[0, non_readout])
    t0 = TASK + OBS[0] + READOUT[0]
    torch.testing.assert_close(base[0, t0], future_changed[0, t0])
    assert not torch.allclose(base[0, READOUT[1]], future_changed[0, READOUT[1]])


def test_pad_timestep_and_missing_camera_are_masked_as_keys(tiny_backend):
    model: OctoModel = tiny_backend.model
    config = model.config
    timestep_mask = torch.tensor([[False, True]])
    wrist_missing = {"wrist": torch.tensor([[True, False]])}
    mask = model.attention_mask(2, timestep_mask, wrist_missing)[0]
    per_camera = config.tokens_per_camera()
    n_text, n_p, n_w = config.text_tokens, per_camera["primary"], per_camera["wrist"]
    step = sum(config.timestep_tokens().values())
    t0 = slice(n_text, n_text + n_p + n_w)  # image tokens of the pad timestep
    wrist_t1 = slice(n_text + step + n_p, n_text + step + n_p + n_w)
    readout_t0 = n_text + step - 1
    assert not mask[:, t0].any()  # nobody reads the pad timestep's images
    assert not mask[:, wrist_t1].any()  # nor the missing wrist camera
    assert mask[-1, readout_t0]  # readouts are never padding
    assert mask[:, :n_text].any(dim=1).all()  # every token still sees the task: no empty rows


def test_model_readout_ignores_a_pad_timesteps_content(tiny_backend):
    model = tiny_backend.model
    config = model.config
    rng = np.random.default_rng(0)
    images = {
        c: torch.from_numpy(rng.integers(0, 256, (1, 2, *config.image_size[c], 3), dtype=np.uint8))
        for c in config.cameras
    }
    other = {c: v.clone() for c, v in images.items()}
    for v in other.values():
        v[:, 0] = 255 - v[:, 0]
    text = torch.randn(1, config.text_tokens, config.t5_config["d_model"])
    pad = torch.tensor([[False, True]])
    with torch.no_grad():
        a, b = model(images, text, pad), model(other, text, pad)
        c = model(other, text, torch.tensor([[True, True]]))
    torch.testing.assert_close(a[:, 1], b[:, 1])
    assert not torch.allclose(a[:, 1], c[:, 1])


def test_octo_1_0_attention_gives_each_groups_first_token_the_previous_groups_rules():
    """Octo's use_correct_attention=False (its December 2023 models; block_transformer.py,
    generate_attention_mask): a token's group is np.searchsorted(np.cumsum(tokens per group), i,
    side="left") within the prefix and within each timestep, so the first token of every group after
    the first takes the previous group's name and rules."""
    group_ids, timesteps = token_layout(GROUPS, window=2, correct_attention=False)
    names = [GROUPS[i].name for i in group_ids]
    assert names == ["task_language"] * 2 + ["obs_a", "obs_a", "obs_a", "obs_b"] * 2
    assert timesteps.tolist() == token_layout(GROUPS, window=2)[1].tolist()
    legacy, correct = block_causal_mask(GROUPS, 2, correct_attention=False), block_causal_mask(GROUPS, 2)
    # the readout, ruled as obs_b, is read by the observations of its own and later timesteps
    assert legacy[OBS[0][0], READOUT[0][0]] and legacy[OBS[1][0], READOUT[0][0]]
    assert not correct[OBS[0][0], READOUT[0][0]] and not correct[OBS[1][0], READOUT[0][0]]
    assert not legacy[OBS[0][0], READOUT[1][0]]  # still causal
