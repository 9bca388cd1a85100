"""OpenVLA as a policy backend: one camera + instruction in, 7 action bins out (one step).

``make_openvla_backend`` (registered as "openvla") loads an official checkpoint directory into the
native model (:mod:`.modeling`, no remote code). ``infer`` builds the prompt, greedily decodes
``action_dim`` tokens with the KV cache, maps tokens to bin indices (the message's chunk, decoded by
the actuation with the statistics the action space carries) and also reports the unnormalised action
in ``info["action"]``. ``build_random_openvla`` gives the same backend with random weights for
``vla-stack bench policy``. Both take ``compile`` and ``cache``: on a GPU, ``compile=True`` with the
static cache (its default then) reuses one cache and one CUDA graph per prompt-length bucket
(:mod:`.decoding`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_common.action_space import BRIDGE_ORIG_STATS, ActionSpace, NormStats
from vla_policy.backends.openvla import loading
from vla_policy.backends.openvla.configuration import OpenVLAConfig, preset
from vla_policy.backends.openvla.decoding import StaticDecoder, compile_settings
from vla_policy.backends.openvla.processing import (
    DEFAULT_IMAGE_OPTIONS,
    ImageOptions,
    bins_to_actions,
    pixel_values,
    prompt_token_ids,
    synthetic_tokenizer,
    tokens_to_bins,
)
from vla_policy.backends.openvla.remote import make_remote_code_backend
from vla_policy.contract import Observation, PolicyOutput

logger = logging.getLogger(__name__)

CACHE_KINDS = ("dynamic", "static", None)
AUTO_CACHE = "auto"  # "static" with compile, else "dynamic"


class OpenVLABackend:
    """The native OpenVLA model behind the numpy-only backend contract."""

    name = "openvla"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stats: NormStats,
        unnorm_key: str,
        device: str = "cpu",
        camera: str = "primary",
        cache: str | None = AUTO_CACHE,
        compile: bool | str = False,
        image_options: ImageOptions = DEFAULT_IMAGE_OPTIONS,
    ) -> None:
        cache = resolve_cache(cache, compile)
        config: OpenVLAConfig = model.config
        if len(tokenizer) > config.text.vocab_size:
            raise ValueError(
                f"openvla backend: tokenizer has {len(tokenizer)} tokens, more than the model's "
                f"{config.text.vocab_size} embedding rows"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.unnorm_key = unnorm_key
        self.device = device
        self.cache = cache
        self.static_decoder = (
            StaticDecoder(model.language_model, compile=compile, device=device) if cache == "static" else None
        )
        self.image_options = image_options
        self.camera_names = (camera,)
        self.image_size = {camera: (config.image_size, config.image_size)}
        self.action_space = ActionSpace(kind="discrete", n_bins=config.n_action_bins, stats=stats)

    def reset(self, seed: int | None = None) -> None:
        """Greedy decoding keeps no state between calls and draws no random numbers; seeds torch only."""
        if seed is not None:
            torch.manual_seed(seed)

    def infer(self, observation: Observation) -> PolicyOutput:
        camera = self.camera_names[0]
        if camera not in observation.images:
            raise ValueError(
                f"observation lacks camera '{camera}' (has {sorted(observation.images)}); "
                f"the openvla backend expects {list(self.camera_names)}"
            )
        start = time.perf_counter()
        pixels = torch.from_numpy(
            pixel_values(np.asarray(observation.images[camera]), self.config.image_size, self.image_options)
        )
        ids = prompt_token_ids(self.tokenizer, observation.instruction, self.config.prompt_suffix_token_id)
        tokens = self.model.greedy_decode(
            pixels[None].to(self.device),
            torch.tensor([ids], device=self.device),
            max_new_tokens=self.action_space.dim,
            cache=self.cache,
            static_decoder=self.static_decoder,
        )
        token_ids = tokens[0].cpu().numpy().astype(np.int64)
        bins = tokens_to_bins(token_ids, self.config.action_vocab_size, self.config.n_action_bins)
        action = bins_to_actions(bins, self.action_space.stats, self.config.n_action_bins)
        return PolicyOutput(
            chunk=bins[None, :].astype(np.int64),
            info={
                "action": action,
                "tokens": token_ids,
                "unnorm_key": self.unnorm_key,
                "infer_ms": (time.perf_counter() - start) * 1e3,
            },
        )


def make_openvla_backend(
    checkpoint: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    unnorm_key: str | None = None,
    load_in: str | None = None,
    use_remote_code: bool = False,
    camera: str = "primary",
    cache: str | None = AUTO_CACHE,
    compile: bool | str = False,
    resize: str = "bicubic",
    center_crop: bool = False,
    progress: bool = True,
    action_kind: str = "discrete",
    **_: Any,
) -> Any:
    """Load an OpenVLA checkpoint directory (official layout) as a backend.

    Options: ``device`` "cpu" | "cuda"; ``dtype`` "bfloat16" | "float16" | "float32" (default bf16 on
    CUDA, float32 on CPU); ``unnorm_key`` the dataset statistics (needed when the checkpoint has
    several); ``load_in`` None | "8bit" | "4bit" (bitsandbytes, CUDA); ``use_remote_code`` loads the
    hub's own modelling code instead of the native model (runs code from the checkpoint: opt-in only);
    ``camera`` the observation camera; ``cache`` "auto" | "dynamic" | "static" | None (KV cache of the
    decoder; "auto" is "static" with ``compile``, else "dynamic"); ``compile`` False | True | a
    torch.compile backend ("inductor", "aot_eager", "eager") for the one-token decode step (needs the
    static cache). Weights are memory-mapped from the safetensors (bf16 on CPU: no copy), and 4/8-bit
    layers are quantised one by one on the way to the GPU (see :func:`.loading.load_openvla_model`).
    ``resize`` "bicubic" (the Hugging Face processor, as OpenVLA's deploy server) | "jpeg-lanczos3"
    (OpenVLA's Bridge evaluation: JPEG round trip + Lanczos-3) and ``center_crop`` (the 90 % area
    centre crop for fine-tunes trained with image augmentation, e.g. LIBERO; never for openvla-7b on
    Bridge): see :class:`.processing.ImageOptions`.
    OpenVLA emits one discrete step: ``chunk_horizon`` is ignored and so is ``action_kind`` (logged).
    """
    if not checkpoint:
        raise ValueError("openvla backend: option 'checkpoint' (an OpenVLA checkpoint directory) is required")
    root = Path(checkpoint)
    if not root.is_dir():
        raise FileNotFoundError(f"openvla backend: checkpoint directory not found: {root}")
    if action_kind != "discrete":
        logger.info("openvla backend: action_kind '%s' ignored; OpenVLA emits 256-bin indices", action_kind)
    torch_dtype = loading.resolve_dtype(dtype, device)
    image_options = ImageOptions(resize=resize, center_crop=center_crop)
    resolve_cache(cache, compile)  # a bad cache/compile pair fails before gigabytes are read
    loading.check_load_in(load_in, device)
    if use_remote_code:
        return make_remote_code_backend(root, device, torch_dtype, unnorm_key, load_in, camera, image_options)
    config = loading.read_openvla_config(root)
    key, stats = loading.select_norm_stats(root, config, unnorm_key)
    tokenizer = loading.load_tokenizer(root)
    model = loading.load_openvla_model(root, config, device, torch_dtype, load_in=load_in, progress=progress)
    return OpenVLABackend(
        model,
        tokenizer,
        stats,
        key,
        device=device,
        camera=camera,
        cache=cache,
        compile=compile,
        image_options=image_options,
    )


def build_random_openvla(
    size: str = "tiny",
    device: str = "cpu",
    dtype: str | None = None,
    seed: int = 0,
    compile: bool | str = False,
    cache: str | None = AUTO_CACHE,
    **_: Any,
) -> OpenVLABackend:
    """The real architecture at ``size`` ("tiny" | "7b") with random weights and bridge_orig statistics;
    ``compile`` and ``cache`` as for :func:`make_openvla_backend`."""
    config = dataclasses.replace(preset(size), norm_stats=bridge_norm_stats())
    torch.manual_seed(seed)
    model = loading.build_model(config, device, loading.resolve_dtype(dtype, device), initialise=True)
    tokenizer = synthetic_tokenizer(config.action_vocab_size)
    return OpenVLABackend(
        model, tokenizer, BRIDGE_ORIG_STATS, "bridge_orig", device=device, cache=cache, compile=compile
    )


def resolve_cache(cache: str | None, compile: bool | str) -> str | None:
    """The KV cache kind for the options: "auto" is "static" with compile, else "dynamic"; a compiled
    decoder needs the static cache (a growing cache changes shapes, and every step would recompile)."""
    if cache == AUTO_CACHE:
        cache = "static" if compile_settings(compile, "cpu") else "dynamic"
    if cache not in CACHE_KINDS:
        raise ValueError(f"openvla backend: cache '{cache}' is not one of {(AUTO_CACHE, *CACHE_KINDS)}")
    if compile_settings(compile, "cpu") and cache != "static":
        raise ValueError(f"openvla backend: compile needs cache 'static' (or 'auto'), got cache '{cache}'")
    return cache


def bridge_norm_stats() -> dict[str, Any]:
    """bridge_orig statistics in the checkpoint layout ({dataset: {"action": ...}})."""
    return {"bridge_orig": {"action": BRIDGE_ORIG_STATS.as_dict()}}
