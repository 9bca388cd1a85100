"""Builders shared by the OpenVLA tests: a tiny model with weights scaled so greedy tokens vary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.openvla.configuration import OpenVLAConfig, preset
from vla_policy.backends.openvla.loading import build_model, save_openvla_checkpoint
from vla_policy.backends.openvla.processing import synthetic_tokenizer

# Two datasets so that unnorm_key has to be chosen; the second is bridge_orig with a wider gripper range.
NORM_STATS = {
    "bridge_orig": {"action": BRIDGE_ORIG_STATS.as_dict()},
    "fractal20220817_data": {
        "action": {**BRIDGE_ORIG_STATS.as_dict(), "q01": [-0.2] * 6 + [0.0], "q99": [0.2] * 6 + [1.0]}
    },
}


def tiny_config(image_size: int = 224) -> OpenVLAConfig:
    return dataclasses.replace(preset("tiny"), image_size=image_size, norm_stats=NORM_STATS)


def tiny_model(seed: int = 0, image_size: int = 224):
    """Random tiny OpenVLA; matrices drawn with std 0.5 / sqrt(fan_in) x 4 so logits are not flat."""
    torch.manual_seed(seed)
    model = build_model(tiny_config(image_size), "cpu", torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2:
                fan_in = parameter[0].numel()
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 2.0 / fan_in**0.5)
            elif "lambda1" in name:  # LayerScale: make it matter
                parameter.fill_(0.5)
    return model


def save_tiny_checkpoint(directory: Path, seed: int = 0, max_shard_bytes: int = 600_000) -> Path:
    model = tiny_model(seed)
    tokenizer = synthetic_tokenizer(model.config.action_vocab_size)
    return save_openvla_checkpoint(model, tokenizer, NORM_STATS, directory, max_shard_bytes=max_shard_bytes)
