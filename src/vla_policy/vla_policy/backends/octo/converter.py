"""Official Octo (JAX/flax) parameters -> this model's PyTorch state dict.

Input: the flax parameter tree as a nested dict of numpy arrays, with Octo's module paths, e.g.
``octo_transformer/observation_tokenizers_primary/SmallStem16_0/StdConv_0/kernel``,
``octo_transformer/task_tokenizers_language/hf_model/encoder/block/0/layer/0/SelfAttention/q/kernel``,
``octo_transformer/BlockTransformer_0/Transformer_0/encoderblock_3/MultiHeadDotProductAttention_0/query/kernel``,
``heads_action/diffusion_model/reverse_network/MLPResNetBlock_1/Dense_0/kernel``.
Layouts: flax Dense kernels are (in, out) -> transposed; conv kernels HWIO -> OIHW; attention q/k/v
kernels (d, heads, head_dim) -> (heads * head_dim, d) and the output kernel (heads, head_dim, d) ->
(d, heads * head_dim); LayerNorm/GroupNorm ``scale`` -> ``weight``; embeddings as they are.
Every leaf must be consumed (``strict``); the caller checks every model parameter is produced
(``load_state_dict_strict``). Reading a release's files is ``release.py``'s (``vla-stack convert octo``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from vla_common.action_space import NormStats
from vla_policy.backends.octo.checkpoint import load_model_weights
from vla_policy.backends.octo.config import T5_BASE_CONFIG, OctoConfig
from vla_policy.backends.octo.model import OctoModel

OT = "octo_transformer"
STEM = OT + r"/observation_tokenizers_(\w+)/SmallStem16_0"
BLOCK = OT + r"/BlockTransformer_0/Transformer_0/encoderblock_(\d+)"
HEAD = r"heads_action/diffusion_model"
T5 = OT + r"/task_tokenizers_language/hf_model"

# (module path regex, state-dict prefix template): Dense/Conv/LayerNorm/GroupNorm/attention modules.
MODULES: list[tuple[str, str]] = [
    (OT + r"/task_language_projection", "task_projection"),
    (STEM + r"/StdConv_(\d+)", r"image_tokenizers.\1.stem.convs.\2"),
    (STEM + r"/GroupNorm_(\d+)", r"image_tokenizers.\1.stem.norms.\2"),
    (STEM + r"/embedding", r"image_tokenizers.\1.stem.embedding"),
    (OT + r"/obs_(\w+)_projection", r"obs_projections.\1"),
    (BLOCK + r"/LayerNorm_0", r"transformer.blocks.\1.norm1"),
    (BLOCK + r"/LayerNorm_1", r"transformer.blocks.\1.norm2"),
    (BLOCK + r"/MultiHeadDotProductAttention_0/(query|key|value|out)", r"transformer.blocks.\1.attention.\2"),
    (BLOCK + r"/MlpBlock_0/Dense_0", r"transformer.blocks.\1.mlp_in"),
    (BLOCK + r"/MlpBlock_0/Dense_1", r"transformer.blocks.\1.mlp_out"),
    (OT + r"/BlockTransformer_0/Transformer_0/encoder_norm", "transformer.norm"),
    (HEAD + r"/cond_encoder/Dense_(\d)", r"action_head.cond_encoder.dense_\1"),
    (HEAD + r"/reverse_network/Dense_0", "action_head.reverse_network.input"),
    (HEAD + r"/reverse_network/Dense_1", "action_head.reverse_network.output"),
    (
        HEAD + r"/reverse_network/MLPResNetBlock_(\d+)/LayerNorm_0",
        r"action_head.reverse_network.blocks.\1.norm",
    ),
    (
        HEAD + r"/reverse_network/MLPResNetBlock_(\d+)/Dense_(\d)",
        r"action_head.reverse_network.blocks.\1.dense_\2",
    ),
]
# (full leaf path regex, state-dict key template): raw parameters copied as they are.
PARAMETERS: list[tuple[str, str]] = [
    (OT + r"/task_language_pos_embedding", "task_pos_embedding"),
    (OT + r"/obs_(\w+)_pos_embedding", r"obs_pos_embeddings.\1"),
    (OT + r"/readout_action_pos_embedding", "readout_pos_embedding"),
    (HEAD + r"/time_preprocess/kernel", "action_head.time_preprocess.kernel"),
]


def inverted_rules(rules: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(flax path regex, state-dict template) rules -> (state-dict regex, flax path template): the
    same correspondence read the other way (``synthetic_release`` writes flax trees with it). Each
    group of a flax regex must be used once by its template; outside its groups a regex is literal."""
    out = []
    for pattern, template in rules:
        groups = re.findall(r"\(([^()]*)\)", pattern)
        pieces = re.split(r"\\(\d)", template)  # literal, group number, literal, ...
        used = [int(n) for n in pieces[1::2]]
        if sorted(used) != list(range(1, len(groups) + 1)):
            raise ValueError(f"converter rule {pattern!r} -> {template!r}: each group must be used once")
        regex = "".join(
            re.escape(part) if k % 2 == 0 else f"({groups[int(part) - 1]})" for k, part in enumerate(pieces)
        )
        position = {group: k + 1 for k, group in enumerate(used)}  # flax group -> its number in regex
        literals = re.split(r"\([^()]*\)", pattern)
        flax = literals[0] + "".join(f"\\{position[k + 1]}{literals[k + 1]}" for k in range(len(groups)))
        out.append((regex, flax))
    return out


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> {"a/b/c": array}; a top-level "params" collection is unwrapped."""
    if not prefix and set(tree) == {"params"}:
        tree = tree["params"]
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def _module_leaf(module: str, leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """A flax module's leaf -> (torch parameter name, array in torch layout)."""
    if leaf == "scale":
        return "weight", value
    if leaf == "bias":
        return "bias", value.reshape(-1)  # attention biases are (heads, head_dim)
    if leaf != "kernel":
        raise KeyError(f"unexpected leaf '{leaf}' in module {module}")
    if value.ndim == 2:
        return "weight", value.T
    if value.ndim == 4:  # conv HWIO -> OIHW
        return "weight", value.transpose(3, 2, 0, 1)
    if value.ndim == 3 and module.endswith("/out"):  # (heads, head_dim, d) -> (d, heads*head_dim)
        return "weight", value.reshape(-1, value.shape[-1]).T
    if value.ndim == 3:  # q/k/v (d, heads, head_dim) -> (heads*head_dim, d)
        return "weight", value.reshape(value.shape[0], -1).T
    raise ValueError(f"{module}/kernel: unexpected shape {value.shape}")


