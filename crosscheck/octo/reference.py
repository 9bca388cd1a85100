"""Octo's upstream Flax model on fixed inputs: the reference half of the Octo cross-check.

Runs in .venv-crosscheck/octo (crosscheck/octo/venv.sh), never in the stack's venv. Builds
``OctoModule`` from the upstream sources in $ORACLES/octo with octo-small-1.5's structure
(scripts/configs/octo_pretrain_config.py and config.py: SmallStem16 tokenizers for a 256x256 primary
and a 128x128 wrist camera with the goal image stacked on the channels, a T5 language tokenizer,
repeat_task_tokens=True, one "action" readout, DiffusionActionHead with action_horizon 4 and
mean-pooled readouts, vit_s widths, max_horizon 10, use_correct_attention=True, window 2) with fewer
transformer and T5 layers, initialises it from a fixed seed and writes, to OUT_DIR/reference.npz:

- ``param/<flax path>``: every parameter (the real tree, as ``module.init`` makes it);
- ``input/...``: images, language tokens, timestep pad mask, camera pad masks;
- ``output/...``: the T5 states, the image tokens, the attention mask, the readout embeddings (also
  with Octo 1.0's settings, ``legacy_*``: no repeated task tokens, use_correct_attention=False), and
  the action chunk that ``DiffusionActionHead.predict_action`` samples for a fixed rng, with
  ``noise/...``: the Gaussian draws predict_action makes for that rng (x_T and one per step),
  re-drawn here with the same key splits so that our sampler can be fed them.

Sample 0 has both cameras and two real timesteps; sample 1 has no wrist camera (its pad mask is
False, its pixels random) and a pad first timestep, as Bridge at the start of an episode.
The same for a tiny model of the same structure (86k float16-exact parameters) goes to
OUT_DIR/octo_upstream_tiny.npz: CI's fixture (tests/unit/vla_policy/backends/octo/fixtures/, copied
by ``crosscheck/octo/run.sh --write-fixture``), so that CI compares with upstream without jax.
Usage: python crosscheck/octo/reference.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ORACLES = Path(os.environ.get("ORACLES", Path(__file__).resolve().parents[3] / "shared" / "oracles"))
sys.path.insert(0, str(ORACLES / "octo"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

# Drift shims (see $ORACLES/README.md): two names the 2024 code uses that current jax dropped, and
# jnp.clip's a_min/a_max keywords (now min/max), which transformers' FlaxT5 passes.
jax.random.KeyArray = jax.Array
jax.tree_map = jax.tree_util.tree_map
_jnp_clip = jnp.clip


def _clip(x, min=None, max=None, *, a_min=None, a_max=None, **kwargs):  # noqa: A002
    return _jnp_clip(x, a_min if a_min is not None else min, a_max if a_max is not None else max, **kwargs)


jnp.clip = _clip
jax.config.update("jax_default_matmul_precision", "highest")

import flax  # noqa: E402
from octo.model.components.action_heads import DiffusionActionHead  # noqa: E402
from octo.model.components.tokenizers import ImageTokenizer, LanguageTokenizer  # noqa: E402
from octo.model.components.transformer import common_transformer_sizes  # noqa: E402
from octo.model.components.vit_encoders import SmallStem16  # noqa: E402
from octo.model.octo_module import OctoModule  # noqa: E402
from octo.utils.spec import ModuleSpec  # noqa: E402

SEED = 0
BATCH, WINDOW = 2, 2
ACTION_HORIZON, ACTION_DIM = 4, 7
TEXT_TOKENS = 16
HEAD_TIMES = (0, 10, 19)  # diffusion steps at which the score network is compared alone
FIXTURE = "octo_upstream_tiny.npz"  # the tiny model's arrays, for CI (crosscheck/octo/run.sh --write-fixture)
# t5-base's config.json (on the hub); the model is built from a local directory holding it, since
# upstream's LanguageTokenizer reads AutoConfig.from_pretrained(encoder) and there is no hub here.
T5_BASE = {
    "model_type": "t5",
    "architectures": ["T5ForConditionalGeneration"],
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "initializer_factor": 1.0,
    "feed_forward_proj": "relu",
    "is_encoder_decoder": True,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}
# The cross-check: octo-small-1.5's widths (vit_s, t5-base, SmallStem16's defaults) with 2 transformer
# and 2 T5 layers (12 each in the release).
SMALL = {
    "name": "t5-base-2-layers",
    "image_sizes": {"primary": (256, 256), "wrist": (128, 128)},
    "transformer": {"num_layers": 2},
    "token_embedding_size": None,  # vit_s: 384
    "t5": {"num_layers": 2, "num_decoder_layers": 2},
    "stem": {},
    "head": {},
}
# The CI fixture (tests/unit/vla_policy/backends/octo/fixtures): the same structure at tiny widths
# (GroupNorm's 32 groups keep the stem at 32 channels). Images of 64 and 32 px: the last stem
# convolution then has 4 x 4 and 2 x 2 positions; at 1 x 1 each group norm would normalise a single
# value (upstream: exactly 0; torch's fused x * rstd + shift: ~1e-4).
TINY = {
    "name": "t5-tiny",
    "image_sizes": {"primary": (64, 64), "wrist": (32, 32)},
    "transformer": {"num_layers": 1, "mlp_dim": 64, "num_attention_heads": 2},
    "token_embedding_size": 32,
    "t5": {"vocab_size": 128, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_heads": 2, "num_layers": 1},
    "stem": {"features": (32, 32, 32, 32), "num_features": 16},
    "head": {"hidden_dim": 16, "num_blocks": 1},
}


def module_config(t5_dir: Path, size: dict) -> dict:
    """OctoModule.create's arguments for octo-small-1.5 (octo_pretrain_config.py) at ``size``."""
    token_embedding_size, transformer_kwargs = common_transformer_sizes("vit_s")
    return dict(
        observation_tokenizers={
            name: ModuleSpec.create(
                ImageTokenizer,
                obs_stack_keys=[f"image_{name}"],
                task_stack_keys=[f"image_{name}"],
                encoder=ModuleSpec.create(SmallStem16, **size["stem"]),
            )
            for name in size["image_sizes"]
        },
        task_tokenizers={
            "language": ModuleSpec.create(LanguageTokenizer, encoder=str(t5_dir), finetune_encoder=False)
        },
        heads={
            "action": ModuleSpec.create(
                DiffusionActionHead,
                readout_key="readout_action",
                use_map=False,
                action_horizon=ACTION_HORIZON,
                action_dim=ACTION_DIM,
                n_diffusion_samples=1,
                dropout_rate=0.0,
                **size["head"],
            )
        },
        readouts={"action": 1},
        transformer_kwargs={**transformer_kwargs, **size["transformer"]},
        token_embedding_size=size["token_embedding_size"] or token_embedding_size,
        max_horizon=10,
        repeat_task_tokens=True,
        use_correct_attention=True,
    )


