"""An official Octo release (octo-small-1.5, octo-base-1.5, or a fine-tune of them) -> our checkpoint.

The layout ``OctoModel.save_pretrained`` writes (octo-models/octo, ``octo/model/octo_model.py``)::

    RELEASE/config.json               the training config: "model" (ModuleSpecs of the tokenizers,
                                      heads, readouts, transformer sizes, repeat_task_tokens),
                                      "text_processor" (HFTokenizer "t5-base", 16 tokens),
                                      "window_size", "dataset_kwargs" (resize sizes), ...
    RELEASE/dataset_statistics.json   {dataset: {"action": {mean, std, p01, p99, min, max, mask}, ...}}
                                      (a fine-tune's single dataset: {"action": ..., "proprio": ...})
    RELEASE/example_batch.msgpack     one batch (flax msgpack): the input shapes the model was built for
    RELEASE/<step>/default/           the orbax checkpoint of the flax parameters

:func:`convert_release` reads them and writes the backend's checkpoint directory (``checkpoint.py``):
the weights through ``converter.convert_official_params``, the architecture through
``converter.config_from_official_params`` with what the parameter shapes cannot say taken from
config.json and the example batch (repeated task tokens, window, image sizes, action head settings),
the chosen dataset's statistics with their mask, and the T5 tokenizer (upstream downloads
"t5-base" from the hub; here the caller gives a local copy). Reading the orbax checkpoint needs the
optional ``convert`` extra (jax, flax, orbax-checkpoint: requirements-convert.txt); nothing else here
does. Every refusal names the file and says what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_common.action_space import NormStats
from vla_policy.backends.octo.checkpoint import load_model_weights, save_octo_checkpoint
from vla_policy.backends.octo.config import OctoConfig
from vla_policy.backends.octo.converter import (
    config_from_official_params,
    convert_official_params,
    norm_stats_from_octo,
)
from vla_policy.backends.octo.model import OctoModel
from vla_policy.checkpoint import read_json, write_json

RELEASE_CONFIG = "config.json"
DATASET_STATISTICS = "dataset_statistics.json"
EXAMPLE_BATCH = "example_batch.msgpack"
ORBAX_ITEM = "default"  # CheckpointManager's folder of the single (unnamed) item under <step>/
CONVERSION_FILE = "conversion.json"  # written beside our checkpoint: where it came from
CONVERT_EXTRA = "pip install -r requirements-convert.txt (or: pip install 'vla-stack[convert]')"
# What this backend implements of Octo: the modules the release's config.json must name.
IMAGE_TOKENIZER = "ImageTokenizer"
IMAGE_ENCODER = "SmallStem16"
LANGUAGE_TOKENIZER = "LanguageTokenizer"
ACTION_HEAD = "DiffusionActionHead"
TEXT_PROCESSOR = "HFTokenizer"
# DiffusionActionHead's defaults (octo/model/components/action_heads.py) for keys a config omits.
HEAD_DEFAULTS = {"action_horizon": 1, "action_dim": 7, "max_action": 5.0, "diffusion_steps": 20}


class ReleaseLayoutError(ValueError):
    """The directory is not an official Octo release this converter understands."""


@dataclass(frozen=True)
class OfficialRelease:
    """The files of a release, read and checked (the parameters are read separately: they need jax)."""

    directory: Path
    config: dict[str, Any]
    statistics: dict[str, Any]
    step: int
    params_dir: Path
    example_batch: Path | None

    @property
    def model_config(self) -> dict[str, Any]:
        return self.config["model"]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ReleaseLayoutError(f"{path} is missing: an official Octo release holds {RELEASE_LAYOUT}")
    try:
        return read_json(path)
    except ValueError as exc:  # not JSON, or not an object
        raise ReleaseLayoutError(str(exc)) from exc


RELEASE_LAYOUT = f"{RELEASE_CONFIG}, {DATASET_STATISTICS}, {EXAMPLE_BATCH} and <step>/{ORBAX_ITEM}/ (orbax)"


def release_steps(directory: Path) -> list[int]:
    """The checkpoint steps of a release (folders named by a number holding ``default/``), ascending."""
    return sorted(
        int(p.name)
        for p in directory.iterdir()
        if p.is_dir() and p.name.isdigit() and (p / ORBAX_ITEM).is_dir()
    )


def read_release(directory: str | Path, step: int | None = None) -> OfficialRelease:
    """Check the layout and read config.json and dataset_statistics.json; ``step``: latest if None."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ReleaseLayoutError(f"Octo release directory not found: {directory}")
    config = _read_json(directory / RELEASE_CONFIG)
    check_model_config(config, directory / RELEASE_CONFIG)
    statistics = _read_json(directory / DATASET_STATISTICS)
    steps = release_steps(directory)
    if not steps:
        raise ReleaseLayoutError(
            f"{directory}: no <step>/{ORBAX_ITEM}/ checkpoint folder (e.g. 300000/{ORBAX_ITEM}/); "
            f"an official Octo release holds {RELEASE_LAYOUT}"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ReleaseLayoutError(f"{directory}: no checkpoint at step {step}; steps present: {steps}")
    example = directory / EXAMPLE_BATCH
    return OfficialRelease(
        directory,
        config,
        statistics,
        step,
        directory / str(step) / ORBAX_ITEM,
        example if example.is_file() else None,
    )


def _spec_name(spec: Any) -> str:
    """The class a ModuleSpec names ({"module", "name", "args", "kwargs"}), or '' for anything else."""
    return str(spec.get("name", "")) if isinstance(spec, dict) else ""


def check_model_config(config: dict[str, Any], source: Path | str) -> None:
    """Refuse a config.json whose model this backend does not implement (naming what it has)."""
    model = config.get("model")
    if not isinstance(model, dict):
        raise ReleaseLayoutError(f"{source}: no 'model' section (keys: {sorted(config)}); not an Octo config")
    missing = [
        k for k in ("observation_tokenizers", "task_tokenizers", "heads", "readouts") if k not in model
    ]
    if missing:
        raise ReleaseLayoutError(f"{source}: model lacks {missing} (has {sorted(model)})")
    for name, spec in model["observation_tokenizers"].items():
        encoder = _spec_name(spec.get("kwargs", {}).get("encoder")) if isinstance(spec, dict) else ""
        if _spec_name(spec) != IMAGE_TOKENIZER or encoder != IMAGE_ENCODER:
            raise ReleaseLayoutError(
                f"{source}: observation tokenizer '{name}' is {_spec_name(spec) or spec!r} with encoder "
                f"{encoder or '?'}; this backend implements {IMAGE_TOKENIZER} with {IMAGE_ENCODER}"
            )
    tasks = model["task_tokenizers"]
    if set(tasks) != {"language"} or _spec_name(tasks["language"]) != LANGUAGE_TOKENIZER:
        raise ReleaseLayoutError(
            f"{source}: task tokenizers {sorted(tasks)}; this backend implements one 'language' "
            f"{LANGUAGE_TOKENIZER} (T5)"
        )
    heads = model["heads"]
    if set(heads) != {"action"} or _spec_name(heads["action"]) != ACTION_HEAD:
        named = {k: _spec_name(v) for k, v in heads.items()}
        raise ReleaseLayoutError(
            f"{source}: heads {named}; this backend implements one 'action' {ACTION_HEAD}"
        )
    if set(model["readouts"]) != {"action"}:
        raise ReleaseLayoutError(f"{source}: readouts {model['readouts']}; this backend reads out 'action'")
    processor = config.get("text_processor")
    if _spec_name(processor) != TEXT_PROCESSOR:
        raise ReleaseLayoutError(
            f"{source}: text_processor {_spec_name(processor) or processor!r}; this backend needs "
            f"{TEXT_PROCESSOR} (the T5 tokenizer)"
        )


def head_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The DiffusionActionHead kwargs that size or shape the head (upstream defaults filled in)."""
    kwargs = dict(config["model"]["heads"]["action"].get("kwargs", {}))
    if "pred_horizon" in kwargs:  # upstream's shim for old configs (load_pretrained)
        kwargs["action_horizon"] = kwargs.pop("pred_horizon")
    return {key: kwargs.get(key, default) for key, default in HEAD_DEFAULTS.items()}


def text_tokens(config: dict[str, Any]) -> int | None:
    """The text processor's max_length (Octo pads/truncates the instruction to it)."""
    kwargs = config["text_processor"].get("kwargs", {}).get("tokenizer_kwargs", {})
    return int(kwargs["max_length"]) if "max_length" in kwargs else None


def example_batch_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """``observation/image_primary`` -> shape, etc., of the release's example batch (needs flax)."""
    try:
        from flax import serialization  # lazy: optional convert extra (jax, flax, orbax-checkpoint)
    except ImportError as exc:
        raise ImportError(f"reading {path.name} needs the convert extra: {CONVERT_EXTRA}") from exc
    tree = serialization.msgpack_restore(path.read_bytes())

    shapes: dict[str, tuple[int, ...]] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}/{key}" if prefix else str(key))
        elif hasattr(node, "shape"):
            shapes[prefix] = tuple(int(n) for n in node.shape)

    walk(tree, "")
    if "tasks" in {k.split("/")[0] for k in shapes}:  # upstream's "tasks" -> "task" shim
        shapes = {("task" + k[5:] if k.startswith("tasks/") else k): v for k, v in shapes.items()}
    return shapes


