"""Octo 1.5's token sequence, with the numbers taken from the upstream configuration.

octo-models/octo @ 241fb35, scripts/configs/octo_pretrain_config.py (octo-small-1.5 / octo-base-1.5):
- observation_tokenizers "primary" and "wrist": ImageTokenizer + SmallStem16 (patch_size 16), with
  resize_size primary (256, 256), wrist (128, 128): 256 / 16 = 16 -> 16 x 16 = 256 tokens,
  128 / 16 = 8 -> 8 x 8 = 64 tokens;
- task_tokenizers "language": LanguageTokenizer over the text processor's max_length = 16 T5 tokens;
- ``config["model"]["repeat_task_tokens"] = True``: OctoTransformer appends every task group again
  to each timestep as "obs_task_language" (16 tokens), after the observation groups;
- readouts {"action": 1}: "readout_action", 1 token, last in each timestep;
- window_size = 2.
Sequence: 16 task tokens + 2 x (256 + 64 + 16 + 1) = 16 + 2 x 337 = 690 (658 without the repeat).
These tests build the model at those image sizes and token counts (widths shrunk: they do not change
the layout) and read the length the transformer actually receives.
"""

from __future__ import annotations

import torch

from vla_policy.backends.octo.config import T5_TINY_CONFIG, octo_preset
from vla_policy.backends.octo.model import OctoModel

NARROW = dict(
    width=32,
    num_layers=1,
    num_heads=2,
    mlp_dim=32,
    stem_features=(8, 8, 8, 8),
    stem_groups=4,
    image_token_dim=8,
    t5_config=dict(T5_TINY_CONFIG),
    head_hidden_dim=8,
    head_num_blocks=1,
)
OCTO_SMALL_15_TIMESTEP = [
    ("obs_primary", 256),
    ("obs_wrist", 64),
    ("obs_task_language", 16),
    ("readout_action", 1),
]
OCTO_SMALL_15_TOKENS = 16 + 2 * (256 + 64 + 16 + 1)


def test_octo_small_1_5_token_groups_and_length_are_upstreams():
    torch.manual_seed(0)
    model = OctoModel(octo_preset("small", **NARROW)).eval()
    groups = model.token_groups()
    assert [(g.name, g.num_tokens) for g in groups if g.is_prefix] == [("task_language", 16)]
    assert [(g.name, g.num_tokens) for g in groups if not g.is_prefix] == OCTO_SMALL_15_TIMESTEP

    lengths = []
    model.transformer.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
    images = {
        "primary": torch.randint(0, 256, (1, 2, 256, 256, 3), dtype=torch.uint8),
        "wrist": torch.randint(0, 256, (1, 2, 128, 128, 3), dtype=torch.uint8),
    }
    text = torch.randn(1, 16, T5_TINY_CONFIG["d_model"])
    with torch.no_grad():
        readout = model(images, text, torch.ones(1, 2, dtype=torch.bool))
    assert lengths == [OCTO_SMALL_15_TOKENS]  # 690
    assert readout.shape == (1, 2, 32)


def test_base_has_the_same_layout_and_the_config_counts_it():
    for size in ("small", "base"):
        config = octo_preset(size)
        assert list(config.timestep_tokens().items()) == OCTO_SMALL_15_TIMESTEP
        assert config.sequence_length() == OCTO_SMALL_15_TOKENS


def test_repeated_task_tokens_are_an_observation_group_padded_only_with_the_task():
    """Upstream gives the repeated group the task's pad mask (not the timestep's) and the observation
    attention rules: observations and readouts of the same or later timesteps read it."""
    torch.manual_seed(0)
    model = OctoModel(octo_preset("tiny", **NARROW, image_sizes=((32, 32), (16, 16)))).eval()
    config = model.config
    per_step = config.timestep_tokens()
    assert list(per_step)[-2:] == ["obs_task_language", "readout_action"]
    start = {}
    offset = config.text_tokens
    for t in range(2):
        for name, n in per_step.items():
            start[t, name] = offset
            offset += n
    mask = model.attention_mask(2, torch.tensor([[False, True]]))[0]
    repeated_t0 = slice(start[0, "obs_task_language"], start[0, "obs_task_language"] + config.text_tokens)
    primary_t0 = start[0, "obs_primary"]
    primary_t1, readout_t1 = start[1, "obs_primary"], start[1, "readout_action"]
    assert mask[primary_t1, repeated_t0].all() and mask[readout_t1, repeated_t0].all()
    assert not mask[:, primary_t0].any()  # the pad timestep's image is masked ...
    assert mask[repeated_t0, : config.text_tokens].all()  # ... its repeated task tokens read the task
    assert not mask[repeated_t0, start[0, "readout_action"]].any()  # and never a readout


def test_a_config_without_the_field_keeps_the_old_layout():
    """models/octo-sim's config.json predates the field: it loads without the repeated group."""
    config = octo_preset("tiny", repeat_task_tokens=False)
    assert "obs_task_language" not in config.timestep_tokens()
    data = config.to_dict()
    del data["repeat_task_tokens"]
    assert type(config).from_dict(data).repeat_task_tokens is False
