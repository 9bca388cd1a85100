"""The Octo policy backend: a window of observations (+ proprio) and an instruction in, a chunk out.

``make_octo_backend(checkpoint=DIR, device=..., chunk_horizon=..., num_steps=..., scheduler=...,
dtype=..., unnorm_key=..., seed=...)`` is the registry's factory ("octo"). ``build_random_octo``
builds the real architecture at a size with random weights, for ``vla-stack bench policy``.

The chunk is unnormalised (a * std + mean where the mask is True) into Bridge units with the
gripper in [0, 1]: what the actuation's temporal ensembling consumes.

Cameras: an observation may lack some of the model's cameras (Bridge has no wrist camera): the
missing camera gets a blank image and a pad mask, as Octo's ``pad_mask_dict``, so the model does
not attend to it; at least one camera must be there. Precision: float32 unless ``dtype`` asks for
another, on CUDA too, with TF32 matmuls allowed there (``octo_dtype``).

Real-time chunking (``guides_chunks = True``): with ``observation.committed`` (the previous chunk's
actions on the new chunk's steps, ``contract.CommittedActions``) the diffusion sampler is inpainted
toward them (``realtime_chunking``): the frozen prefix comes out equal to the committed actions and
the overlap bends toward them, over the model's whole ``action_horizon`` (frozen and overlap from
``chunk_join.join_extent``); ``info`` reports ``rtc_frozen``, ``rtc_overlap`` and
``rtc_frozen_clamped`` (0, 0, False without ``committed``, whose chunk is exactly the unguided one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla_common.action_space import BRIDGE_ORIG_STATS, ActionSpace, NormStats
from vla_policy.backends.octo.action_head import DiffusionSampler
from vla_policy.backends.octo.checkpoint import load_octo_checkpoint
from vla_policy.backends.octo.config import SCHEDULERS, OctoConfig, octo_preset
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.processor import ObservationHistory, prepare_image, unnormalize_actions
from vla_policy.backends.octo.realtime_chunking import PrefixGuide
from vla_policy.backends.octo.tokenizers import (
    build_word_tokenizer,
    load_text_tokenizer,
    tokenize_instructions,
)
from vla_policy.contract import CommittedActions, Observation, PolicyOutput
from vla_policy.torch_dtype import resolve_dtype

PROPRIO = "__proprio__"  # key of the proprio in the observation history
PRESENT = "__present__/"  # key prefix of a camera's presence flag in the observation history


def octo_dtype(dtype: Any, device: str) -> torch.dtype:
    """Octo's precision: float32 unless asked, also on CUDA, where float32 matmuls may use TF32.
    In bfloat16 the cross-check's model (docs/crosscheck.md) moves its readouts by 0.1 and its DDPM
    chunk by 0.7 (normalised units) from upstream's float32; a bfloat16 kernel alone would move the
    diffusion head's Fourier time features by ~0.2 (they stay float32: ``FourierFeatures``)."""
    resolved = resolve_dtype(dtype or "float32", device)
    if str(device).startswith("cuda") and resolved == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return resolved