def input_settings(release: OfficialRelease) -> dict[str, Any]:
    """Window and per-camera image sizes: from the example batch when present (what upstream builds the
    model for), else from config.json (window_size, dataset_kwargs.frame_transform_kwargs.resize_size)."""
    settings: dict[str, Any] = {}
    sizes: dict[str, tuple[int, int]] = {}
    if release.example_batch is not None:
        shapes = example_batch_shapes(release.example_batch)
        for key, shape in shapes.items():
            if key.startswith("observation/image_") and len(shape) == 5:
                sizes[key[len("observation/image_") :]] = (shape[2], shape[3])
        for mask in ("observation/timestep_pad_mask", "observation/pad_mask"):  # the latter: old releases
            if mask in shapes and "window" not in settings:
                settings["window"] = shapes[mask][1]
    if "window" not in settings and "window_size" in release.config:
        settings["window"] = int(release.config["window_size"])
    if not sizes:
        resize = release.config.get("dataset_kwargs", {}).get("frame_transform_kwargs", {}).get("resize_size")
        if isinstance(resize, dict):
            sizes = {camera: (int(hw[0]), int(hw[1])) for camera, hw in resize.items()}
    settings["camera_sizes"] = sizes
    return settings


def select_statistics(
    statistics: dict[str, Any], dataset: str | None, source: Path | str
) -> tuple[str, NormStats]:
    """The action statistics of ``dataset`` (Octo's unnormalisation key) as NormStats.

    A pretraining release keys them by dataset ("bridge_dataset", "fractal20220817_data", ...); a
    fine-tune holds one dataset's entry directly ({"action": ..., "proprio": ...}), named "default"
    here unless ``dataset`` names it. As upstream's ``sample_actions``: a missing mask means every
    dimension is unnormalised.
    """
    if "action" in statistics and isinstance(statistics["action"], dict):
        key, entry = dataset or "default", statistics
    else:
        available = sorted(k for k, v in statistics.items() if isinstance(v, dict) and "action" in v)
        if not available:
            raise ReleaseLayoutError(
                f"{source}: no dataset with 'action' statistics (keys: {sorted(statistics)})"
            )
        if dataset is None:
            if len(available) != 1:
                raise ReleaseLayoutError(
                    f"{source}: {len(available)} datasets; pick one with --dataset, e.g. "
                    f"{'bridge_dataset' if 'bridge_dataset' in available else available[0]} "
                    f"(available: {available})"
                )
            dataset = available[0]
        if dataset not in available:
            raise ReleaseLayoutError(f"{source}: dataset '{dataset}' not found; available: {available}")
        key, entry = dataset, statistics[dataset]
    try:
        return key, norm_stats_from_octo({"action": entry["action"]})
    except (KeyError, ValueError) as exc:
        raise ReleaseLayoutError(f"{source}: dataset '{key}': {exc}") from exc


