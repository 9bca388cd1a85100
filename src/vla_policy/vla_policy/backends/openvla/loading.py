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
from tqdm import tqdm
from transformers import LlamaTokenizer
from transformers.initialization import no_init_weights

from vla_common.action_space import NormStats
from vla_policy.backends.openvla.configuration import OpenVLAConfig, config_from_json, config_to_json
from vla_policy.backends.openvla.key_map import native_to_official, official_to_native
from vla_policy.backends.openvla.modeling import OpenVLAModel
from vla_policy.checkpoint import (
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX,
    check_state_dict,
    load_norm_stats,
    load_safetensors,
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
    """Build the native model and load the official safetensors through the key map (strict).

    Never two copies of the weights on the host: the shards are memory-mapped, the model is built
    with uninitialised weights (pages never touched, so they cost no memory) and every tensor is then
    placed on its own, in file order, so that a shard's mapping is released as soon as its last
    tensor is placed:

    - on the CPU in the checkpoint's dtype (bf16 for the releases), a parameter IS the mapped tensor:
      no copy, the host peak is the checkpoint's size;
    - in another dtype or on the GPU, each tensor is converted or moved alone (host peak: the model
      in ``dtype`` plus about one shard on the CPU, about one shard for the GPU);
    - ``load_in`` "8bit" / "4bit": the Llama decoder's linear layers become bitsandbytes LLM.int8 /
      NF4 layers whose weights are quantised one by one on their way to ``device`` (the GPU never
      holds the bf16 decoder either). The vision towers, projector, embeddings and lm_head stay in
      ``dtype`` (the vision part is under 10 % of the weights and the most sensitive to rounding).
    """
    check_load_in(load_in)
    dtype = dtype if dtype is not None else resolve_dtype(None, device)
    source = str(checkpoint_dir)
    official = load_safetensors(checkpoint_dir, device="cpu", progress=False)  # memory-mapped views
    native = official_to_native(official, config, source=source)
    del official
    model = build_model(config, "cpu", dtype, initialise=False)
    own = model.state_dict()
    check_state_dict(own, native, source)
    target_dtypes = {name: tensor.dtype for name, tensor in own.items()}
    del own
    quantized = swap_in_quantized_linears(model, load_in, dtype) if load_in else set()
    order = placement_order(native)
    for name in tqdm(order, desc="OpenVLA weights", disable=not progress, unit="tensor", leave=False):
        tensor = native.pop(name)
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        if name in quantized:
            set_quantized_weight(module, tensor, device)
        else:
            place_tensor(module, attribute, tensor.to(device=device, dtype=target_dtypes[name]))
        del tensor
    for module in model.modules():  # what the checkpoint does not hold: RoPE frequencies, position ids
        for name, buffer in module.named_buffers(recurse=False):
            module._buffers[name] = buffer.to(device)
    return model.eval()  # the swapped-in quantised layers were built in training mode


def placement_order(tensors: Mapping[str, Any]) -> list[str]:
    """Names by address: one shard after another (each shard file is one mapping), each in file order,
    so that a shard's mapping goes as soon as its tensors are placed (copies made by the key map, on
    the heap, fall anywhere in between)."""
    return sorted(tensors, key=lambda name: tensors[name].data_ptr())


def check_load_in(load_in: str | None, device: str | None = None) -> None:
    """``load_in`` is None, "8bit" or "4bit"; with ``device`` given, quantisation needs CUDA."""
    if load_in not in QUANTIZATIONS:
        raise ValueError(f"OpenVLA load_in '{load_in}' is not one of None, '8bit', '4bit'")
    if load_in is not None and device is not None and not str(device).startswith("cuda"):
        raise ValueError(f"OpenVLA load_in '{load_in}' needs device 'cuda' (bitsandbytes), got '{device}'")


def place_tensor(module: Any, attribute: str, value: Any) -> None:
    """Make ``value`` the module's parameter or buffer ``attribute`` itself (no copy into the old one)."""
    if attribute in module._parameters:
        module._parameters[attribute] = nn.Parameter(value, requires_grad=False)
    else:
        module._buffers[attribute] = value


def _bitsandbytes(load_in: str) -> Any:
    try:
        import bitsandbytes as bnb  # lazy: optional (CUDA only, requirements-gpu.txt), for load_in
    except ImportError as exc:
        raise ImportError(
            f"OpenVLA load_in '{load_in}' needs the bitsandbytes package (pip install -r "
            "requirements-gpu.txt); it is not installed"
        ) from exc
    return bnb


def swap_in_quantized_linears(model: Any, load_in: str, compute_dtype: Any) -> set[str]:
    """Replace the Llama decoder's nn.Linear layers by empty bitsandbytes 8-bit (LLM.int8, threshold
    6.0) or 4-bit (NF4) layers; returns the state-dict names of their weights, for
    :func:`set_quantized_weight`. Nothing is allocated: the new layers live on the meta device until
    their weights arrive."""
    bnb = _bitsandbytes(load_in)
    prefix = "language_model.model.layers"
    names = set()
    for module_name, module in list(model.get_submodule(prefix).named_modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            has_bias = child.bias is not None
            with torch.device("meta"):
                if load_in == "8bit":
                    quantized = bnb.nn.Linear8bitLt(
                        child.in_features,
                        child.out_features,
                        bias=has_bias,
                        has_fp16_weights=False,
                        threshold=6.0,
                    )
                else:
                    quantized = bnb.nn.Linear4bit(
                        child.in_features,
                        child.out_features,
                        bias=has_bias,
                        compute_dtype=compute_dtype,
                        quant_type="nf4",
                    )
            setattr(module, child_name, quantized)
            names.add(".".join(part for part in (prefix, module_name, child_name, "weight") if part))
    return names


def set_quantized_weight(module: Any, weight: Any, device: str) -> None:
    """Quantise ``weight`` (host, any float dtype) into the bitsandbytes layer ``module`` on ``device``:
    bitsandbytes quantises on the transfer, so only this one tensor is ever on the GPU unquantised."""
    placeholder = module.weight
    if hasattr(placeholder, "quant_type"):  # Params4bit
        parameter = type(placeholder)(
            weight,
            requires_grad=False,
            compress_statistics=placeholder.compress_statistics,
            quant_type=placeholder.quant_type,
            quant_storage=placeholder.quant_storage,
            module=module,
        )
    else:  # Int8Params
        parameter = type(placeholder)(weight, requires_grad=False, has_fp16_weights=False)
    module.weight = parameter.to(device)


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
    config = write_checkpoint_files(model.config, tokenizer, norm_stats, root)
    official = {
        key: tensor.detach().cpu() for key, tensor in native_to_official(model.state_dict(), config).items()
    }
    plan = shard_plan({key: tensor.nbytes for key, tensor in official.items()}, max_shard_bytes)
    weight_map = {}
    for name, keys in zip(shard_file_names(len(plan)), plan, strict=True):
        save_safetensors({key: official[key] for key in keys}, root / name, SAFETENSORS_METADATA)
        weight_map.update(dict.fromkeys(keys, name))
    write_shard_index(root, weight_map, sum(tensor.nbytes for tensor in official.values()))
    return root


SAFETENSORS_METADATA = {"format": "pt"}


def write_checkpoint_files(
    config: OpenVLAConfig, tokenizer: Any, norm_stats: Mapping[str, Any], directory: str | Path
) -> OpenVLAConfig:
    """Everything of a checkpoint but the weights: config.json (with ``norm_stats``),
    dataset_statistics.json and the tokenizer files; returns the config with the statistics."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    stats = {
        key: {"action": value.as_dict() if isinstance(value, NormStats) else dict(value["action"])}
        for key, value in norm_stats.items()
    }
    config = dataclasses.replace(config, norm_stats=stats)
    write_json(root / CONFIG_FILE, config_to_json(config))
    write_json(root / "dataset_statistics.json", stats)
    tokenizer.save_pretrained(str(root))
    return config


def shard_plan(sizes: Mapping[str, int], max_shard_bytes: int) -> list[list[str]]:
    """Tensor names in sorted order, cut into consecutive shards of at most ``max_shard_bytes`` (a
    larger tensor gets a shard of its own)."""
    shards: list[list[str]] = [[]]
    size = 0
    for key in sorted(sizes):
        if shards[-1] and size + sizes[key] > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += sizes[key]
    return shards


def shard_file_names(count: int) -> list[str]:
    """model.safetensors alone, else Hugging Face's model-0000i-of-0000n.safetensors."""
    if count == 1:
        return [SAFETENSORS_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def write_shard_index(root: Path, weight_map: Mapping[str, str], total_bytes: int) -> None:
    """model.safetensors.index.json for a sharded checkpoint (nothing for a single file)."""
    if len(set(weight_map.values())) > 1:
        (root / SAFETENSORS_INDEX).write_text(
            json.dumps({"metadata": {"total_size": total_bytes}, "weight_map": dict(weight_map)}, indent=2)
        )