class OctoBackend:
    """PolicyBackend over an :class:`OctoModel` (see the module docstring)."""

    name = "octo"
    guides_chunks = True  # infer() inpaints toward observation.committed (real-time chunking)

    def __init__(
        self,
        model: OctoModel,
        tokenizer: Any,
        stats: NormStats,
        *,
        device: str = "cpu",
        chunk_horizon: int | None = None,
        num_steps: int | None = None,
        scheduler: str | None = None,
        seed: int = 0,
    ) -> None:
        config = model.config
        self.config = config
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.camera_names = tuple(config.cameras)
        self.image_size = config.image_size
        self.image_crop = config.image_crop
        self.action_space = ActionSpace(kind="continuous", stats=stats)
        if len(stats.mean) != config.action_dim:
            raise ValueError(f"norm stats have {len(stats.mean)} dimensions, the model {config.action_dim}")
        horizon = config.action_horizon if chunk_horizon is None else int(chunk_horizon)
        if not 1 <= horizon <= config.action_horizon:
            raise ValueError(
                f"chunk_horizon must be in 1..{config.action_horizon} for this model, got {horizon}"
            )
        self.horizon = horizon
        self.sampler = DiffusionSampler(config, scheduler, num_steps)
        self.history = ObservationHistory(config.window)
        self.generator = torch.Generator(device=device)
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)
        self._text_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def reset(self, seed: int | None = None) -> None:
        """New episode: clear the history; reseed the sampler (a fresh random seed when None)."""
        self.history.reset()
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.generator.manual_seed(self.seed)

    def _text_embedding(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen encoder's states and the token mask of ``instruction`` (cached)."""
        if instruction not in self._text_cache:
            tokens = tokenize_instructions(self.tokenizer, [instruction], self.config.text_tokens)
            tokens = {k: v.to(self.device) for k, v in tokens.items()}
            # keep only the current instruction
            self._text_cache = {instruction: (self.model.encode_text(**tokens), tokens["attention_mask"])}
        return self._text_cache[instruction]

    def _images(self, images: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's input of each camera that is there (an absent one is padded later)."""
        present = [c for c in self.camera_names if images.get(c) is not None]
        if not present:
            raise ValueError(
                f"observation has none of the cameras {list(self.camera_names)} (got {sorted(images)}); "
                "the octo backend needs at least one"
            )
        return {c: prepare_image(images[c], self.image_size[c], c, self.image_crop[c]) for c in present}

    def _proprio(self, proprio: np.ndarray | None) -> np.ndarray:
        dim = self.config.proprio_dim
        values = None if proprio is None else np.asarray(proprio, dtype=np.float32).reshape(-1)
        if values is None or values.shape[0] < dim or not np.all(np.isfinite(values[:dim])):
            got = None if values is None else values.tolist()
            raise ValueError(
                f"observation.proprio: this model needs {dim} finite joint positions "
                f"(6 arm joints + left finger), got {got}"
            )
        return values[:dim]

    def infer(self, observation: Observation) -> PolicyOutput:
        images = self._images(observation.images)
        return self.infer_prepared(
            images, observation.proprio, observation.instruction, committed=observation.committed
        )

    @torch.no_grad()
    def infer_prepared(
        self,
        images: dict[str, np.ndarray],
        proprio: np.ndarray | None,
        instruction: str,
        committed: CommittedActions | None = None,
    ) -> PolicyOutput:
        """``infer`` on images already cropped and resized to the model's input (``prepare_image``),
        as demonstrations store them; a camera left out is absent (blank image, pad mask).
        ``committed``: real-time chunking, as ``observation.committed`` (module docstring)."""
        start = time.perf_counter()
        guide, rtc_info = None, {"rtc_frozen": 0, "rtc_overlap": 0, "rtc_frozen_clamped": False}
        if committed is not None:  # checked before the history takes the frame
            guide, extent = PrefixGuide.from_committed(
                committed, self.action_space.stats, self.config.action_horizon
            )
            rtc_info = extent.info()
        inputs = camera_inputs(images, self.camera_names, self.image_size)
        if self.config.proprio_dim:
            inputs[PROPRIO] = self._proprio(proprio)
        frames, timestep_mask = self.history.add(inputs)
        proprio = frames.pop(PROPRIO, None)
        present = {c: frames.pop(PRESENT + c) for c in self.camera_names}
        images = {c: torch.from_numpy(v)[None].to(self.device) for c, v in frames.items()}
        mask = torch.from_numpy(timestep_mask)[None].to(self.device)
        camera_masks = None  # every camera there: the model's plain path
        if not all(flags.all() for flags in present.values()):
            camera_masks = {c: torch.from_numpy(v)[None].to(self.device) for c, v in present.items()}
        proprio_t = None if proprio is None else torch.from_numpy(proprio)[None].to(self.device)
        text, text_mask = self._text_embedding(instruction)
        readout = self.model(images, text, mask, camera_masks, proprio=proprio_t, text_mask=text_mask)
        normalized = self.model.sample_actions(readout[:, -1], self.sampler, self.generator, guide=guide)
        chunk = unnormalize_actions(
            normalized[0, : self.horizon].cpu().numpy(), self.action_space.stats, self.action_space.dim_names
        )
        info = {
            "seed": self.seed,
            "scheduler": self.sampler.kind,
            "num_steps": self.sampler.num_steps,
            "pad_timesteps": int((~timestep_mask).sum()),
            "absent_cameras": [c for c in self.camera_names if not present[c][-1]],
            **rtc_info,
            "infer_ms": (time.perf_counter() - start) * 1e3,
        }
        return PolicyOutput(chunk=chunk, info=info)


def camera_inputs(
    images: Mapping[str, np.ndarray], cameras: tuple[str, ...], sizes: Mapping[str, tuple[int, int]]
) -> dict[str, np.ndarray]:
    """One history entry: each camera's image (blank where absent) and its presence flag."""
    inputs: dict[str, np.ndarray] = {}
    for camera in cameras:
        image = images.get(camera)
        inputs[camera] = np.zeros((*sizes[camera], 3), np.uint8) if image is None else image
        inputs[PRESENT + camera] = np.array(image is not None)
    return inputs


def make_octo_backend(
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    action_kind: str = "continuous",
    chunk_horizon: int | None = None,
    num_steps: int | None = None,
    scheduler: str | None = None,
    dtype: str | None = None,
    unnorm_key: str | None = None,
    seed: int = 0,
    compile: bool = False,
    **_: Any,
) -> OctoBackend:
    """The registry's factory: load an Octo checkpoint directory (see ``checkpoint.py``).

    ``compile``: ``torch.compile`` the transformer and the action head (shapes are fixed by the
    checkpoint's window, cameras and chunk, so each compiles once, at the first inference)."""
    if action_kind != "continuous":
        raise ValueError(f"octo backend: action_kind '{action_kind}' is not supported; Octo is continuous")
    if not checkpoint:
        raise ValueError("octo backend: the 'checkpoint' option (a checkpoint directory) is required")
    if scheduler is not None and scheduler not in SCHEDULERS:
        raise ValueError(f"octo backend: scheduler '{scheduler}' is not one of {SCHEDULERS}")
    loaded = load_octo_checkpoint(
        checkpoint, device=device, dtype=octo_dtype(dtype, device), unnorm_key=unnorm_key
    )
    if compile:
        compile_octo(loaded.model)
    return OctoBackend(
        loaded.model,
        loaded.tokenizer,
        loaded.stats,
        device=device,
        chunk_horizon=chunk_horizon,
        num_steps=num_steps,
        scheduler=scheduler,
        seed=seed,
    )


def build_random_octo(
    size: str = "small",
    device: str = "cpu",
    dtype: str | None = None,
    seed: int = 0,
    compile: bool = False,
    **overrides: Any,
) -> OctoBackend:
    """The real architecture at ``size`` (tiny | small | base) with random weights, ready to infer.

    The tokenizer is a word-level stand-in with T5's vocabulary size (no T5 tokenizer can be
    downloaded); the 16 padded tokens cost the same whatever ids they hold.
    """
    config: OctoConfig = octo_preset(size, **overrides)
    torch.manual_seed(seed)
    model = OctoModel(config).to(device=device, dtype=octo_dtype(dtype, device)).eval()
    if config.text_encoder == "t5":
        tokenizer = build_word_tokenizer(random_vocabulary(), vocab_size=int(config.t5_config["vocab_size"]))
    else:
        tokenizer = load_text_tokenizer(config)  # MiniLM's own, from its package
    if compile:
        compile_octo(model)
    return OctoBackend(model, tokenizer, BRIDGE_ORIG_STATS, device=device, seed=seed)


def compile_octo(model: OctoModel) -> None:
    """``torch.compile`` the parts that run every inference: the transformer and the action head."""
    model.transformer = torch.compile(model.transformer)
    model.action_head = torch.compile(model.action_head)


def random_vocabulary() -> list[str]:
    """Words of typical Bridge instructions for the stand-in tokenizer."""
    return (
        "put pick place move open close the a an in on into onto of to from red blue green yellow cube "
        "bowl plate spoon towel carrot eggplant basket pot pan drawer block cloth sink left right top"
    ).split()
