"""The shipped default policy: its weights are committed, small, and load through the real backend."""

from __future__ import annotations

import json

import numpy as np

from vla_bringup.paths import repo_root
from vla_bringup.policies import DEFAULT_POLICY, resolve_policy
from vla_policy.contract import Observation, make_backend, validate_output


def test_the_default_is_the_trained_policy_with_committed_weights_under_25_mb():
    assert DEFAULT_POLICY == "octo-sim"
    spec = resolve_policy(DEFAULT_POLICY)
    checkpoint = repo_root() / "models" / "octo-sim"
    assert spec.checkpoint == str(checkpoint)
    files = {p.name: p.stat().st_size for p in checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "norm_stats.json"} <= set(files)
    total = files["config.json"] + files["model.safetensors"] + files["norm_stats.json"]
    assert total <= 25 * 1024 * 1024, files
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "octo" and config["action_horizon"] == 4


def test_the_default_checkpoint_infers_a_finite_chunk_and_reads_the_instruction():
    spec = resolve_policy(DEFAULT_POLICY)
    backend = make_backend(spec.backend, checkpoint=spec.checkpoint, device="cpu", **spec.options)
    rng = np.random.default_rng(0)
    images = {"primary": rng.integers(0, 255, (240, 320, 3), np.uint8)}
    images["wrist"] = rng.integers(0, 255, (240, 320, 3), np.uint8)
    proprio = np.array([0.0, -0.5, 0.5, 0.0, 0.5, 0.0, 0.03])
    chunks = {}
    for text in ("pick up the red cube", "push the blue cylinder to the left"):
        backend.reset(seed=0)
        output = backend.infer(Observation(1, images, text, proprio))
        chunks[text] = validate_output(output, backend.action_space)
        assert chunks[text].shape == (4, 7) and np.isfinite(chunks[text]).all()
    first, second = chunks.values()
    assert not np.allclose(first, second)  # same scene, same sampler seed: only the words differ
