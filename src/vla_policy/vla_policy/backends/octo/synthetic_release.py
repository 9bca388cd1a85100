"""A small Octo release written in the official layout, for tests and for trying ``vla-stack convert``.

``write_synthetic_release(DIR)`` writes what ``OctoModel.save_pretrained`` (octo-models/octo) writes
for an octo-1.5-style model at a tiny size: config.json (the whole training config of
``scripts/configs/octo_pretrain_config.py``, with the model's sizes), dataset_statistics.json
(per dataset: action and proprio statistics with the action mask), example_batch.msgpack and
``<step>/default/``, the orbax checkpoint of the flax parameter tree with upstream's module names
and layouts. The weights are random (seeded): those of an ``OctoModel`` mapped to the flax tree by
:func:`official_params_from_state_dict`, the inverse of ``converter.convert_official_params``.
``crosscheck/octo_release`` proves against the upstream code that the tree (names, shapes) and
config.json are those upstream builds and saves; the T5 encoder is tiny here, so config.json still
names "t5-base" as the releases do, but its dimensions are the parameters'.

``write_t5_tokenizer(DIR)`` writes a real T5TokenizerFast (a unigram model with T5's special ids
and metaspace pre-tokenizer, built in code) as the local stand-in for the hub's "t5-base" tokenizer.
Needs the convert extra (jax, flax, orbax-checkpoint) to write the checkpoint and the example batch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_common.action_space import BRIDGE_ORIG_STATS, NormStats
from vla_policy.backends.octo import converter
from vla_policy.backends.octo.backend import random_vocabulary
from vla_policy.backends.octo.config import T5_TINY_CONFIG, OctoConfig
from vla_policy.backends.octo.converter import T5, inverted_rules
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.release import (
    CONVERT_EXTRA,
    DATASET_STATISTICS,
    EXAMPLE_BATCH,
    ORBAX_ITEM,
    RELEASE_CONFIG,
)
from vla_policy.checkpoint import write_json

SYNTHETIC_STEP = 300000  # octo-small/base-1.5's step
# The second dataset of the synthetic statistics (a release keys them by dataset; --dataset picks).
OTHER_DATASET = "fractal20220817_data"

# Our state-dict names -> upstream's flax paths: the converter's rules read the other way.
MODULES = inverted_rules(converter.MODULES)  # modules with weight/bias leaves
PARAMETERS = inverted_rules(converter.PARAMETERS)  # raw parameters
T5_PREFIX = "language.encoder."
T5_TIED = "language.encoder.encoder.embed_tokens.weight"  # tied to shared; flax stores shared only


def synthetic_config(**overrides: Any) -> OctoConfig:
    """Octo 1.5's architecture (two cameras, goal images, repeated task tokens, 16 T5 tokens, a 4 x 7
    diffusion chunk, window 2, max_horizon 10) at a size that converts and runs in a second.

    SmallStem's GroupNorm has upstream's 32 groups, so every stem width is a multiple of 32."""
    settings: dict[str, Any] = dict(
        width=32,
        num_layers=2,
        num_heads=2,
        mlp_dim=64,
        window=2,
        max_horizon=10,
        cameras=("primary", "wrist"),
        image_sizes=((64, 64), (32, 32)),
        stem_features=(32, 32, 32, 32),
        stem_groups=32,
        image_token_dim=32,
        goal_image=True,
        repeat_task_tokens=True,
        t5_config=dict(T5_TINY_CONFIG),
        head_hidden_dim=32,
        head_num_blocks=2,
    )
    return OctoConfig(**{**settings, **overrides})


def _module_leaves(module: str, leaf: str, value: np.ndarray, num_heads: int) -> tuple[str, np.ndarray]:
    """Our (module, weight|bias) -> (flax leaf name, array in flax layout)."""
    attention = re.search(r"\.attention\.(query|key|value|out)$", module)
    if re.search(r"\bnorm(\d|s\.\d+)?$", module):  # LayerNorm / GroupNorm
        return ("scale" if leaf == "weight" else "bias"), value
    if leaf == "bias":
        if attention and attention.group(1) != "out":  # (heads * head_dim,) -> (heads, head_dim)
            return "bias", value.reshape(num_heads, -1)
        return "bias", value
    if value.ndim == 4:  # OIHW -> HWIO
        return "kernel", value.transpose(2, 3, 1, 0)
    if attention and attention.group(1) == "out":  # (d, heads * head_dim) -> (heads, head_dim, d)
        return "kernel", value.T.reshape(num_heads, -1, value.shape[0])
    if attention:  # (heads * head_dim, d) -> (d, heads, head_dim)
        return "kernel", value.T.reshape(value.shape[1], num_heads, -1)
    return "kernel", value.T


def _t5_leaf(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """HF torch T5 name -> HF flax T5 path (Linear kernels transposed)."""
    module = name.removesuffix(".weight").replace(".", "/")
    if module.endswith(("relative_attention_bias", "shared")):
        return f"{module}/embedding", value
    if module.endswith("layer_norm"):
        return f"{module}/weight", value
    return f"{module}/kernel", value.T


def official_params_from_state_dict(state: Mapping[str, torch.Tensor], config: OctoConfig) -> dict[str, Any]:
    """Our ``OctoModel`` state dict -> Octo's flax parameter tree (nested dicts of float32 arrays)."""
    flat: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        value = tensor.detach().float().cpu().numpy()
        if key == T5_TIED:
            continue
        if key.startswith(T5_PREFIX):
            path, array = _t5_leaf(key[len(T5_PREFIX) :], value)
            flat[f"{T5}/{path}"] = array
            continue
        path = next((re.sub(p, t, key) for p, t in PARAMETERS if re.fullmatch(p, key)), None)
        if path is not None:
            flat[path] = value
            continue
        module, _, leaf = key.rpartition(".")
        template = next((re.sub(p, t, module) for p, t in MODULES if re.fullmatch(p, module)), None)
        if template is None:
            raise KeyError(f"'{key}' has no counterpart in Octo's parameter tree (not part of upstream Octo)")
        name, array = _module_leaves(module, leaf, value, config.num_heads)
        flat[f"{template}/{name}"] = array
    tree: dict[str, Any] = {}
    for path, array in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = np.ascontiguousarray(array, dtype=np.float32)
    return tree


