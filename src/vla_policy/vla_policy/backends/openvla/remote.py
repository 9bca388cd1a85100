"""Opt-in: run a checkpoint with the modelling code it ships (``use_remote_code=True``).

This executes Python from the checkpoint directory (the hub release's ``modeling_prismatic.py``), so
it is never the default and logs a warning. It exists to compare the native model with a checkpoint's
own code where that code runs. Only local files are read.

- The model class comes from the checkpoint's ``config.json`` ``auto_map`` (the release names it under
  ``AutoModelForVision2Seq``, an auto class transformers 5 no longer has), imported with
  transformers' dynamic-module loader and built with its ``from_pretrained``. The 2024 release's
  code itself needs transformers 4.40 and timm 0.9 (``make crosscheck`` runs it there); with other
  versions the import fails and the error says so.
- The inputs are built natively (prompt ids with the 29871 suffix, 6-channel pixels, the same
  :class:`~.processing.ImageOptions`), not by the shipped processor, whose code imports
  transformers 4.x modules; ``make crosscheck`` compares the two on the same images.
- The reference returns unnormalised actions; they are re-binned with the same statistics, which is
  exact: a decoded bin centre re-encodes to its own bin.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from vla_common.action_space import ActionSpace, quantize_actions
from vla_policy.backends.openvla import loading
from vla_policy.backends.openvla.configuration import OpenVLAConfig
from vla_policy.backends.openvla.processing import (
    DEFAULT_IMAGE_OPTIONS,
    ImageOptions,
    pixel_values,
    prompt_token_ids,
)
from vla_policy.checkpoint import read_json
from vla_policy.contract import Observation, PolicyOutput

logger = logging.getLogger(__name__)

# auto_map entries that may name the action-predicting model class, in order of preference.
MODEL_AUTO_CLASSES = ("AutoModelForVision2Seq", "AutoModelForImageTextToText", "AutoModel")


def model_class_reference(auto_map: dict[str, Any], source: str) -> str:
    """The ``module.Class`` reference of the model class in a config.json ``auto_map``."""
    for key in MODEL_AUTO_CLASSES:
        if key in auto_map:
            reference = auto_map[key]
            return reference[0] if isinstance(reference, list | tuple) else reference
    raise ValueError(
        f"{source}: 'auto_map' names no model class (has {sorted(auto_map)}; expected one of "
        f"{list(MODEL_AUTO_CLASSES)}); load the checkpoint natively (use_remote_code=False)"
    )


class RemoteCodeOpenVLABackend:
    """The checkpoint's own ``predict_action`` behind the backend contract."""

    name = "openvla"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: OpenVLAConfig,
        space: ActionSpace,
        unnorm_key: str,
        device: str,
        dtype: Any,
        camera: str,
        image_options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    ) -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.action_space, self.unnorm_key = space, unnorm_key
        self.device, self.dtype = device, dtype
        self.image_options = image_options
        self.camera_names = (camera,)
        self.image_size = {camera: (config.image_size, config.image_size)}

    def reset(self, seed: int | None = None) -> None:
        pass

    def infer(self, observation: Observation) -> PolicyOutput:
        camera = self.camera_names[0]
        if camera not in observation.images:
            raise ValueError(f"observation lacks camera '{camera}' (has {sorted(observation.images)})")
        start = time.perf_counter()
        pixels = pixel_values(
            np.asarray(observation.images[camera]), self.config.image_size, self.image_options
        )
        ids = prompt_token_ids(self.tokenizer, observation.instruction, self.config.prompt_suffix_token_id)
        input_ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            action = self.model.predict_action(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                pixel_values=torch.from_numpy(pixels)[None].to(self.device, self.dtype),
                unnorm_key=self.unnorm_key,
                do_sample=False,
            )
        action = np.asarray(action, dtype=np.float64)
        bins = quantize_actions(action[None, :], self.action_space)
        return PolicyOutput(
            chunk=bins.astype(np.int64),
            info={
                "action": action,
                "unnorm_key": self.unnorm_key,
                "infer_ms": (time.perf_counter() - start) * 1e3,
            },
        )


def load_remote_model_class(root: Path) -> type:
    """Import the model class the checkpoint's config.json ``auto_map`` names (runs the shipped code)."""
    config_path = root / loading.CONFIG_FILE
    raw_config = read_json(config_path)
    if "auto_map" not in raw_config:
        raise ValueError(
            f"{config_path}: no 'auto_map', so the checkpoint ships no modelling code; "
            "load it natively (use_remote_code=False)"
        )
    reference = model_class_reference(raw_config["auto_map"], str(config_path))
    try:
        return get_class_from_dynamic_module(reference, str(root), local_files_only=True)
    except ImportError as exc:
        raise ImportError(
            f"{root}: the shipped modelling code '{reference}' does not import with transformers "
            f"{transformers.__version__} ({exc}); the 2024 OpenVLA release needs transformers 4.40 and "
            "timm 0.9. Use the native model (use_remote_code=False)"
        ) from exc


def make_remote_code_backend(
    root: Path,
    device: str,
    dtype: Any,
    unnorm_key: str | None,
    load_in: str | None,
    camera: str,
    image_options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
) -> RemoteCodeOpenVLABackend:
    logger.warning(
        "openvla backend: use_remote_code=True executes the modelling code shipped in %s; "
        "use it only with checkpoints you trust (the native model needs none)",
        root,
    )
    model_class = load_remote_model_class(root)
    config = loading.read_openvla_config(root)
    key, stats = loading.select_norm_stats(root, config, unnorm_key)
    kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True}
    if load_in is not None:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_8bit=load_in == "8bit", load_in_4bit=load_in == "4bit"
        )
    model = model_class.from_pretrained(str(root), **kwargs)
    if load_in is None:
        model = model.to(device)
    space = ActionSpace(kind="discrete", n_bins=config.n_action_bins, stats=stats)
    tokenizer = loading.load_tokenizer(root)
    return RemoteCodeOpenVLABackend(
        model.eval(), tokenizer, config, space, key, device, dtype, camera, image_options
    )