def config_overrides(release: OfficialRelease) -> dict[str, Any]:
    """OctoConfig fields config.json and the example batch set that the parameter shapes cannot."""
    model = release.model_config
    head = head_settings(release.config)
    overrides: dict[str, Any] = {
        "action_horizon": int(head["action_horizon"]),
        "action_dim": int(head["action_dim"]),
        "max_action": float(head["max_action"]),
        "diffusion_steps": int(head["diffusion_steps"]),
        "num_inference_steps": int(head["diffusion_steps"]),  # upstream samples every training step
        "scheduler": "ddpm",
        "prediction_type": "epsilon",
        # OctoModule.create's defaults when config.json lacks them (Octo 1.0's configs)
        "repeat_task_tokens": bool(model.get("repeat_task_tokens", False)),
        "use_correct_attention": bool(model.get("use_correct_attention", False)),
        "text_encoder": "t5",
    }
    window = input_settings(release).get("window")
    if window is not None:
        overrides["window"] = int(window)
    return overrides


def load_release_params(release: OfficialRelease) -> dict[str, Any]:
    """The flax parameter tree of the release's checkpoint, as nested dicts of numpy arrays."""
    try:
        import orbax.checkpoint as ocp  # lazy: optional convert extra (jax, flax, orbax-checkpoint)
    except ImportError as exc:
        raise ImportError(
            f"reading the orbax checkpoint {release.params_dir} needs the convert extra "
            f"({exc.name} is missing): {CONVERT_EXTRA}"
        ) from exc
    tree = ocp.PyTreeCheckpointer().restore(str(release.params_dir))

    def to_numpy(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): to_numpy(v) for k, v in node.items()}
        return np.asarray(node)

    return to_numpy(tree)


