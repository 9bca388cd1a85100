"""Our Octo on the reference's weights and inputs: the comparison half of the Octo cross-check.

Runs in the stack's venv (.venv). Reads OUT_DIR/reference.npz (crosscheck/octo/reference.py),
converts the upstream Flax parameter tree with ``converter.convert_official_params`` and
``config_from_official_params`` (what the parameters cannot say, as the release's config.json
would: repeat_task_tokens, window), runs ``OctoModel`` on the same inputs, with the absent wrist
camera as a camera pad mask, and samples the chunk with the Gaussian draws upstream's
``predict_action`` made. Writes RESULT_JSON in crosscheck/render.py's schema.
Usage: python crosscheck/octo/compare.py OUT_DIR RESULT_JSON
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from vla_common.action_space import NormStats
from vla_policy.backends.octo.action_head import DiffusionSampler
from vla_policy.backends.octo.config import OctoConfig
from vla_policy.backends.octo.converter import model_from_official_params
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.processor import unnormalize_actions

TOLERANCE = 1e-4  # fp32, the target
FIXTURE = Path("tests/unit/vla_policy/backends/octo/fixtures/octo_upstream_tiny.npz")  # CI's copy
UPSTREAM = {"repo": "octo-models/octo", "commit": "241fb3514b7c40957a86d869fecb7c7fc353f540"}
# octo-small-1.5's layout per timestep (octo_pretrain_config.py): primary 256x256 / 16 = 16x16
# tokens, wrist 128x128 / 16 = 8x8, the 16 T5 tokens repeated (repeat_task_tokens), 1 readout
EXPECTED_LAYOUT = {"obs_primary": 256, "obs_wrist": 64, "obs_task_language": 16, "readout_action": 1}


def max_abs(ours: torch.Tensor | np.ndarray, reference: np.ndarray) -> float:
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {list(ours.shape)} vs the reference's {list(reference.shape)}")
    return float(np.max(np.abs(ours.astype(np.float64) - reference.astype(np.float64))))


def quantity(name: str, ours, reference: np.ndarray) -> dict:
    return {
        "name": name,
        "shape": list(reference.shape),
        "dtype": "float32",
        "max_abs_diff": max_abs(ours, reference),
        "tolerance": TOLERANCE,
    }


def run(ref: dict[str, np.ndarray]) -> tuple[list[dict], list[dict], OctoModel]:
    # the tree as flat "a/b/c" paths, which the converter reads as it reads the nested tree
    params = {k.removeprefix("param/"): v for k, v in ref.items() if k.startswith("param/")}
    model, config = model_from_official_params(params, repeat_task_tokens=True, window=2)
    images = {c: torch.from_numpy(ref[f"input/image_{c}"]) for c in config.cameras}
    timestep_mask = torch.from_numpy(ref["input/timestep_pad_mask"])
    camera_masks = {c: torch.from_numpy(ref[f"input/pad_mask_image_{c}"]) for c in config.cameras}
    ids = torch.from_numpy(ref["input/input_ids"]).long()
    text_mask = torch.from_numpy(ref["input/attention_mask"]).long()
    quantities, checks = [], []
    with torch.no_grad():
        text = model.encode_text(ids, text_mask)
        quantities.append(
            quantity("T5 encoder states (language tokens)", text, ref["output/language_tokens"])
        )
        for camera in config.cameras:
            tokens = model.image_tokenizers[camera](images[camera])
            quantities.append(
                quantity(
                    f"image tokens, {camera} (SmallStem16)", tokens, ref[f"output/image_tokens_{camera}"]
                )
            )
        readout = model(images, text, timestep_mask, camera_masks)
        quantities.append(quantity("readout embeddings (B x window x width)", readout, ref["output/readout"]))
        for t, noisy, expected in zip(
            ref["input/head_times"],
            ref["input/head_noisy_actions"],
            ref["output/head_predicted_noise"],
            strict=True,
        ):
            time = torch.full((*noisy.shape[:-1], 1), float(t))
            predicted = model.action_head(readout, torch.from_numpy(noisy), time)
            quantities.append(quantity(f"diffusion head's predicted noise at t = {t}", predicted, expected))
        sampler = DiffusionSampler(config, "ddpm", config.diffusion_steps)
        noise = torch.from_numpy(ref["noise/last_timestep"])
        actions = model.sample_actions(readout[:, -1], sampler, None, noise=noise)
    quantities.append(
        quantity("action chunk, normalised (DDPM, upstream's noise)", actions, ref["output/actions"])
    )
    clipped = int((np.abs(ref["output/actions"]) >= config.max_action - 1e-6).sum())
    checks.append(
        {
            "name": "action chunk values inside the +-max_action clip (random weights)",
            "ok": clipped < ref["output/actions"].size,
            "detail": f"{ref['output/actions'].size - clipped} of {ref['output/actions'].size} "
            "(the others sit at +-5 in both; the head's own output is compared unclipped above)",
        }
    )
    stats = NormStats(
        q01=(-1.0,) * config.action_dim,
        q99=(1.0,) * config.action_dim,
        mask=tuple(bool(m) for m in ref["input/action_mask"]),
        mean=tuple(float(v) for v in ref["input/action_mean"]),
        std=tuple(float(v) for v in ref["input/action_std"]),
    )
    names = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
    ours = np.stack([unnormalize_actions(a, stats, names) for a in actions.numpy()])
    expected = ref["output/actions_unnormalized"].copy()
    expected[..., -1] = np.clip(expected[..., -1], 0.0, 1.0)  # ours clips the gripper to [0, 1]
    quantities.append(quantity("action chunk, unnormalised (mean/std where mask)", ours, expected))

    reference_mask = ref["output/attention_mask"].astype(bool)
    ours_mask = model.attention_mask(2, timestep_mask, camera_masks).numpy()
    groups = {g.name: g.num_tokens for g in model.token_groups() if not g.is_prefix}
    length = config.sequence_length(2)
    checks.append(
        {
            "name": "token layout (per timestep) and sequence length",
            "ok": groups == EXPECTED_LAYOUT and length == reference_mask.shape[-1] == 690,
            "detail": f"ours: task_language 16 + 2 x {groups} = {length}; "
            f"upstream: {reference_mask.shape[-1]}",
        }
    )
    differ = int((ours_mask != reference_mask).sum())
    checks.append(
        {
            "name": "attention mask (rules, timestep and camera pad masks), 2 x 690 x 690",
            "ok": differ == 0,
            "detail": f"{differ} entries differ",
        }
    )
    legacy_quantity, legacy_check = octo_1_0_settings(model, images, text, timestep_mask, camera_masks, ref)
    return quantities + [legacy_quantity], checks + [legacy_check], model


def octo_1_0_settings(model: OctoModel, images, text, timestep_mask, camera_masks, ref) -> tuple[dict, dict]:
    """The same weights under Octo 1.0's settings: no repeated task tokens, use_correct_attention off."""
    config = OctoConfig.from_dict(
        {**model.config.to_dict(), "repeat_task_tokens": False, "use_correct_attention": False}
    )
    legacy = OctoModel(config).eval()
    legacy.load_state_dict(model.state_dict())
    with torch.no_grad():
        readout = legacy(images, text, timestep_mask, camera_masks)
    reference_mask = ref["output/legacy_attention_mask"].astype(bool)
    ours_mask = legacy.attention_mask(2, timestep_mask, camera_masks).numpy()
    differ = int((ours_mask != reference_mask).sum()) if ours_mask.shape == reference_mask.shape else -1
    check = {
        "name": "Octo 1.0 settings (use_correct_attention=False, no repeat): attention mask",
        "ok": differ == 0,
        "detail": f"{differ} entries differ (L = {reference_mask.shape[-1]})",
    }
    name = "readout embeddings, Octo 1.0 settings"
    return quantity(name, readout, ref["output/legacy_readout"]), check


