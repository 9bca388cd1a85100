"""Opt-in: run a checkpoint with the modelling code it ships (``use_remote_code=True``).

This executes Python from the checkpoint directory (the hub release's ``modeling_prismatic.py``), so
it is never the default and logs a warning. It exists to cross-check the native model against the
reference on a machine where that code runs (the release pins transformers 4.40; newer versions may
refuse it). Only local files are read. The reference returns unnormalised actions; they are re-binned
with the same statistics, which is exact: a decoded bin centre re-encodes to its own bin.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import transformers
from PIL import Image

from vla_common.action_space import ActionSpace, quantize_actions
from vla_policy.backends.openvla import loading
from vla_policy.backends.openvla.processing import build_prompt
from vla_policy.checkpoint import read_json
from vla_policy.contract import Observation, PolicyOutput

logger = logging.getLogger(__name__)


class RemoteCodeOpenVLABackend:
    """The checkpoint's own ``predict_action`` behind the backend contract."""

    name = "openvla"

    def __init__(
        self,
        model: Any,
        processor: Any,
        space: ActionSpace,
        unnorm_key: str,
        device: str,
        dtype: Any,
        camera: str,
    ) -> None:
        self.model, self.processor = model, processor
        self.action_space, self.unnorm_key = space, unnorm_key
        self.device, self.dtype = device, dtype
        self.camera_names = (camera,)
        self.image_size = {camera: (224, 224)}

    def reset(self, seed: int | None = None) -> None:
        pass

    def infer(self, observation: Observation) -> PolicyOutput:
        camera = self.camera_names[0]
        if camera not in observation.images:
            raise ValueError(f"observation lacks camera '{camera}' (has {sorted(observation.images)})")
        start = time.perf_counter()
        image = Image.fromarray(np.asarray(observation.images[camera]))
        inputs = self.processor(build_prompt(observation.instruction), image).to(
            self.device, dtype=self.dtype
        )
        action = np.asarray(self.model.predict_action(**inputs, unnorm_key=self.unnorm_key, do_sample=False))
        bins = quantize_actions(action[None, :], self.action_space)
        return PolicyOutput(
            chunk=bins.astype(np.int64),
            info={
                "action": action,
                "unnorm_key": self.unnorm_key,
                "infer_ms": (time.perf_counter() - start) * 1e3,
            },
        )


def make_remote_code_backend(
    root: Path, device: str, dtype: Any, unnorm_key: str | None, load_in: str | None, camera: str
) -> RemoteCodeOpenVLABackend:
    logger.warning(
        "openvla backend: use_remote_code=True executes the modelling code shipped in %s; "
        "use it only with checkpoints you trust (the native model needs none)",
        root,
    )
    raw_config = read_json(root / loading.CONFIG_FILE)
    if "auto_map" not in raw_config:
        raise ValueError(
            f"{root / loading.CONFIG_FILE}: no 'auto_map', so the checkpoint ships no modelling code; "
            "load it natively (use_remote_code=False)"
        )
    config = loading.read_openvla_config(root)
    key, stats = loading.select_norm_stats(root, config, unnorm_key)
    auto_class = (
        getattr(transformers, "AutoModelForVision2Seq", None) or transformers.AutoModelForImageTextToText
    )
    opted_in = True  # reached only through the explicit use_remote_code option
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "trust_remote_code": opted_in, "local_files_only": True}
    if load_in is not None:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_8bit=load_in == "8bit", load_in_4bit=load_in == "4bit"
        )
    processor = transformers.AutoProcessor.from_pretrained(
        str(root), trust_remote_code=opted_in, local_files_only=True
    )
    model = auto_class.from_pretrained(str(root), **kwargs)
    if load_in is None:
        model = model.to(device)
    space = ActionSpace(kind="discrete", n_bins=config.n_action_bins, stats=stats)
    return RemoteCodeOpenVLABackend(model.eval(), processor, space, key, device, dtype, camera)
