"""The Octo model: tokenizers -> token groups with positional embeddings -> block transformer -> head.

Read top to bottom: ``OctoModel.encode_text`` runs the frozen text encoder once per instruction;
``OctoModel.forward`` tokenises a window of observations, projects every group to the width, adds
learned positional embeddings (task: one per token; observations and readouts: one per timestep and
token, for ``max_horizon`` timesteps of which the window's first ones are used), with
``repeat_task_tokens`` appends the embedded task tokens to every timestep (Octo 1.5), runs the
block-wise causal transformer and mean-pools each timestep's readout tokens. A camera whose image is
absent (``camera_masks``) is a pad mask on its tokens, as Octo's ``pad_mask_dict``: nobody attends
to them, so their pixels do not matter. ``sample_actions``
runs the diffusion head on the last timestep's readout. With ``proprio_dim`` > 0 each timestep also
has one proprio token (Octo's low-dimensional tokenizer: z-scored with statistics stored as
buffers, then a linear projection), after the camera tokens. With ``film`` on, the instruction
also conditions every image stem (the mean of the encoder's states over the instruction's tokens).
With ``object_slots`` > 0 each timestep also has that many object tokens (``object_slots``), read
from the timestep's image tokens, after the proprio token.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from vla_policy.backends.octo.action_head import DiffusionActionHead, DiffusionSampler
from vla_policy.backends.octo.config import OctoConfig
from vla_policy.backends.octo.object_slots import ObjectSlots
from vla_policy.backends.octo.realtime_chunking import PrefixGuide
from vla_policy.backends.octo.tokenizers import ImageTokenizer, LanguageEncoder
from vla_policy.backends.octo.transformer import BlockTransformer, TokenGroup, block_causal_mask, octo_groups

READOUT = "action"


def pooled_text(text_embedding: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, tokens, dim) -> (B, dim): the mean over the instruction's tokens (sentence-transformers'
    pooling); over all tokens when no mask is given."""
    if text_mask is None:
        return text_embedding.mean(dim=1)
    weights = text_mask.to(text_embedding.dtype)[:, :, None]
    return (text_embedding * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def octo_token_groups(config: OctoConfig) -> list[TokenGroup]:
    """The transformer's token groups of a configuration, in sequence order (see ``transformer``)."""
    return octo_groups(
        {"language": config.text_tokens},
        config.obs_tokens(),
        {READOUT: config.readout_tokens},
        repeat_task_tokens=config.repeat_task_tokens,
    )


def octo_attention_mask(
    config: OctoConfig,
    window: int,
    timestep_mask: torch.Tensor,
    camera_masks: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(B, L, L): the block-wise causal rules AND the keys that are not padding.

    ``timestep_mask`` (B, T) is False at pad timesteps; ``camera_masks[camera]`` (B, T) is False
    where that camera's image is missing. Task, repeated task and readout tokens are never padding
    here: as in Octo, the readouts' mask is all ones and the repeated task tokens carry the task's
    mask, not the timestep's (Octo masks the language group only when a task has no instruction,
    which this model does not take).
    """
    groups = octo_token_groups(config)
    rules = block_causal_mask(groups, window, config.use_correct_attention)
    rules = torch.from_numpy(rules).to(timestep_mask.device)
    batch = timestep_mask.shape[0]
    unknown = sorted(set(camera_masks or {}) - set(config.cameras))
    if unknown:
        raise ValueError(f"camera_masks: unknown camera(s) {unknown}; cameras: {list(config.cameras)}")
    per_step = []
    for group in groups:
        if group.is_prefix:
            continue
        if group.repeats_task or group.name.startswith("readout_"):
            present = torch.ones_like(timestep_mask)
        else:
            present = timestep_mask
            camera = group.name.removeprefix("obs_")
            if camera_masks is not None and camera in camera_masks:
                present = present & camera_masks[camera].to(present.device, torch.bool)
        per_step.append(present[:, :, None].expand(batch, window, group.num_tokens))
    keys = torch.cat(per_step, dim=2).reshape(batch, -1)
    prefix = torch.ones(batch, config.text_tokens, dtype=torch.bool, device=keys.device)
    keys = torch.cat([prefix, keys], dim=1)
    return rules[None] & keys[:, None, :]


class OctoModel(nn.Module):
    def __init__(self, config: OctoConfig) -> None:
        super().__init__()
        self.config = config
        width, horizon = config.width, config.max_horizon
        self.language = LanguageEncoder(config)
        self.task_projection = nn.Linear(self.language.dim, width)
        self.task_pos_embedding = nn.Parameter(torch.randn(1, config.text_tokens, width) * 0.02)
        film_dim = self.language.dim if config.film else 0
        self.image_tokenizers = nn.ModuleDict(
            {c: ImageTokenizer(config, config.patch_size_of(c), film_dim) for c in config.cameras}
        )
        self.obs_projections = nn.ModuleDict(
            {c: nn.Linear(config.image_token_dim, width) for c in config.cameras}
        )
        self.obs_pos_embeddings = nn.ParameterDict(
            {
                c: nn.Parameter(torch.randn(1, horizon, n, width) * 0.02)
                for c, n in config.tokens_per_camera().items()
            }
        )
        if config.proprio_dim:
            self.proprio_projection = nn.Linear(config.proprio_dim, width)
            self.proprio_pos_embedding = nn.Parameter(torch.randn(1, horizon, 1, width) * 0.02)
            # z-scoring of the proprio, set from the training data and saved with the weights
            self.register_buffer("proprio_mean", torch.zeros(config.proprio_dim))
            self.register_buffer("proprio_std", torch.ones(config.proprio_dim))
        if config.object_slots:
            self.object_slots = ObjectSlots(width, config.object_slots, config.num_heads, horizon)
        self.readout_pos_embedding = nn.Parameter(
            torch.randn(1, horizon, config.readout_tokens, width) * 0.02
        )
        self.transformer = BlockTransformer(width, config.num_layers, config.num_heads, config.mlp_dim)
        self.action_head = DiffusionActionHead(config)

    def token_groups(self) -> list[TokenGroup]:
        return octo_token_groups(self.config)

    @torch.no_grad()
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Frozen encoder output (B, text_tokens, encoder dim); cache it per instruction."""
        return self.language(input_ids, attention_mask)

    def attention_mask(
        self, window: int, timestep_mask: torch.Tensor, camera_masks: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """(B, L, L): see ``octo_attention_mask``."""
        return octo_attention_mask(self.config, window, timestep_mask, camera_masks)

    def forward(
        self,
        images: Mapping[str, torch.Tensor],
        text_embedding: torch.Tensor,
        timestep_mask: torch.Tensor,
        camera_masks: Mapping[str, torch.Tensor] | None = None,
        proprio: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        return_object_tokens: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """images[camera] (B, T, H, W, 3) with values 0..255, camera_masks[camera] (B, T) False where
        that camera is absent (its image: any, e.g. zeros), proprio (B, T, proprio_dim) in raw
        units when the model takes it, text_mask (B, text_tokens) the tokenizer's attention mask
        (FiLM pools over the unmasked tokens; all of them when None); returns readout embeddings
        (B, T, width); with ``return_object_tokens`` also the object slots (B, T, slots, width)."""
        cameras = self.config.cameras
        batch, window = images[cameras[0]].shape[:2]
        if window > self.config.max_horizon:
            raise ValueError(f"window of {window} timesteps exceeds max_horizon {self.config.max_horizon}")
        dtype = self.task_pos_embedding.dtype
        task = self.task_projection(text_embedding.to(dtype)) + self.task_pos_embedding
        film = pooled_text(text_embedding, text_mask) if self.config.film else None
        per_step = []
        for camera in cameras:
            tokens = self.obs_projections[camera](self.image_tokenizers[camera](images[camera], film))
            per_step.append(tokens + self.obs_pos_embeddings[camera][:, :window])
        if self.config.proprio_dim:
            if proprio is None or proprio.shape[-1] != self.config.proprio_dim:
                got = None if proprio is None else list(proprio.shape)
                raise ValueError(f"proprio: expected (B, T, {self.config.proprio_dim}), got {got}")
            scaled = ((proprio.to(dtype) - self.proprio_mean) / self.proprio_std)[:, :, None]
            per_step.append(self.proprio_projection(scaled) + self.proprio_pos_embedding[:, :window])
        objects = None
        if self.config.object_slots:
            image_tokens = per_step[: len(cameras)]
            present = None
            if camera_masks is not None:  # the slots read no absent camera
                present = torch.cat(
                    [
                        camera_masks.get(c, torch.ones_like(timestep_mask))
                        .bool()[:, :, None]
                        .expand(-1, -1, t.shape[2])
                        for c, t in zip(cameras, image_tokens, strict=True)
                    ],
                    dim=2,
                )
            objects = self.object_slots(torch.cat(image_tokens, dim=2), present)
            per_step.append(objects + self.object_slots.pos_embedding[:, :window])
        if self.config.repeat_task_tokens:  # the task tokens, embedded as above, in every timestep
            per_step.append(task[:, None].expand(-1, window, -1, -1))
        readout = self.readout_pos_embedding[:, :window].expand(batch, -1, -1, -1)
        per_step.append(readout)
        steps = torch.cat(per_step, dim=2)  # (B, T, tokens per step, width)
        sequence = torch.cat([task, steps.reshape(batch, -1, steps.shape[-1])], dim=1)
        mask = self.attention_mask(window, timestep_mask, camera_masks)
        out = self.transformer(sequence, mask)
        steps_out = out[:, task.shape[1] :].reshape(steps.shape)
        readout_out = steps_out[:, :, -self.config.readout_tokens :].mean(dim=2)
        return (readout_out, objects) if return_object_tokens else readout_out

    def sample_actions(
        self,
        readout: torch.Tensor,
        sampler: DiffusionSampler,
        generator: torch.Generator | None,
        noise: torch.Tensor | None = None,
        guide: PrefixGuide | None = None,
    ) -> torch.Tensor:
        """readout (B, width) of the last timestep -> normalised action chunk (B, horizon, dim);
        ``noise``: the sampler's Gaussian draws given instead of drawn; ``guide``: real-time chunking
        toward the previous chunk's committed actions (both as ``DiffusionSampler.sample``)."""
        return sampler.sample(self.action_head, readout, generator, noise=noise, guide=guide)