def octo_config_from_release(release: OfficialRelease, params: dict[str, Any]) -> OctoConfig:
    """The architecture from the parameter shapes, with config.json's and the example batch's settings."""
    config = config_from_official_params(params, **config_overrides(release))
    sizes = input_settings(release)["camera_sizes"]
    if sizes:
        missing = [c for c in config.cameras if c not in sizes]
        if missing:
            raise ReleaseLayoutError(
                f"{release.directory}: cameras {missing} have parameters but no image size in "
                f"{EXAMPLE_BATCH} or config.json's resize_size (has {sorted(sizes)})"
            )
        config = OctoConfig.from_dict(
            {**config.to_dict(), "image_sizes": [list(sizes[c]) for c in config.cameras]},
            source=str(release.directory),
        )
    tokens = text_tokens(release.config)
    if tokens is not None and tokens != config.text_tokens:
        raise ReleaseLayoutError(
            f"{release.directory}: text_processor max_length {tokens} but the language positional "
            f"embedding holds {config.text_tokens} tokens"
        )
    return config


def load_tokenizer(tokenizer_dir: str | Path, vocab_rows: int) -> Any:
    """A local T5 tokenizer directory (the files of the hub's "t5-base": tokenizer.json or spiece.model)."""
    path = Path(tokenizer_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"--tokenizer {path}: not a directory; give a local copy of the 't5-base' tokenizer "
            "(tokenizer.json, or spiece.model with sentencepiece installed)"
        )
    from transformers import AutoTokenizer  # lazy: transformers is slow to import

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if len(tokenizer) > vocab_rows:
        raise ValueError(
            f"--tokenizer {path}: {len(tokenizer)} tokens, more than the T5 embedding's {vocab_rows} rows; "
            "this is not the tokenizer of the release's text encoder"
        )
    return tokenizer


@dataclass(frozen=True)
class ConversionResult:
    directory: Path
    config: OctoConfig
    dataset: str
    step: int
    parameters: int


def convert_release(
    release_dir: str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    *,
    dataset: str | None = None,
    step: int | None = None,
) -> ConversionResult:
    """Convert an official Octo release into the backend's checkpoint directory ``out_dir``."""
    release = read_release(release_dir, step)
    key, stats = select_statistics(release.statistics, dataset, release.directory / DATASET_STATISTICS)
    params = load_release_params(release)
    config = octo_config_from_release(release, params)
    if len(stats.mean) != config.action_dim:
        raise ReleaseLayoutError(
            f"{release.directory / DATASET_STATISTICS}: dataset '{key}' has {len(stats.mean)} action "
            f"dimensions, the model {config.action_dim}"
        )
    tokenizer = load_tokenizer(tokenizer_dir, int(config.t5_config["vocab_size"]))
    model = OctoModel(config)
    load_model_weights(model, convert_official_params(params), f"{release.params_dir} (step {release.step})")
    out = save_octo_checkpoint(model.eval(), config, stats, out_dir, tokenizer=tokenizer, stats_key=key)
    parameters = sum(p.numel() for p in model.parameters())
    write_json(
        out / CONVERSION_FILE,
        {
            "source": str(release.directory.resolve()),
            "step": release.step,
            "dataset": key,
            "tokenizer": str(Path(tokenizer_dir).expanduser().resolve()),
            "parameters": parameters,
        },
    )
    return ConversionResult(out, config, key, release.step, parameters)