def _spec(module: str, name: str, **kwargs: Any) -> dict[str, Any]:
    """A ModuleSpec as config.json stores it."""
    return {"module": module, "name": name, "args": [], "kwargs": kwargs}


def release_config(config: OctoConfig) -> dict[str, Any]:
    """config.json of an Octo 1.5 release (the training config's ``to_dict()``) at ``config``'s sizes."""
    tokenizers = "octo.model.components.tokenizers"
    stem_kwargs: dict[str, Any] = {}
    if tuple(config.stem_features) != (32, 96, 192, 384):
        stem_kwargs["features"] = list(config.stem_features)
    if config.image_token_dim != 512:
        stem_kwargs["num_features"] = config.image_token_dim
    observation_tokenizers = {
        camera: _spec(
            tokenizers,
            "ImageTokenizer",
            obs_stack_keys=[f"image_{camera}"],
            task_stack_keys=[f"image_{camera}"] if config.goal_image else [],
            encoder=_spec("octo.model.components.vit_encoders", "SmallStem16", **stem_kwargs),
        )
        for camera in config.cameras
    }
    head_kwargs: dict[str, Any] = dict(
        readout_key="readout_action",
        use_map=False,
        action_horizon=config.action_horizon,
        action_dim=config.action_dim,
        n_diffusion_samples=1,
        dropout_rate=0.0,
    )
    for key, value, default in (
        ("hidden_dim", config.head_hidden_dim, 256),
        ("num_blocks", config.head_num_blocks, 3),
        ("time_dim", config.time_dim, 32),
        ("diffusion_steps", config.diffusion_steps, 20),
        ("max_action", config.max_action, 5.0),
    ):
        if value != default:
            head_kwargs[key] = value
    model = {
        "observation_tokenizers": observation_tokenizers,
        "task_tokenizers": {
            "language": _spec(tokenizers, "LanguageTokenizer", encoder="t5-base", finetune_encoder=False)
        },
        "heads": {
            "action": _spec("octo.model.components.action_heads", "DiffusionActionHead", **head_kwargs)
        },
        "readouts": {"action": config.readout_tokens},
        "token_embedding_size": config.width,
        "transformer_kwargs": {
            "attention_dropout_rate": 0.0,
            "add_position_embedding": False,
            "num_layers": config.num_layers,
            "mlp_dim": config.mlp_dim,
            "num_attention_heads": config.num_heads,
            "dropout_rate": 0.0,
        },
        "max_horizon": config.max_horizon,
        "use_correct_attention": True,
        "repeat_task_tokens": config.repeat_task_tokens,
    }
    return _training_config(config, model)