def t5_directory(out_dir: Path, size: dict) -> Path:
    directory = out_dir / size["name"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({**T5_BASE, **size["t5"]}, indent=1))
    return directory


def make_inputs(rng: np.random.Generator, size: dict) -> dict[str, np.ndarray]:
    inputs = {
        f"image_{name}": rng.integers(0, 256, (BATCH, WINDOW, h, w, 3), dtype=np.uint8)
        for name, (h, w) in size["image_sizes"].items()
    }
    inputs["timestep_pad_mask"] = np.array([[True, True], [False, True]])
    inputs["pad_mask_image_primary"] = np.ones((BATCH, WINDOW), bool)
    inputs["pad_mask_image_wrist"] = np.array([[True, True], [False, False]])  # sample 1: no wrist
    # T5 ids: words, </s> (1), then <pad> (0); sample 0 has 9 words, sample 1 fills all 16 tokens
    vocab = {**T5_BASE, **size["t5"]}["vocab_size"]
    ids = rng.integers(3, vocab, (BATCH, TEXT_TOKENS)).astype(np.int32)
    mask = np.ones((BATCH, TEXT_TOKENS), np.int32)
    ids[0, 9], ids[0, 10:], mask[0, 10:] = 1, 0, 0
    ids[1, -1] = 1
    inputs["input_ids"], inputs["attention_mask"] = ids, mask
    # unnormalisation statistics as a dataset_statistics.json entry holds them (the gripper unmasked)
    inputs["action_mean"] = rng.normal(0.0, 0.01, ACTION_DIM).astype(np.float32)
    inputs["action_std"] = rng.uniform(0.01, 0.1, ACTION_DIM).astype(np.float32)
    inputs["action_mask"] = np.array([True] * (ACTION_DIM - 1) + [False])
    return inputs


