"""Checkpoint files shared by the model backends: JSON configs, safetensors, normalisation stats.

Only safetensors are read (no pickle). Sharded checkpoints (``model.safetensors.index.json`` with
``weight_map``) are supported. Every error names the file and the key. torch is imported inside
the functions that need it, so this module stays importable without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vla_common.action_space import NormStats

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"


def read_json(path: str | Path, required: Iterable[str] = ()) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; present: {sorted(data)}")
    return data


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))


def safetensors_files(checkpoint_dir: str | Path) -> list[Path]:
    """The weight files of a checkpoint: one model.safetensors, or the shards of an index."""
    root = Path(checkpoint_dir)
    index = root / SAFETENSORS_INDEX
    if index.is_file():
        weight_map = read_json(index, required=("weight_map",))["weight_map"]
        return [root / name for name in sorted(set(weight_map.values()))]
    single = root / SAFETENSORS_FILE
    if single.is_file():
        return [single]
    found = sorted(root.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(
            f"checkpoint {root}: no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or *.safetensors"
        )
    return found


def load_safetensors(
    checkpoint_dir: str | Path, *, device: str = "cpu", progress: bool = True, desc: str = "loading weights"
) -> dict[str, Any]:
    """All tensors of a checkpoint (every shard), with a progress bar over tensors."""
    # lazy: safetensors is a model-backend dependency (requirements.txt), not a core one; the JSON and
    # statistics readers here must import without it
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    files = safetensors_files(checkpoint_dir)
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint shard missing: {file}")
        with safe_open(str(file), framework="pt", device=device) as reader:
            keys = list(reader.keys())
            for key in tqdm(
                keys, desc=f"{desc} ({file.name})", disable=not progress, unit="tensor", leave=False
            ):
                if key in tensors:
                    raise ValueError(f"{file}: tensor '{key}' also stored in another shard")
                tensors[key] = reader.get_tensor(key)
    return tensors


def save_safetensors(
    tensors: Mapping[str, Any], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    from safetensors.torch import save_file  # lazy: imports torch, which this module must not need

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=dict(metadata or {}))


def load_state_dict_strict(module: Any, state_dict: Mapping[str, Any], source: str) -> None:
    """load_state_dict that names missing and unexpected keys (and shape mismatches) with the source."""
    check_state_dict(module.state_dict(), state_dict, source)
    module.load_state_dict(state_dict, strict=True)


def check_state_dict(own: Mapping[str, Any], state_dict: Mapping[str, Any], source: str) -> None:
    """The names and shapes of ``state_dict`` are exactly those of ``own``; errors name every mismatch."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise KeyError(
            f"{source}: {len(missing)} missing key(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{source}: tensor '{key}' has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )


def load_norm_stats(path: str | Path, key: str | None = None, field: str = "action") -> tuple[str, NormStats]:
    """Normalisation statistics from ``{dataset_key: {"action": {q01, q99, mask, mean, std}}}``.

    ``key`` picks the dataset (OpenVLA's ``unnorm_key``); without it a single entry is taken. An
    unknown or ambiguous key is an error that lists the available ones.
    """
    stats = read_json(path)
    if key is None:
        if len(stats) != 1:
            raise ValueError(f"{path}: {len(stats)} datasets; pass unnorm_key, one of {sorted(stats)}")
        key = next(iter(stats))
    if key not in stats:
        raise ValueError(f"{path}: unnorm_key '{key}' not found; available: {sorted(stats)}")
    entry = stats[key]
    if field not in entry:
        raise ValueError(f"{path}: dataset '{key}' has no '{field}' statistics (has {sorted(entry)})")
    return key, NormStats.from_dict(entry[field])