def _training_config(config: OctoConfig, model: dict[str, Any]) -> dict[str, Any]:
    """The rest of the training config (scripts/configs/config.py updated by octo_pretrain_config.py)."""
    cameras = list(config.cameras)
    augment = {"random_brightness": [0.1], "random_contrast": [0.9, 1.1], "random_saturation": [0.9, 1.1]}
    image_augment = {
        camera: {
            **({"random_resized_crop": {"scale": [0.8, 1.0], "ratio": [0.9, 1.1]}} if i == 0 else {}),
            **augment,
            "random_hue": [0.05],
            "augment_order": (["random_resized_crop"] if i == 0 else [])
            + ["random_brightness", "random_contrast", "random_saturation", "random_hue"],
        }
        for i, camera in enumerate(cameras)
    }
    return {
        "seed": 42,
        "num_steps": SYNTHETIC_STEP,
        "save_dir": None,
        "model": model,
        "window_size": config.window,
        "dataset_kwargs": {
            "oxe_kwargs": {
                "data_mix": "oxe_magic_soup",
                "data_dir": "gs://rail-orca-central2/resize_256_256",
                "load_camera_views": cameras,
                "load_depth": False,
                "force_recompute_dataset_statistics": False,
            },
            "traj_transform_kwargs": {
                "window_size": config.window,
                "action_horizon": config.action_horizon,
                "goal_relabeling_strategy": "uniform",
                "subsample_length": 100,
                "task_augment_strategy": "delete_and_rephrase",
                "task_augment_kwargs": {
                    "keep_image_prob": 0.5,
                    "paraphrases_repo": "rail-berkeley/OXE_paraphrases",
                    "paraphrases_filename": "paraphrases_oxe.pkl",
                    "rephrase_prob": 0.5,
                },
                "max_action_dim": config.action_dim,
            },
            "frame_transform_kwargs": {
                "image_dropout_prob": 0.0,
                "num_parallel_calls": 200,
                "resize_size": {c: list(hw) for c, hw in config.image_size.items()},
                "image_augment_kwargs": image_augment,
            },
            "traj_transform_threads": 48,
            "traj_read_threads": 48,
            "shuffle_buffer_size": 500000,
            "batch_size": 512,
            "balance_weights": True,
        },
        "optimizer": {
            "learning_rate": {
                "name": "rsqrt",
                "init_value": 0.0,
                "peak_value": 3e-4,
                "warmup_steps": 2000,
                "timescale": 10000,
            },
            "weight_decay": 0.1,
            "clip_gradient": 1.0,
            "frozen_keys": ["*hf_model*"],
        },
        "prefetch_num_batches": 0,
        "start_step": None,
        "log_interval": 100,
        "eval_interval": 5000,
        "viz_interval": 20000,
        "save_interval": 10000,
        "val_kwargs": {"val_shuffle_buffer_size": 1000, "num_val_batches": 16},
        "viz_kwargs": {
            "eval_batch_size": 128,
            "trajs_for_metrics": 100,
            "trajs_for_viz": 8,
            "samples_per_state": 8,
        },
        "resume_path": None,
        "text_processor": _spec(
            "octo.data.utils.text_processing",
            "HFTokenizer",
            tokenizer_name="t5-base",
            encode_with_model=False,
            tokenizer_kwargs={
                "max_length": config.text_tokens,
                "padding": "max_length",
                "truncation": True,
                "return_tensors": "np",
            },
        ),
        "pretrained_loaders": [_spec("octo.utils.train_utils", "hf_weights_loader", hf_model="t5-base")],
        "wandb": {"project": "octo", "group": None, "entity": None},
        "wandb_resume_id": None,
        "eval_datasets": ["bridge_dataset"],
    }


def _statistics_entry(stats: NormStats, proprio_dim: int = 7) -> dict[str, Any]:
    """One dataset's entry of dataset_statistics.json (octo.data.utils.data_utils.get_dataset_statistics
    plus the action mask)."""
    zeros = [0.0] * proprio_dim
    return {
        "action": {
            "mean": list(stats.mean),
            "std": list(stats.std),
            "max": list(stats.q99),
            "min": list(stats.q01),
            "p99": list(stats.q99),
            "p01": list(stats.q01),
            "mask": list(stats.mask),
        },
        "proprio": {"mean": zeros, "std": zeros, "max": zeros, "min": zeros, "p99": zeros, "p01": zeros},
        "num_transitions": 1000,
        "num_trajectories": 25,
    }


