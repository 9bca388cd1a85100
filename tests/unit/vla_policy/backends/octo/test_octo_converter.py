"""The official-parameter converter on a synthetic flax tree with Octo's paths and tiny shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vla_policy.backends.octo.checkpoint import load_model_weights
from vla_policy.backends.octo.config import octo_preset
from vla_policy.backends.octo.converter import (
    config_from_official_params,
    convert_official_params,
    flatten_params,
    model_from_official_params,
    norm_stats_from_octo,
)
from vla_policy.backends.octo.model import OctoModel

CONFIG = octo_preset("tiny")  # GroupNorm groups are not in the parameters: passed as an override


def official_tree(seed: int = 0) -> dict:
    """Octo 1.5's flax parameter tree (module names as flax assigns them), at the tiny sizes."""
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    def dense(i, o):
        return {"kernel": r(i, o), "bias": r(o)}

    def norm(c):
        return {"scale": r(c), "bias": r(c)}

    d, mlp, heads = CONFIG.width, CONFIG.mlp_dim, CONFIG.num_heads
    t5 = CONFIG.t5_config
    tm, tkv, th, tff = t5["d_model"], t5["d_kv"], t5["num_heads"], t5["d_ff"]
    ot: dict = {}
    for camera, n_tokens in CONFIG.tokens_per_camera().items():
        stem: dict = {}
        channels = (6, *CONFIG.stem_features)
        for i in range(4):
            stem[f"StdConv_{i}"] = {
                "kernel": r(3, 3, channels[i], channels[i + 1]),
                "bias": r(channels[i + 1]),
            }
            stem[f"GroupNorm_{i}"] = norm(channels[i + 1])
        stem["embedding"] = {
            "kernel": r(1, 1, channels[-1], CONFIG.image_token_dim),
            "bias": r(CONFIG.image_token_dim),
        }
        ot[f"observation_tokenizers_{camera}"] = {"SmallStem16_0": stem}
        ot[f"obs_{camera}_projection"] = dense(CONFIG.image_token_dim, d)
        ot[f"obs_{camera}_pos_embedding"] = r(1, CONFIG.max_horizon, n_tokens, d)
    blocks: dict = {}
    for i in range(t5["num_layers"]):
        attention = {name: {"kernel": r(tm, th * tkv)} for name in ("q", "k", "v")}
        attention["o"] = {"kernel": r(th * tkv, tm)}
        if i == 0:
            attention["relative_attention_bias"] = {"embedding": r(32, th)}
        blocks[str(i)] = {
            "layer": {
                "0": {"SelfAttention": attention, "layer_norm": {"weight": r(tm)}},
                "1": {
                    "DenseReluDense": {"wi": {"kernel": r(tm, tff)}, "wo": {"kernel": r(tff, tm)}},
                    "layer_norm": {"weight": r(tm)},
                },
            }
        }
    ot["task_tokenizers_language"] = {
        "hf_model": {
            "shared": {"embedding": r(t5["vocab_size"], tm)},
            "encoder": {"block": blocks, "final_layer_norm": {"weight": r(tm)}},
        }
    }
    ot["task_language_projection"] = dense(tm, d)
    ot["task_language_pos_embedding"] = r(1, CONFIG.text_tokens, d)
    ot["readout_action_pos_embedding"] = r(1, CONFIG.max_horizon, 1, d)
    layers: dict = {}
    for i in range(CONFIG.num_layers):
        layers[f"encoderblock_{i}"] = {
            "LayerNorm_0": norm(d),
            "MultiHeadDotProductAttention_0": {
                **{
                    n: {"kernel": r(d, heads, d // heads), "bias": r(heads, d // heads)}
                    for n in ("query", "key", "value")
                },
                "out": {"kernel": r(heads, d // heads, d), "bias": r(d)},
            },
            "LayerNorm_1": norm(d),
            "MlpBlock_0": {"Dense_0": dense(d, mlp), "Dense_1": dense(mlp, d)},
        }
    layers["encoder_norm"] = norm(d)
    ot["BlockTransformer_0"] = {"Transformer_0": layers}
    hidden, time_dim, flat = CONFIG.head_hidden_dim, CONFIG.time_dim, 28
    reverse = {"Dense_0": dense(time_dim + d + flat, hidden), "Dense_1": dense(hidden, flat)}
    for i in range(CONFIG.head_num_blocks):
        reverse[f"MLPResNetBlock_{i}"] = {
            "LayerNorm_0": norm(hidden),
            "Dense_0": dense(hidden, 4 * hidden),
            "Dense_1": dense(4 * hidden, hidden),
        }
    head = {
        "time_preprocess": {"kernel": r(time_dim // 2, 1)},
        "cond_encoder": {"Dense_0": dense(time_dim, 2 * time_dim), "Dense_1": dense(2 * time_dim, time_dim)},
        "reverse_network": reverse,
    }
    return {"params": {"octo_transformer": ot, "heads_action": {"diffusion_model": head}}}


def test_every_leaf_consumed_and_every_parameter_produced():
    tree = official_tree()
    state = convert_official_params(tree)  # strict: raises on an unconsumed leaf
    model = OctoModel(CONFIG)
    load_model_weights(model, state, "synthetic")  # strict: raises on a missing or misshapen key
    leaves = len(flatten_params(tree))
    assert len(state) == leaves + 1  # + T5's tied embed_tokens, produced from shared
    assert set(state) == set(model.state_dict())


def test_config_is_inferred_from_the_shapes():
    inferred = config_from_official_params(official_tree(), stem_groups=CONFIG.stem_groups)
    for name in (
        "width num_layers num_heads mlp_dim max_horizon cameras image_sizes stem_features patch_size "
        "image_token_dim goal_image text_tokens readout_tokens action_horizon time_dim head_hidden_dim "
        "head_num_blocks"
    ).split():
        assert getattr(inferred, name) == getattr(CONFIG, name), name
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "feed_forward_proj"):
        assert inferred.t5_config[key] == CONFIG.t5_config[key], key


def test_dense_mapping_is_numerically_equivalent():
    tree = official_tree()
    model, _ = model_from_official_params(tree, stem_groups=CONFIG.stem_groups)
    projection = tree["params"]["octo_transformer"]["task_language_projection"]
    x = np.random.default_rng(1).standard_normal((3, CONFIG.t5_config["d_model"])).astype(np.float32)
    expected = x @ projection["kernel"] + projection["bias"]  # flax Dense
    got = model.task_projection(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_attention_mapping_is_numerically_equivalent():
    tree = official_tree()
    model, _ = model_from_official_params(tree, stem_groups=CONFIG.stem_groups)
    flax_attention = tree["params"]["octo_transformer"]["BlockTransformer_0"]["Transformer_0"][
        "encoderblock_0"
    ]["MultiHeadDotProductAttention_0"]
    attention = model.transformer.blocks[0].attention
    x = np.random.default_rng(2).standard_normal((5, CONFIG.width)).astype(np.float32)
    q = np.einsum("ld,dhk->lhk", x, flax_attention["query"]["kernel"]) + flax_attention["query"]["bias"]
    got_q = attention.query(torch.from_numpy(x)).detach().numpy().reshape(q.shape)
    np.testing.assert_allclose(got_q, q, rtol=1e-5, atol=1e-5)
    y = q  # any (l, heads, head_dim) input for the output projection
    out = np.einsum("lhk,hkd->ld", y, flax_attention["out"]["kernel"]) + flax_attention["out"]["bias"]
    got_out = attention.out(torch.from_numpy(y.reshape(5, -1))).detach().numpy()
    np.testing.assert_allclose(got_out, out, rtol=1e-4, atol=1e-4)


def test_conv_mapping_is_numerically_equivalent():
    tree = official_tree()
    model, _ = model_from_official_params(tree, stem_groups=CONFIG.stem_groups)
    conv = tree["params"]["octo_transformer"]["observation_tokenizers_wrist"]["SmallStem16_0"]["StdConv_0"]
    kernel, bias = conv["kernel"], conv["bias"]  # HWIO, padding 1, stride 2 (flax, NHWC)
    image = np.random.default_rng(3).standard_normal((8, 8, 6)).astype(np.float32)
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((4, 4, kernel.shape[3]), np.float32)
    for i in range(4):
        for j in range(4):
            patch = padded[2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :]
            expected[i, j] = np.einsum("hwi,hwio->o", patch, kernel) + bias
    torch_conv = model.image_tokenizers["wrist"].stem.convs[0]
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    got = F.conv2d(x, torch_conv.weight, torch_conv.bias, stride=2, padding=1)[0].permute(1, 2, 0)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_t5_weights_land_in_the_encoder():
    tree = official_tree()
    model, _ = model_from_official_params(tree, stem_groups=CONFIG.stem_groups)
    t5 = tree["params"]["octo_transformer"]["task_tokenizers_language"]["hf_model"]
    q = t5["encoder"]["block"]["0"]["layer"]["0"]["SelfAttention"]["q"]["kernel"]
    encoder = model.language.encoder
    np.testing.assert_array_equal(encoder.encoder.block[0].layer[0].SelfAttention.q.weight.numpy(), q.T)
    np.testing.assert_array_equal(encoder.shared.weight.numpy(), t5["shared"]["embedding"])


def test_an_unknown_leaf_is_named():
    tree = official_tree()
    tree["params"]["heads_value"] = {"Dense_0": {"kernel": np.zeros((2, 2), np.float32)}}
    with pytest.raises(KeyError, match="heads_value/Dense_0/kernel"):
        convert_official_params(tree)
    assert "heads_value.Dense_0.weight" not in convert_official_params(tree, strict=False)


def test_octo_dataset_statistics_become_norm_stats():
    stats = norm_stats_from_octo(
        {"action": {"mean": [0.0] * 7, "std": [1.0] * 7, "p01": [-1.0] * 7, "p99": [1.0] * 7}}
    )
    assert stats.mask == (True,) * 7  # upstream (gym_wrappers.UnnormalizeActionProprio): no mask, all
    with_mask = norm_stats_from_octo(
        {
            "action": {
                "mean": [0.0] * 2,
                "std": [1.0] * 2,
                "p01": [-1.0] * 2,
                "p99": [1.0] * 2,
                "mask": [True, False],
            }
        }
    )
    assert with_mask.mask == (True, False)
    with pytest.raises(KeyError, match="p99"):
        norm_stats_from_octo({"action": {"mean": [0.0], "std": [1.0], "p01": [0.0]}})