@torch.no_grad()
def fourier_precision_check(model: OctoModel) -> dict:
    """What bfloat16 does to the head's time features: the kernel rounded to bf16 (as a bf16 model
    without the float32 kernel would hold it) against the float32 features, for t = 0..19."""
    time = torch.arange(20, dtype=torch.float32)[:, None]
    features = model.action_head.time_preprocess
    exact = features(time)
    kernel = features.kernel.data.clone()
    features.kernel.data = kernel.to(torch.bfloat16).float()
    rounded = features(time)
    features.kernel.data = kernel
    bf16_model = model.action_head.time_preprocess.to(torch.bfloat16)  # keeps its kernel in float32
    kept = bf16_model(time.to(torch.bfloat16)).float()
    model.action_head.time_preprocess.float()
    diff_rounded, diff_kept = float((rounded - exact).abs().max()), float((kept - exact).abs().max())
    return {
        "name": "Fourier time features in a bfloat16 model",
        "ok": diff_kept < diff_rounded,
        "detail": f"a bf16 kernel moves them by {diff_rounded:.3f}; ours keeps the kernel and the phase in "
        f"float32 (output rounded to bf16): {diff_kept:.3f}",
    }


def fixture_check(fresh: Path) -> dict:
    """CI's copy of the tiny model's upstream arrays equals what upstream computes now."""
    if not FIXTURE.is_file():
        return {
            "name": "CI fixture is current",
            "ok": False,
            "detail": f"{FIXTURE} missing: run.sh --write-fixture",
        }
    committed, now = np.load(FIXTURE), np.load(fresh)
    stale = sorted(
        k
        for k in set(committed) | set(now)
        if k not in committed or k not in now or not np.array_equal(committed[k], now[k])
    )
    return {
        "name": "CI fixture is current",
        "ok": not stale,
        "detail": f"{FIXTURE}: {len(now.files)} arrays; differing: {stale[:4] or 'none'}",
    }