def _t5_leaf(rest: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """HF flax T5 names -> HF torch T5 names (kernel transposed, embedding/weight as they are)."""
    *module, leaf = rest.split("/")
    name = ".".join(module)
    if leaf == "kernel":
        return f"{name}.weight", value.T
    if leaf in ("embedding", "weight"):
        return f"{name}.weight", value
    raise KeyError(f"unexpected T5 leaf '{rest}'")


def convert_official_params(params: Mapping[str, Any], strict: bool = True) -> dict[str, torch.Tensor]:
    """Octo's flax parameter tree -> ``OctoModel`` state dict (float32 tensors).

    ``strict``: a leaf that maps to nothing is an error naming it (e.g. a checkpoint with another
    head or readout). T5's tied input embedding is produced from ``shared``.
    """
    flat = flatten_params(params)
    state: dict[str, np.ndarray] = {}
    unused = []
    for path, value in flat.items():
        key = None
        for pattern, template in PARAMETERS:
            if re.fullmatch(pattern, path):
                key, array = re.sub(pattern, template, path), value
                break
        if key is None and re.match(T5 + "/", path):
            name, array = _t5_leaf(path[len(T5) + 1 :], value)
            key = "language.encoder." + name
        if key is None:
            module, _, leaf = path.rpartition("/")
            for pattern, template in MODULES:
                if re.fullmatch(pattern, module):
                    name, array = _module_leaf(module, leaf, value)
                    key = f"{re.sub(pattern, template, module)}.{name}"
                    break
        if key is None:
            unused.append(path)
            continue
        if key in state:
            raise ValueError(f"official params: two leaves map to '{key}' (second: {path})")
        state[key] = array
    if unused and strict:
        raise KeyError(f"official params: {len(unused)} leaf/leaves not consumed: {unused[:8]}")
    shared = "language.encoder.shared.weight"
    if shared in state:
        state["language.encoder.encoder.embed_tokens.weight"] = state[shared]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


def config_from_official_params(params: Mapping[str, Any], **overrides: Any) -> OctoConfig:
    """Infer the architecture (sizes, cameras, T5 dims) from the parameter shapes.

    What the parameters cannot say comes as ``overrides`` (release.py reads it from config.json):
    ``repeat_task_tokens`` (True in octo-small/base-1.5) and ``use_correct_attention`` (False in
    Octo's 1.0 models) add no parameter, nor do the window, the head's diffusion steps and
    max_action; an image size is read from its token count as a square.
    """
    flat = flatten_params(params)

    def shape(path: str) -> tuple[int, ...]:
        if path not in flat:
            raise KeyError(f"official params: missing '{path}'")
        return tuple(flat[path].shape)

    block = f"{OT}/BlockTransformer_0/Transformer_0/encoderblock_"
    num_layers = len({p.split("/")[3] for p in flat if p.startswith(block)})
    width, num_heads, _ = shape(block + "0/MultiHeadDotProductAttention_0/query/kernel")
    cameras = sorted({m.group(1) for p in flat if (m := re.match(STEM + "/", p))})
    stem = f"{OT}/observation_tokenizers_{cameras[0]}/SmallStem16_0"
    n_convs = len({p for p in flat if re.match(stem + r"/StdConv_\d+/kernel$", p)})
    convs = [shape(f"{stem}/StdConv_{i}/kernel") for i in range(n_convs)]
    embedding = shape(f"{stem}/embedding/kernel")
    patch = embedding[0] * 16
    image_sizes = []
    for camera in cameras:
        _, max_horizon, n_tokens, _ = shape(f"{OT}/obs_{camera}_pos_embedding")
        side = int(round(n_tokens**0.5)) * 2**n_convs * embedding[0]
        image_sizes.append((side, side))
    head = HEAD + "/reverse_network"
    n_blocks = len({p.split("/")[3] for p in flat if re.match(head + r"/MLPResNetBlock_\d+/", p)})
    time_dim = shape(HEAD + "/time_preprocess/kernel")[0] * 2
    flat_dim = shape(head + "/Dense_1/kernel")[1]
    action_dim = overrides.pop("action_dim", 7)
    settings: dict[str, Any] = dict(
        width=width,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_dim=shape(block + "0/MlpBlock_0/Dense_0/kernel")[1],
        max_horizon=max_horizon,
        cameras=tuple(cameras),
        image_sizes=tuple(image_sizes),
        stem_features=tuple(c[3] for c in convs),
        patch_size=patch,
        image_token_dim=embedding[3],
        goal_image=convs[0][2] == 6,
        text_tokens=shape(OT + "/task_language_pos_embedding")[1],
        readout_tokens=shape(OT + "/readout_action_pos_embedding")[2],
        action_dim=action_dim,
        action_horizon=flat_dim // action_dim,
        time_dim=time_dim,
        head_hidden_dim=shape(head + "/Dense_0/kernel")[1],
        head_num_blocks=n_blocks,
        t5_config=_t5_config(flat),
    )
    return OctoConfig(**{**settings, **overrides})


def _t5_config(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    attention = f"{T5}/encoder/block/0/layer/0/SelfAttention"
    vocab, d_model = flat[f"{T5}/shared/embedding"].shape
    buckets, heads = flat[f"{attention}/relative_attention_bias/embedding"].shape
    inner = flat[f"{attention}/q/kernel"].shape[1]
    ff = f"{T5}/encoder/block/0/layer/1/DenseReluDense"
    gated = f"{ff}/wi_0/kernel" in flat
    d_ff = flat[f"{ff}/wi_0/kernel" if gated else f"{ff}/wi/kernel"].shape[1]
    layers = len({p.split("/")[5] for p in flat if p.startswith(f"{T5}/encoder/block/")})
    return {
        **T5_BASE_CONFIG,
        "vocab_size": vocab,
        "d_model": d_model,
        "d_kv": inner // heads,
        "d_ff": d_ff,
        "num_layers": layers,
        "num_heads": heads,
        "relative_attention_num_buckets": buckets,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
    }


def norm_stats_from_octo(statistics: Mapping[str, Any]) -> NormStats:
    """Octo's ``dataset_statistics.json`` entry (action: mean, std, p01, p99[, mask]) -> NormStats."""
    action = statistics.get("action", statistics)
    missing = [k for k in ("mean", "std", "p01", "p99") if k not in action]
    if missing:
        raise KeyError(f"Octo dataset statistics: action lacks {missing} (has {sorted(action)})")
    dim = len(action["mean"])
    mask = action.get("mask", [True] * dim)  # upstream normalises every dimension when there is no mask
    return NormStats(
        q01=tuple(action["p01"]), q99=tuple(action["p99"]), mask=tuple(mask),
        mean=tuple(action["mean"]), std=tuple(action["std"]),
    )  # fmt: skip


def model_from_official_params(params: Mapping[str, Any], **overrides: Any) -> tuple[Any, OctoConfig]:
    """An ``OctoModel`` with the official weights (config inferred from the shapes), strictly loaded."""
    config = config_from_official_params(params, **overrides)
    model = OctoModel(config)
    load_model_weights(model, convert_official_params(params), "official Octo params")
    return model.eval(), config
