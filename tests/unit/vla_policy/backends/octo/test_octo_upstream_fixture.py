"""Our Octo against numbers upstream's code computed, in CI without jax.

fixtures/octo_upstream_tiny.npz is written by ``bash crosscheck/octo/run.sh --write-fixture``
(crosscheck/octo/reference.py, octo-models/octo @ 241fb35 in .venv-crosscheck/octo): a tiny
``OctoModule`` with octo-small-1.5's structure (SmallStem16 primary and wrist tokenizers with the goal
image stacked, a T5 language tokenizer, repeat_task_tokens=True, one action readout, the diffusion
head; widths shrunk), its randomly initialised Flax parameter tree (float16-exact values), its
inputs (sample 1: no wrist camera, a pad first timestep), and its outputs: readouts, attention
masks, the head's predicted noise, and ``predict_action``'s chunk with the Gaussian draws it made.
The full-size comparison is docs/crosscheck.md; ``make crosscheck`` says when this copy is stale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.action_head import DiffusionSampler
from vla_policy.backends.octo.config import OctoConfig
from vla_policy.backends.octo.converter import model_from_official_params
from vla_policy.backends.octo.model import OctoModel

FIXTURE = Path(__file__).parent / "fixtures" / "octo_upstream_tiny.npz"
ATOL = 1e-4  # float32, the cross-check's tolerance


@pytest.fixture(scope="module")
def upstream() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as arrays:
        return dict(arrays)


@pytest.fixture(scope="module")
def converted(upstream) -> OctoModel:
    params = {
        k.removeprefix("param/"): v.astype(np.float32) for k, v in upstream.items() if k.startswith("param/")
    }
    model, _ = model_from_official_params(params, repeat_task_tokens=True, window=2)
    return model


def run(model: OctoModel, upstream: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Readouts (B, T, width) and the T5 states on upstream's inputs, and the inputs as tensors."""
    cameras = model.config.cameras
    inputs = {
        "images": {c: torch.from_numpy(upstream[f"input/image_{c}"]) for c in cameras},
        "timestep_mask": torch.from_numpy(upstream["input/timestep_pad_mask"]),
        "camera_masks": {c: torch.from_numpy(upstream[f"input/pad_mask_image_{c}"]) for c in cameras},
    }
    with torch.no_grad():
        text = model.encode_text(
            torch.from_numpy(upstream["input/input_ids"]).long(),
            torch.from_numpy(upstream["input/attention_mask"]).long(),
        )
        readout = model(inputs["images"], text, inputs["timestep_mask"], inputs["camera_masks"])
    return readout, text, inputs


def test_the_converted_tree_runs_upstreams_layout_and_readouts(upstream, converted):
    readout, text, inputs = run(converted, upstream)
    assert converted.config.sequence_length() == upstream["output/attention_mask"].shape[-1]
    mask = converted.attention_mask(2, inputs["timestep_mask"], inputs["camera_masks"]).numpy()
    np.testing.assert_array_equal(mask, upstream["output/attention_mask"])
    np.testing.assert_allclose(text.numpy(), upstream["output/language_tokens"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(readout.numpy(), upstream["output/readout"], rtol=0, atol=ATOL)


def test_the_head_and_the_ddpm_chunk_match_upstream_for_its_noise(upstream, converted):
    readout, _, _ = run(converted, upstream)
    times, noisy = upstream["input/head_times"], upstream["input/head_noisy_actions"]
    with torch.no_grad():
        for t, x, expected in zip(times, noisy, upstream["output/head_predicted_noise"], strict=True):
            predicted = converted.action_head(
                readout, torch.from_numpy(x), torch.full((*x.shape[:-1], 1), float(t))
            )
            np.testing.assert_allclose(predicted.numpy(), expected, rtol=0, atol=ATOL)
        sampler = DiffusionSampler(converted.config, "ddpm", converted.config.diffusion_steps)
        noise = torch.from_numpy(upstream["noise/last_timestep"])
        actions = converted.sample_actions(readout[:, -1], sampler, None, noise=noise)
    expected = upstream["output/actions"]
    assert (np.abs(expected) < converted.config.max_action).sum() > 10  # not everything at the clip
    np.testing.assert_allclose(actions.numpy(), expected, rtol=0, atol=ATOL)


def test_octo_1_0_settings_match_upstream(upstream, converted):
    """The same tree with upstream's repeat_task_tokens=False, use_correct_attention=False."""
    config = OctoConfig.from_dict(
        {**converted.config.to_dict(), "repeat_task_tokens": False, "use_correct_attention": False}
    )
    legacy = OctoModel(config).eval()
    legacy.load_state_dict(converted.state_dict())
    readout, _, inputs = run(legacy, upstream)
    mask = legacy.attention_mask(2, inputs["timestep_mask"], inputs["camera_masks"]).numpy()
    np.testing.assert_array_equal(mask, upstream["output/legacy_attention_mask"])
    np.testing.assert_allclose(readout.numpy(), upstream["output/legacy_readout"], rtol=0, atol=ATOL)
