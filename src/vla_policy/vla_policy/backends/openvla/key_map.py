"""Official OpenVLA safetensors names (timm vision towers) <-> this package's transformers modules.

Official prefixes: ``vision_backbone.featurizer.*`` (timm vit_large_patch14_reg4_dinov2),
``vision_backbone.fused_featurizer.*`` (timm vit_so400m_patch14_siglip_224), ``projector.fc{1,2,3}.*``
and ``language_model.*`` (a Hugging Face LlamaForCausalLM already: names pass through).

Exact conversions, not just renames:

- ``attn.qkv`` holds [W_q; W_k; W_v] stacked on the output axis (3D x D): rows 0..D-1 are the query,
  D..2D-1 the key, 2D..3D-1 the value; the bias likewise. Split into q/k/v projections and re-stacked
  on save.
- DINOv2 positions. timm builds the register variant with ``no_embed_class=True``: ``pos_embed`` has
  one row per patch (P rows) and the class and register tokens get no position; timm folds the
  original class position into ``cls_token``. transformers adds P + 1 positions to [class, patches]
  before inserting the registers. So a P-row ``pos_embed`` loads as positions [0; pos_embed] with
  ``cls_token`` unchanged (exact); a (P + 1)-row table (a layout with the class position kept) loads
  as is. Saving writes the timm layout: cls_token + position_0, and the P patch rows.
- SigLIP ``pos_embed`` [1, P, D] <-> ``position_embedding.weight`` [P, D].
- SigLIP ``attn_pool`` (the MAP head: latent, q, kv, proj, norm, mlp) loads into transformers'
  ``head`` (probe, attention.in_proj = [q; kv], out_proj, layernorm, mlp). OpenVLA never runs it
  (features come from the second-to-last block) but the checkpoint carries it; loading it keeps the
  load strict (nothing unexpected, nothing dropped) and a re-save identical.
- DINOv2 ``mask_token`` exists only in transformers (pre-training masking, unused with no mask):
  filled with zeros on load, dropped on save.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from vla_policy.backends.openvla.configuration import OpenVLAConfig

DINO = "vision_backbone.featurizer"
SIGLIP = "vision_backbone.fused_featurizer"

# timm block suffix -> transformers layer suffix (weight and bias unless noted).
_DINO_BLOCK = {
    "norm1": "norm1",
    "attn.proj": "attention.o_proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_SIGLIP_BLOCK = {
    "norm1": "layer_norm1",
    "attn.proj": "self_attn.out_proj",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_SIGLIP_POOL = {
    "attn_pool.proj": "head.attention.out_proj",
    "attn_pool.norm": "head.layernorm",
    "attn_pool.mlp.fc1": "head.mlp.fc1",
    "attn_pool.mlp.fc2": "head.mlp.fc2",
}


def plain_renames(config: OpenVLAConfig) -> dict[str, str]:
    """Official name -> native name for every tensor that only changes its name."""
    names: dict[str, str] = {}

    def both(official: str, native: str) -> None:
        for suffix in ("weight", "bias"):
            names[f"{official}.{suffix}"] = f"{native}.{suffix}"

    both(f"{DINO}.patch_embed.proj", f"{DINO}.embeddings.patch_embeddings.projection")
    both(f"{DINO}.norm", f"{DINO}.layernorm")
    names[f"{DINO}.reg_token"] = f"{DINO}.embeddings.register_tokens"
    for i in range(config.featurizer.num_layers):
        for official, native in _DINO_BLOCK.items():
            both(f"{DINO}.blocks.{i}.{official}", f"{DINO}.encoder.layer.{i}.{native}")
        names[f"{DINO}.blocks.{i}.ls1.scale_factor"] = f"{DINO}.encoder.layer.{i}.layer_scale1.lambda1"
        names[f"{DINO}.blocks.{i}.ls2.scale_factor"] = f"{DINO}.encoder.layer.{i}.layer_scale2.lambda1"
    both(f"{SIGLIP}.patch_embed.proj", f"{SIGLIP}.embeddings.patch_embedding")
    both(f"{SIGLIP}.norm", f"{SIGLIP}.post_layernorm")
    for i in range(config.fused_featurizer.num_layers):
        for official, native in _SIGLIP_BLOCK.items():
            both(f"{SIGLIP}.blocks.{i}.{official}", f"{SIGLIP}.encoder.layers.{i}.{native}")
    for official, native in _SIGLIP_POOL.items():
        both(f"{SIGLIP}.{official}", f"{SIGLIP}.{native}")
    names[f"{SIGLIP}.attn_pool.latent"] = f"{SIGLIP}.head.probe"
    for i in (1, 2, 3):
        both(f"projector.fc{i}", f"projector.fc{i}")
    return names


def _qkv_pairs(config: OpenVLAConfig) -> list[tuple[str, str]]:
    """(official fused qkv prefix, native attention prefix) for every block of both towers."""
    pairs = [
        (f"{DINO}.blocks.{i}.attn.qkv", f"{DINO}.encoder.layer.{i}.attention")
        for i in range(config.featurizer.num_layers)
    ]
    pairs += [
        (f"{SIGLIP}.blocks.{i}.attn.qkv", f"{SIGLIP}.encoder.layers.{i}.self_attn")
        for i in range(config.fused_featurizer.num_layers)
    ]
    return pairs


class _Taker:
    """Pops tensors by name, remembering which were missing, so one error can list them all."""

    def __init__(self, tensors: Mapping[str, Any]) -> None:
        self.remaining = dict(tensors)
        self.missing: list[str] = []

    def take(self, key: str) -> Any:
        if key not in self.remaining:
            self.missing.append(key)
            return None
        return self.remaining.pop(key)


def _raise_if_mismatched(missing: list[str], unexpected: list[str], source: str, what: str) -> None:
    if missing or unexpected:
        raise KeyError(
            f"{source}: {what}: {len(missing)} missing key(s) {sorted(missing)[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, {len(unexpected)} unexpected key(s) "
            f"{sorted(unexpected)[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )


def official_to_native(tensors: Mapping[str, Any], config: OpenVLAConfig, source: str = "checkpoint") -> dict:
    """Official checkpoint tensors -> a state dict for :class:`OpenVLAModel` (errors list every bad key)."""
    taker = _Taker(tensors)
    native: dict[str, Any] = {}
    for official, name in plain_renames(config).items():
        tensor = taker.take(official)
        if tensor is not None:
            native[name] = tensor
    for official, name in _qkv_pairs(config):
        for suffix in ("weight", "bias"):
            fused = taker.take(f"{official}.{suffix}")
            if fused is None:
                continue
            if fused.shape[0] % 3:
                raise ValueError(f"{source}: '{official}.{suffix}' has {fused.shape[0]} rows, not 3 x width")
            query, key, value = torch.chunk(fused, 3, dim=0)
            native[f"{name}.q_proj.{suffix}"] = query
            native[f"{name}.k_proj.{suffix}"] = key
            native[f"{name}.v_proj.{suffix}"] = value
    for suffix in ("weight", "bias"):
        query, key_value = (
            taker.take(f"{SIGLIP}.attn_pool.q.{suffix}"),
            taker.take(f"{SIGLIP}.attn_pool.kv.{suffix}"),
        )
        if query is not None and key_value is not None:
            native[f"{SIGLIP}.head.attention.in_proj_{suffix}"] = torch.cat([query, key_value], dim=0)

    siglip_pos = taker.take(f"{SIGLIP}.pos_embed")
    if siglip_pos is not None:
        native[f"{SIGLIP}.embeddings.position_embedding.weight"] = siglip_pos.reshape(siglip_pos.shape[-2:])
    cls_token, dino_pos = taker.take(f"{DINO}.cls_token"), taker.take(f"{DINO}.pos_embed")
    if cls_token is not None and dino_pos is not None:
        patches = config.num_patches
        if dino_pos.shape[1] == patches:  # timm no_embed_class: no class position (folded into cls_token)
            dino_pos = torch.cat([torch.zeros_like(dino_pos[:, :1]), dino_pos], dim=1)
        elif dino_pos.shape[1] != patches + 1:
            raise ValueError(
                f"{source}: '{DINO}.pos_embed' has {dino_pos.shape[1]} positions; expected {patches} "
                f"(one per patch) or {patches + 1} (with the class position) for image_size "
                f"{config.image_size}"
            )
        native[f"{DINO}.embeddings.cls_token"] = cls_token
        native[f"{DINO}.embeddings.position_embeddings"] = dino_pos
        native[f"{DINO}.embeddings.mask_token"] = torch.zeros_like(cls_token[0])

    for key in list(taker.remaining):
        if key.startswith("language_model."):
            native[key] = taker.remaining.pop(key)
    _raise_if_mismatched(taker.missing, list(taker.remaining), source, "official OpenVLA names")
    return native


def native_to_official(state_dict: Mapping[str, Any], config: OpenVLAConfig) -> dict:
    """The inverse of :func:`official_to_native`: what :func:`save_openvla_checkpoint` writes."""
    taker = _Taker(state_dict)
    official: dict[str, Any] = {}
    for name_official, name in plain_renames(config).items():
        official[name_official] = taker.take(name)
    for fused, name in _qkv_pairs(config):
        for suffix in ("weight", "bias"):
            parts = [taker.take(f"{name}.{proj}.{suffix}") for proj in ("q_proj", "k_proj", "v_proj")]
            official[f"{fused}.{suffix}"] = torch.cat(parts, dim=0)
    width = config.fused_featurizer.hidden_size
    for suffix in ("weight", "bias"):
        in_proj = taker.take(f"{SIGLIP}.head.attention.in_proj_{suffix}")
        official[f"{SIGLIP}.attn_pool.q.{suffix}"] = in_proj[:width]
        official[f"{SIGLIP}.attn_pool.kv.{suffix}"] = in_proj[width:]
    official[f"{SIGLIP}.pos_embed"] = taker.take(f"{SIGLIP}.embeddings.position_embedding.weight")[None]
    cls_token = taker.take(f"{DINO}.embeddings.cls_token")
    positions = taker.take(f"{DINO}.embeddings.position_embeddings")
    taker.take(f"{DINO}.embeddings.mask_token")
    if config.featurizer.num_registers:  # timm no_embed_class layout
        official[f"{DINO}.cls_token"] = cls_token + positions[:, :1]
        official[f"{DINO}.pos_embed"] = positions[:, 1:]
    else:
        official[f"{DINO}.cls_token"], official[f"{DINO}.pos_embed"] = cls_token, positions
    for key in list(taker.remaining):
        if key.startswith("language_model."):
            official[key] = taker.remaining.pop(key)
    _raise_if_mismatched(taker.missing, list(taker.remaining), "OpenVLAModel state dict", "native names")
    return official