@torch.no_grad()
def bfloat16_check(model: OctoModel, ref: dict[str, np.ndarray]) -> dict:
    """Why Octo runs in float32 by default: the same model in bfloat16 against upstream's float32
    (run last: it casts the model)."""
    model = model.to(torch.bfloat16)
    config = model.config
    images = {c: torch.from_numpy(ref[f"input/image_{c}"]) for c in config.cameras}
    camera_masks = {c: torch.from_numpy(ref[f"input/pad_mask_image_{c}"]) for c in config.cameras}
    ids, text_mask = (torch.from_numpy(ref[f"input/{k}"]).long() for k in ("input_ids", "attention_mask"))
    readout = model(
        images,
        model.encode_text(ids, text_mask),
        torch.from_numpy(ref["input/timestep_pad_mask"]),
        camera_masks,
    )
    sampler = DiffusionSampler(config, "ddpm", config.diffusion_steps)
    actions = model.sample_actions(
        readout[:, -1], sampler, None, noise=torch.from_numpy(ref["noise/last_timestep"])
    )
    readout_diff = max_abs(readout.float(), ref["output/readout"])
    chunk_diff = max_abs(actions, ref["output/actions"])
    return {
        "name": "bfloat16 moves the outputs beyond the tolerance (why float32 is the default, also on CUDA)",
        "ok": chunk_diff > TOLERANCE,  # documents the cost: fails if bf16 ever stops mattering
        "detail": f"readouts {readout_diff:.2f}, normalised chunk {chunk_diff:.2f} from upstream's float32",
    }


def main(out_dir: Path, result_path: Path) -> None:
    torch.manual_seed(0)
    ref = dict(np.load(out_dir / "reference.npz"))
    setup = json.loads((out_dir / "reference.json").read_text())
    quantities, checks, model = run(ref)
    checks.append(fixture_check(out_dir / FIXTURE.name))
    checks.append(fourier_precision_check(model))
    checks.append(bfloat16_check(model, ref))
    result = {
        "model": "octo",
        "title": "Octo (Flax) vs vla_policy.backends.octo",
        "upstream": UPSTREAM,
        "reference_env": setup["reference_env"],
        "setup": (
            "octo-small-1.5's structure (`scripts/configs/octo_pretrain_config.py`): SmallStem16 "
            "tokenizers for a 256x256 primary and a 128x128 wrist camera (goal image stacked, zeros), "
            f"T5-base widths with {setup['t5_layers']} layers (t5-base: 12), repeat_task_tokens, one "
            f"action readout, vit_s widths (384, 6 heads) with {setup['transformer_layers']} layers "
            "(octo-small: 12), max_horizon 10, window 2, DiffusionActionHead (4 x 7, 20 steps). "
            f"Random init from seed {setup['seed']} (`OctoModule.init`); our model from that parameter "
            "tree through `converter.convert_official_params` / `config_from_official_params`. "
            "Batch of 2: sample 0 with both cameras, sample 1 with no wrist camera (pad mask) and a "
            "pad first timestep. The chunk is sampled with the Gaussian draws upstream's "
            "`predict_action` makes for a fixed rng (`DiffusionSampler.sample(noise=...)`); the "
            "diffusion head is also compared alone at three steps, unclipped. The unnormalised "
            "chunk's gripper is clipped to [0, 1] on both sides (ours clips it; upstream leaves it). "
            "The same weights are also run with Octo 1.0's settings (`repeat_task_tokens` off, "
            "`use_correct_attention=False`: `OctoConfig.use_correct_attention`). "
            "A tiny model of the same structure (64 and 32 px cameras, width 32) is CI's fixture "
            "`tests/unit/vla_policy/backends/octo/fixtures/octo_upstream_tiny.npz` "
            "(test_octo_upstream_fixture.py; rewritten by `bash crosscheck/octo/run.sh --write-fixture`). "
            "Command: `bash crosscheck/run.sh octo` (or `make crosscheck`)."
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}",
        "quantities": quantities,
        "checks": checks,
    }
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    for q in quantities:
        print(f"  {q['name']}: max abs diff {q['max_abs_diff']:.2e}")
    for c in checks:
        print(f"  {c['name']}: {'ok' if c['ok'] else 'FAILED'} ({c['detail']})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