def octo_batch(inputs: dict[str, np.ndarray]) -> tuple[dict, dict, jax.Array]:
    """Upstream's observation and task dicts (as OctoModel.create_tasks and the gym wrappers build them)."""
    observations = {
        "image_primary": inputs["image_primary"],
        "image_wrist": inputs["image_wrist"],
        "timestep_pad_mask": inputs["timestep_pad_mask"],
        "pad_mask_dict": {
            "image_primary": inputs["pad_mask_image_primary"],
            "image_wrist": inputs["pad_mask_image_wrist"],
            "timestep": inputs["timestep_pad_mask"],
        },
    }
    tasks = {
        "language_instruction": {
            "input_ids": inputs["input_ids"],
            "attention_mask": inputs["attention_mask"],
        },
        "pad_mask_dict": {"language_instruction": np.ones(BATCH, bool)},
    }
    return observations, tasks, jnp.asarray(inputs["timestep_pad_mask"])


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """{"a/b/c": array}; a captured intermediate (a tuple of outputs) gives its first output, a
    TokenGroup its tokens."""
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, path))
            continue
        if isinstance(value, tuple):
            value = value[0]
        flat[path] = np.asarray(getattr(value, "tokens", value))
    return flat


def predict_action_noise(rng: jax.Array, shape: tuple[int, ...], steps: int) -> np.ndarray:
    """The draws DiffusionActionHead.predict_action makes from ``rng`` (same splits): x_T, then z for
    t = steps - 1 .. 0; shape (steps + 1, *shape)."""
    rng, key = jax.random.split(rng)
    draws = [jax.random.normal(key, shape)]
    for _ in range(steps):
        rng, key = jax.random.split(rng)
        draws.append(jax.random.normal(key, shape))
    return np.stack([np.asarray(d) for d in draws])


def run_transformer(module: OctoModule, params: dict, batch: tuple) -> tuple[dict, dict[str, np.ndarray]]:
    """OctoTransformer's outputs and the captured intermediates (tokenizer outputs, attention mask)."""

    def transformer(m, *args):
        return m.octo_transformer(*args, train=False)

    outputs, state = module.apply(
        {"params": params},
        *batch,
        method=transformer,
        mutable=["intermediates"],
        capture_intermediates=lambda mdl, _: isinstance(mdl, LanguageTokenizer | ImageTokenizer),
    )
    return outputs, flatten(flax.core.unfreeze(state["intermediates"]))


def intermediate(intermediates: dict[str, np.ndarray], part: str) -> np.ndarray:
    return next(v for k, v in intermediates.items() if part in k)