def release_statistics(config: OctoConfig) -> dict[str, Any]:
    """Two datasets as a pretraining release keys them: Bridge (BRIDGE_ORIG_STATS) and another, whose
    statistics differ (twice the spread, every dimension normalised) so a wrong pick shows."""
    if config.action_dim != len(BRIDGE_ORIG_STATS.mean):
        raise ValueError(f"synthetic statistics are 7-dimensional; config.action_dim is {config.action_dim}")
    other = NormStats(
        q01=tuple(2 * v for v in BRIDGE_ORIG_STATS.q01),
        q99=tuple(2 * v for v in BRIDGE_ORIG_STATS.q99),
        mask=(True,) * config.action_dim,
        mean=tuple(BRIDGE_ORIG_STATS.mean),
        std=tuple(2 * v for v in BRIDGE_ORIG_STATS.std),
    )
    return {"bridge_dataset": _statistics_entry(BRIDGE_ORIG_STATS), OTHER_DATASET: _statistics_entry(other)}


def example_batch(config: OctoConfig) -> dict[str, Any]:
    """One example batch (batch 1) with the shapes and dtypes of Octo's data pipeline."""
    window, horizon = config.window, config.action_horizon
    observation: dict[str, Any] = {
        f"image_{c}": np.zeros((1, window, h, w, 3), np.uint8) for c, (h, w) in config.image_size.items()
    }
    observation["timestep"] = np.zeros((1, window), np.int32)
    observation["pad_mask_dict"] = {key: np.ones((1, window), bool) for key in observation}
    observation["timestep_pad_mask"] = np.ones((1, window), bool)
    observation["task_completed"] = np.zeros((1, window, horizon), bool)
    task: dict[str, Any] = {
        f"image_{c}": np.zeros((1, h, w, 3), np.uint8) for c, (h, w) in config.image_size.items()
    }
    task["timestep"] = np.zeros((1,), np.int32)
    task["language_instruction"] = {
        "input_ids": np.zeros((1, config.text_tokens), np.int32),
        "attention_mask": np.zeros((1, config.text_tokens), np.int32),
    }
    task["pad_mask_dict"] = {key: np.ones((1,), bool) for key in task}
    return {
        "observation": observation,
        "task": task,
        "action": np.zeros((1, window, horizon, config.action_dim), np.float32),
        "action_pad_mask": np.ones((1, window, horizon, config.action_dim), bool),
    }


def save_orbax_params(tree: Mapping[str, Any], directory: Path, use_ocdbt: bool = False) -> None:
    """The parameter tree as orbax's PyTreeCheckpointer writes it (per-array zarr folders by default, as
    the 2024 releases; ``use_ocdbt``: the newer single-store format)."""
    try:
        import orbax.checkpoint as ocp  # lazy: optional convert extra (jax, flax, orbax-checkpoint)
    except ImportError as exc:
        raise ImportError(f"writing an orbax checkpoint needs the convert extra: {CONVERT_EXTRA}") from exc
    checkpointer = ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_ocdbt=use_ocdbt))
    checkpointer.save(str(directory.resolve()), dict(tree))


def write_synthetic_release(
    directory: str | Path,
    config: OctoConfig | None = None,
    *,
    seed: int = 0,
    step: int = SYNTHETIC_STEP,
    use_ocdbt: bool = False,
) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write the release; returns its directory and the state dict its weights came from."""
    try:
        from flax import serialization  # lazy: optional convert extra (jax, flax, orbax-checkpoint)
    except ImportError as exc:
        raise ImportError(f"writing {EXAMPLE_BATCH} needs the convert extra: {CONVERT_EXTRA}") from exc
    config = config or synthetic_config()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    state = OctoModel(config).state_dict()
    save_orbax_params(
        official_params_from_state_dict(state, config), directory / str(step) / ORBAX_ITEM, use_ocdbt
    )
    write_json(directory / RELEASE_CONFIG, release_config(config))
    write_json(directory / DATASET_STATISTICS, release_statistics(config))
    (directory / EXAMPLE_BATCH).write_bytes(serialization.msgpack_serialize(example_batch(config)))
    return directory, state


def write_t5_tokenizer(directory: str | Path, vocab_size: int = int(T5_TINY_CONFIG["vocab_size"])) -> Path:
    """A T5TokenizerFast (unigram, T5's <pad>=0 </s>=1 <unk>=2, metaspace, "</s>" appended) saved with
    save_pretrained: the stand-in for a local copy of "t5-base"'s tokenizer."""
    # lazy: transformers is slow to import; only the synthetic release (tests) builds a tokenizer
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    words = [(f"\u2581{w}", -2.0) for w in dict.fromkeys(random_vocabulary())]
    letters = [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"] + [("\u2581", -6.0)]
    pieces = (specials + words + letters)[:vocab_size]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.normalizer = normalizers.Replace(Regex(" {2,}"), " ")  # T5's, less its precompiled charsmap
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer = T5TokenizerFast(
        tokenizer_object=model, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0
    )
    directory = Path(directory)
    tokenizer.save_pretrained(str(directory))
    return directory
