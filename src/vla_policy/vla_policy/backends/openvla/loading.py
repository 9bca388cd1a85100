"""Reading and writing OpenVLA checkpoints in the official layout (no remote code, safetensors only).

A checkpoint directory holds ``config.json`` (model_type ``openvla``, with ``norm_stats``),
``model.safetensors`` or ``model-0000i-of-0000n.safetensors`` shards with
``model.safetensors.index.json``, the Llama tokenizer files (``tokenizer.json``,
``tokenizer_config.json``) and ``dataset_statistics.json``. Statistics are read from config.json's
``norm_stats`` (the official place), else from ``norm_stats.json`` or ``dataset_statistics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import LlamaTokenizer
from transformers.initialization import no_init_weights

from vla_common.action_space import NormStats
from vla_policy.backends.openvla.configuration import OpenVLAConfig, config_from_json, config_to_json
from vla_policy.backends.openvla.key_map import native_to_official, official_to_native
from vla_policy.backends.openvla.modeling import OpenVLAModel
from vla_policy.checkpoint import (
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX,
    load_norm_stats,
    load_safetensors,
    load_state_dict_strict,
    read_json,
    save_safetensors,
    write_json,
)
from vla_policy.torch_dtype import resolve_dtype

CONFIG_FILE = "config.json"
STATS_FILES = ("norm_stats.json", "dataset_statistics.json")
QUANTIZATIONS = (None, "8bit", "4bit")


def read_openvla_config(checkpoint_dir: str | Path) -> OpenVLAConfig:
    path = Path(checkpoint_dir) / CONFIG_FILE
    data = read_json(path)
    if data.get("model_type", "openvla") != "openvla":
        raise ValueError(f"{path}: model_type '{data['model_type']}' is not 'openvla'")
    return config_from_json(data, source=str(path))


def select_norm_stats(
    checkpoint_dir: str | Path, config: OpenVLAConfig, unnorm_key: str | None
) -> tuple[str, NormStats]:
    """The action statistics of one dataset (OpenVLA's ``unnorm_key``); unknown keys list the available."""
    root = Path(checkpoint_dir)
    if not config.norm_stats:
        for name in STATS_FILES:
            if (root / name).is_file():
                return load_norm_stats(root / name, unnorm_key)
        raise FileNotFoundError(
            f"checkpoint {root}: no statistics: {CONFIG_FILE} has no 'norm_stats' and neither "
            f"{' nor '.join(STATS_FILES)} exists"
        )
    source = f"{root / CONFIG_FILE} norm_stats"
    stats = config.norm_stats
    if unnorm_key is None:
        if len(stats) != 1:
            raise ValueError(f"{source}: {len(stats)} datasets; pass unnorm_key, one of {sorted(stats)}")
        unnorm_key = next(iter(stats))
    if unnorm_key not in stats:
        raise ValueError(f"{source}: unnorm_key '{unnorm_key}' not found; available: {sorted(stats)}")
    entry = stats[unnorm_key]
    if "action" not in entry:
        raise ValueError(f"{source}: dataset '{unnorm_key}' has no 'action' statistics (has {sorted(entry)})")
    action = dict(entry["action"])
    action.setdefault("mask", [True] * len(action.get("q01", [])))  # the reference's default: all normalised
    try:
        return unnorm_key, NormStats.from_dict(action)
    except ValueError as exc:
        raise ValueError(f"{source}['{unnorm_key}']['action']: {exc}") from exc


@contextlib.contextmanager
def _default_dtype(dtype: Any) -> Iterator[None]:
    """Build modules directly in ``dtype`` (never .to(dtype) afterwards: RoPE's float32 inv_freq stays)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(config: OpenVLAConfig, device: str, dtype: Any, initialise: bool = True) -> Any:
    """An OpenVLAModel on ``device`` in ``dtype``; without ``initialise`` the weights are left empty."""
    no_init = contextlib.nullcontext() if initialise else no_init_weights()
    with torch.device(device), _default_dtype(dtype), no_init:
        model = OpenVLAModel(config)
    return model.eval().requires_grad_(False)


def load_openvla_model(
    checkpoint_dir: str | Path,
    config: OpenVLAConfig,
    device: str = "cpu",
    dtype: Any = None,
    load_in: str | None = None,
    progress: bool = True,
) -> Any:
    """Build the native model and load the official safetensors through the key map (strict)."""
    if load_in not in QUANTIZATIONS:
        raise ValueError(f"OpenVLA load_in '{load_in}' is not one of None, '8bit', '4bit'")
    dtype = dtype if dtype is not None else resolve_dtype(None, device)
    if load_in is not None and not device.startswith("cuda"):
        raise ValueError(f"OpenVLA load_in '{load_in}' needs device 'cuda' (bitsandbytes), got '{device}'")
    official = load_safetensors(checkpoint_dir, device="cpu", progress=progress, desc="OpenVLA weights")
    native = official_to_native(official, config, source=str(checkpoint_dir))
    del official
    build_device = "cpu" if load_in is not None else device
    model = build_model(config, build_device, dtype, initialise=False)
    load_state_dict_strict(model, native, source=str(checkpoint_dir))
    del native
    if load_in is not None:
        quantize_language_model(model, load_in, dtype)
        model = model.to(device)  # bitsandbytes quantises the weights on the transfer to the GPU
    return model


def quantize_language_model(model: Any, load_in: str, compute_dtype: Any) -> None:
    """Swap the Llama decoder's nn.Linear layers for bitsandbytes 8-bit (LLM.int8) or 4-bit (NF4) ones.

    The vision towers, projector, embeddings and lm_head stay in ``compute_dtype`` (the vision part is
    under 10 % of the weights and most sensitive to rounding).
    """
    try:
        import bitsandbytes as bnb  # lazy: optional (CUDA only, not installed by default), for load_in
    except ImportError as exc:
        raise ImportError(
            f"OpenVLA load_in '{load_in}' needs the bitsandbytes package (pip install bitsandbytes); "
            "it is not installed"
        ) from exc

    for module in list(model.language_model.model.layers.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            has_bias = child.bias is not None
            if load_in == "8bit":
                quantized = bnb.nn.Linear8bitLt(
                    child.in_features,
                    child.out_features,
                    bias=has_bias,
                    has_fp16_weights=False,
                    threshold=6.0,
                )
                quantized.weight = bnb.nn.Int8Params(
                    child.weight.data, requires_grad=False, has_fp16_weights=False
                )
            else:
                quantized = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=has_bias,
                    compute_dtype=compute_dtype,
                    quant_type="nf4",
                )
                quantized.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4")
            if has_bias:
                quantized.bias = child.bias
            setattr(module, child_name, quantized)


def load_tokenizer(checkpoint_dir: str | Path) -> Any:
    """The checkpoint's Llama tokenizer (tokenizer.json / tokenizer.model), local files only.

    LlamaTokenizer (= LlamaTokenizerFast) directly rather than AutoTokenizer, which would read
    config.json, not recognise model_type 'openvla' and fall back to a generic class.
    """
    root = Path(checkpoint_dir)
    if not any((root / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        raise FileNotFoundError(f"checkpoint {root}: no tokenizer.json or tokenizer.model")
    return LlamaTokenizer.from_pretrained(str(root), local_files_only=True)


def save_openvla_checkpoint(
    model: Any,
    tokenizer: Any,
    norm_stats: Mapping[str, Any],
    directory: str | Path,
    max_shard_bytes: int = 4 * 2**30,
) -> Path:
    """Write ``model`` in the official OpenVLA layout and names (config.json, safetensors, tokenizer).

    ``norm_stats`` is ``{dataset: {"action": {q01, q99, mask, mean, std, ...}}}``; NormStats values are
    accepted too. Weights larger than ``max_shard_bytes`` are split into shards with an index.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    stats = {
        key: {"action": value.as_dict() if isinstance(value, NormStats) else dict(value["action"])}
        for key, value in norm_stats.items()
    }
    config = dataclasses.replace(model.config, norm_stats=stats)
    write_json(root / CONFIG_FILE, config_to_json(config))
    write_json(root / "dataset_statistics.json", stats)
    official = {
        key: tensor.detach().cpu() for key, tensor in native_to_official(model.state_dict(), config).items()
    }
    _write_shards(official, root, max_shard_bytes)
    tokenizer.save_pretrained(str(root))
    return root


def _write_shards(tensors: Mapping[str, Any], root: Path, max_shard_bytes: int) -> None:
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for key in sorted(tensors):
        nbytes = tensors[key].numel() * tensors[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensors[key]
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_safetensors(shards[0], root / SAFETENSORS_FILE, metadata)
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors(shard, root / name, metadata)
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (root / SAFETENSORS_INDEX).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
