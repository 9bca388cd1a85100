"""The official (timm-named) checkpoint layout maps onto the native modules exactly and strictly."""

from __future__ import annotations

import pytest
import torch
from openvla_fixtures import tiny_config, tiny_model

from vla_policy.backends.openvla.key_map import DINO, SIGLIP, native_to_official, official_to_native
from vla_policy.checkpoint import load_state_dict_strict


def official_state_dict(config, language_model_names, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the official OpenVLA names, written from timm's module structure."""
    generator = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {}
    patches = config.num_patches
    for prefix, shape in ((DINO, config.featurizer), (SIGLIP, config.fused_featurizer)):
        d, m, p = shape.hidden_size, shape.mlp_dim, shape.patch_size
        shapes[f"{prefix}.patch_embed.proj.weight"] = (d, 3, p, p)
        shapes[f"{prefix}.patch_embed.proj.bias"] = (d,)
        shapes[f"{prefix}.pos_embed"] = (1, patches, d)  # timm: no class position (no_embed_class / no cls)
        shapes[f"{prefix}.norm.weight"] = shapes[f"{prefix}.norm.bias"] = (d,)
        for i in range(shape.num_layers):
            block = f"{prefix}.blocks.{i}"
            for norm in ("norm1", "norm2"):
                shapes[f"{block}.{norm}.weight"] = shapes[f"{block}.{norm}.bias"] = (d,)
            shapes[f"{block}.attn.qkv.weight"], shapes[f"{block}.attn.qkv.bias"] = (3 * d, d), (3 * d,)
            shapes[f"{block}.attn.proj.weight"], shapes[f"{block}.attn.proj.bias"] = (d, d), (d,)
            shapes[f"{block}.mlp.fc1.weight"], shapes[f"{block}.mlp.fc1.bias"] = (m, d), (m,)
            shapes[f"{block}.mlp.fc2.weight"], shapes[f"{block}.mlp.fc2.bias"] = (d, m), (d,)
            if shape.layer_scale:
                shapes[f"{block}.ls1.scale_factor"] = shapes[f"{block}.ls2.scale_factor"] = (d,)
    d = config.featurizer.hidden_size
    shapes[f"{DINO}.cls_token"], shapes[f"{DINO}.reg_token"] = (
        (1, 1, d),
        (1, config.featurizer.num_registers, d),
    )
    d, m = config.fused_featurizer.hidden_size, config.fused_featurizer.mlp_dim
    pool = f"{SIGLIP}.attn_pool"
    shapes[f"{pool}.latent"] = (1, 1, d)
    shapes[f"{pool}.q.weight"], shapes[f"{pool}.q.bias"] = (d, d), (d,)
    shapes[f"{pool}.kv.weight"], shapes[f"{pool}.kv.bias"] = (2 * d, d), (2 * d,)
    shapes[f"{pool}.proj.weight"], shapes[f"{pool}.proj.bias"] = (d, d), (d,)
    shapes[f"{pool}.norm.weight"] = shapes[f"{pool}.norm.bias"] = (d,)
    shapes[f"{pool}.mlp.fc1.weight"], shapes[f"{pool}.mlp.fc1.bias"] = (m, d), (m,)
    shapes[f"{pool}.mlp.fc2.weight"], shapes[f"{pool}.mlp.fc2.bias"] = (d, m), (d,)
    v, llm = config.vision_dim, config.text.hidden_size
    for name, (out, inp) in {"fc1": (4 * v, v), "fc2": (llm, 4 * v), "fc3": (llm, llm)}.items():
        shapes[f"projector.{name}.weight"], shapes[f"projector.{name}.bias"] = (out, inp), (out,)
    tensors = {k: torch.randn(s, generator=generator) * 0.2 for k, s in shapes.items()}
    tensors.update({f"language_model.{k}": t.clone() for k, t in language_model_names.items()})
    return tensors


@pytest.fixture()
def official(model):
    return official_state_dict(model.config, model.language_model.state_dict())


def test_official_names_load_with_nothing_missing_or_unexpected(model, official):
    native = official_to_native(official, model.config)
    load_state_dict_strict(model, native, "synthetic official checkpoint")  # raises on any mismatch
    assert set(native) == set(model.state_dict())


def test_round_trip_reproduces_the_official_tensors(model, official):
    back = native_to_official(official_to_native(official, model.config), model.config)
    assert set(back) == set(official)
    for key, tensor in official.items():
        torch.testing.assert_close(back[key], tensor, rtol=0, atol=0, msg=key)


def test_missing_and_unexpected_keys_are_named(model, official):
    del official[f"{DINO}.blocks.1.attn.qkv.weight"]
    official[f"{DINO}.head.weight"] = torch.zeros(3)
    with pytest.raises(KeyError) as error:
        official_to_native(official, model.config, source="ckpt-dir")
    message = str(error.value)
    assert (
        "ckpt-dir" in message
        and f"{DINO}.blocks.1.attn.qkv.weight" in message
        and f"{DINO}.head.weight" in message
    )


def test_wrong_position_count_is_named(model, official):
    official[f"{DINO}.pos_embed"] = official[f"{DINO}.pos_embed"][:, :-2]
    with pytest.raises(ValueError, match="pos_embed' has 254 positions"):
        official_to_native(official, model.config)


def _fused_attention(x, qkv_weight, qkv_bias, proj_weight, proj_bias, heads):
    """timm Attention from the fused weights: softmax(q k^T / sqrt(d_h)) v, heads re-joined, projected."""
    batch, tokens, width = x.shape
    qkv = (
        (x @ qkv_weight.T + qkv_bias).reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    )
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = torch.softmax(q @ k.transpose(-2, -1) * (width // heads) ** -0.5, dim=-1)
    return (weights @ v).transpose(1, 2).reshape(batch, tokens, width) @ proj_weight.T + proj_bias


def test_fused_qkv_split_matches_the_fused_attention(model, official):
    load_state_dict_strict(model, official_to_native(official, model.config), "synthetic")
    config = model.config
    for prefix, attention, heads in (
        (
            f"{DINO}.blocks.2",
            model.vision_backbone.featurizer.encoder.layer[2].attention,
            config.featurizer.num_heads,
        ),
        (
            f"{SIGLIP}.blocks.1",
            model.vision_backbone.fused_featurizer.encoder.layers[1].self_attn,
            config.fused_featurizer.num_heads,
        ),
    ):
        width = official[f"{prefix}.attn.proj.weight"].shape[0]
        x = torch.randn(2, 17, width, generator=torch.Generator().manual_seed(3))
        expected = _fused_attention(
            x,
            official[f"{prefix}.attn.qkv.weight"],
            official[f"{prefix}.attn.qkv.bias"],
            official[f"{prefix}.attn.proj.weight"],
            official[f"{prefix}.attn.proj.bias"],
            heads,
        )
        torch.testing.assert_close(attention(x)[0], expected, rtol=0, atol=1e-5)


def test_dino_positions_follow_timm_no_embed_class(model, official):
    """timm: x = patches + pos_embed, then [cls, registers, x]: class and registers get no position."""
    load_state_dict_strict(model, official_to_native(official, model.config), "synthetic")
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    patches = torch.nn.functional.conv2d(
        pixels,
        official[f"{DINO}.patch_embed.proj.weight"],
        official[f"{DINO}.patch_embed.proj.bias"],
        stride=14,
    )
    patches = patches.flatten(2).transpose(1, 2) + official[f"{DINO}.pos_embed"]
    expected = torch.cat([official[f"{DINO}.cls_token"], official[f"{DINO}.reg_token"], patches], dim=1)
    torch.testing.assert_close(
        model.vision_backbone.featurizer.embeddings(pixels), expected, rtol=0, atol=1e-5
    )


def test_dino_positions_with_the_class_row_load_as_is(model, official):
    with_class = torch.randn(1, model.config.num_patches + 1, model.config.featurizer.hidden_size)
    official[f"{DINO}.pos_embed"] = with_class
    native = official_to_native(official, model.config)
    torch.testing.assert_close(native[f"{DINO}.embeddings.position_embeddings"], with_class)


def test_siglip_attention_pool_maps_q_and_kv_in_order(model, official):
    load_state_dict_strict(model, official_to_native(official, model.config), "synthetic")
    pool = {k.removeprefix(f"{SIGLIP}.attn_pool."): v for k, v in official.items() if ".attn_pool." in k}
    width, heads = model.config.fused_featurizer.hidden_size, model.config.fused_featurizer.num_heads
    x = torch.randn(1, 9, width, generator=torch.Generator().manual_seed(2))
    q = (pool["latent"] @ pool["q.weight"].T + pool["q.bias"]).reshape(1, 1, heads, -1).transpose(1, 2)
    kv = (x @ pool["kv.weight"].T + pool["kv.bias"]).reshape(1, 9, 2, heads, -1).permute(2, 0, 3, 1, 4)
    attended = torch.softmax(q @ kv[0].transpose(-2, -1) * (width // heads) ** -0.5, -1) @ kv[1]
    pooled = attended.transpose(1, 2).reshape(1, 1, width) @ pool["proj.weight"].T + pool["proj.bias"]
    normed = torch.nn.functional.layer_norm(
        pooled, (width,), pool["norm.weight"], pool["norm.bias"], eps=1e-6
    )
    hidden = torch.nn.functional.gelu(normed @ pool["mlp.fc1.weight"].T + pool["mlp.fc1.bias"])
    expected = (pooled + hidden @ pool["mlp.fc2.weight"].T + pool["mlp.fc2.bias"])[:, 0]
    torch.testing.assert_close(model.vision_backbone.fused_featurizer.head(x), expected, rtol=0, atol=1e-5)


def test_saved_native_state_uses_only_official_names():
    model = tiny_model(seed=1)
    names = set(native_to_official(model.state_dict(), tiny_config()))
    assert all(
        n.startswith(
            (
                "vision_backbone.featurizer.",
                "vision_backbone.fused_featurizer.",
                "projector.fc",
                "language_model.",
            )
        )
        for n in names
    )
    assert not any("mask_token" in n or "q_proj" in n and "vision" in n for n in names)