def reference_arrays(out_dir: Path, size: dict, float16_grid: bool = False) -> dict[str, np.ndarray]:
    """Everything the comparison needs, for the model at ``size``; ``float16_grid``: the random
    parameters rounded to float16 values first (then stored as float16 without loss: the CI fixture)."""
    t5_dir = t5_directory(out_dir, size)
    inputs = make_inputs(np.random.default_rng(SEED), size)
    batch = octo_batch(inputs)
    config = module_config(t5_dir, size)
    module = OctoModule.create(**config)
    params = flax.core.unfreeze(module.init(jax.random.PRNGKey(SEED), *batch, train=False)["params"])
    if float16_grid:
        params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float16).astype(np.float32), params)
    outputs, intermediates = run_transformer(module, params, batch)
    readout = np.asarray(outputs["readout_action"].tokens).mean(axis=-2)  # mean pooling (use_map=False)
    # Octo 1.0's (December 2023) settings on the same parameters (neither adds any): no repeated
    # task tokens, use_correct_attention=False
    legacy = OctoModule.create(**{**config, "repeat_task_tokens": False, "use_correct_attention": False})
    legacy_outputs, legacy_intermediates = run_transformer(legacy, params, batch)

    head = module.bind({"params": params}).heads["action"]
    action_rng = jax.random.PRNGKey(SEED + 1)
    actions = head.predict_action(outputs, rng=action_rng, train=False, embodiment_action_dim=ACTION_DIM)
    noise = predict_action_noise(
        action_rng, (BATCH, WINDOW, ACTION_HORIZON * ACTION_DIM), head.diffusion_steps
    )
    # the score network alone (one evaluation, no clip): predicted noise at a few diffusion steps
    noisy = (
        np.random.default_rng(SEED + 2).normal(size=(len(HEAD_TIMES), *noise.shape[1:])).astype(np.float32)
    )

    def score(m, outs, time, noisy_actions):
        return m.heads["action"](outs, time=time, noisy_actions=noisy_actions, train=False)

    predicted_noise = [
        module.apply({"params": params}, outputs, jnp.full((*noisy.shape[1:-1], 1), t), x, method=score)
        for t, x in zip(HEAD_TIMES, noisy, strict=True)
    ]
    # OctoModel.sample_actions' NORMAL unnormalisation
    mask, mean, std = inputs["action_mask"], inputs["action_mean"], inputs["action_std"]
    unnormalized = np.where(mask, np.asarray(actions) * std + mean, np.asarray(actions))

    params_dtype = np.float16 if float16_grid else np.float32
    arrays = {f"param/{k}": v.astype(params_dtype) for k, v in flatten(params).items()}
    arrays.update({f"input/{k}": v for k, v in inputs.items()})
    arrays.update(
        {
            "output/language_tokens": intermediate(intermediates, "task_tokenizers_language/__call__"),
            "output/attention_mask": intermediate(intermediates, "attention_mask")[:, 0],  # (B, L, L)
            "output/readout": readout,
            "output/legacy_attention_mask": intermediate(legacy_intermediates, "attention_mask")[:, 0],
            "output/legacy_readout": np.asarray(legacy_outputs["readout_action"].tokens).mean(axis=-2),
            "output/actions": np.asarray(actions),
            "output/actions_unnormalized": unnormalized,
            "noise/last_timestep": noise[:, :, -1],  # predict_action returns the window's last timestep
            "input/head_times": np.asarray(HEAD_TIMES),
            "input/head_noisy_actions": noisy,
            "output/head_predicted_noise": np.stack([np.asarray(e) for e in predicted_noise]),
        }
    )
    for name in size["image_sizes"]:
        arrays[f"output/image_tokens_{name}"] = intermediate(
            intermediates, f"observation_tokenizers_{name}/__call__"
        )
    return arrays


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = reference_arrays(out_dir, SMALL)
    np.savez(out_dir / "reference.npz", **arrays)
    fixture = reference_arrays(out_dir, TINY, float16_grid=True)
    np.savez_compressed(out_dir / FIXTURE, **fixture)
    versions = {name: __import__(name).__version__ for name in ("jax", "jaxlib", "flax", "transformers")}
    setup = {
        "seed": SEED,
        "transformer_layers": SMALL["transformer"]["num_layers"],
        "t5_layers": SMALL["t5"]["num_layers"],
        "sequence_length": int(arrays["output/attention_mask"].shape[-1]),
        "fixture_sequence_length": int(fixture["output/attention_mask"].shape[-1]),
        "reference_env": versions,
    }
    (out_dir / "reference.json").write_text(json.dumps(setup, indent=1))
    params = sum(k.startswith("param/") for k in arrays)
    print(f"reference: {params} parameters, sequence of {setup['sequence_length']} tokens; fixture {FIXTURE}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
