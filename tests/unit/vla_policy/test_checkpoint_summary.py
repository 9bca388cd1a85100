"""vla_policy.checkpoint_summary: what a checkpoint expects, read without loading its weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vla_bringup.paths import repo_root
from vla_policy.backends.octo.checkpoint import load_octo_checkpoint
from vla_policy.checkpoint import load_safetensors
from vla_policy.checkpoint_summary import safetensors_parameter_count, summarise_checkpoint

OCTO_SIM = repo_root() / "models" / "octo-sim"
sys.path.insert(0, str(Path(__file__).parent / "backends" / "openvla"))  # the OpenVLA tests' builders


def test_octo_sim_summary_matches_what_the_loader_builds():
    summary = summarise_checkpoint(OCTO_SIM)
    loaded = load_octo_checkpoint(OCTO_SIM)
    assert summary.backend == "octo"
    assert summary.cameras == loaded.config.image_size
    assert summary.chunk_length == loaded.config.action_horizon
    assert summary.action_kinds == ("continuous",)
    assert set(summary.stats) == {loaded.stats_key} and summary.stats[loaded.stats_key] == loaded.stats
    assert summary.camera_crops["primary"] == loaded.config.image_crop["primary"]
    assert "wrist" not in summary.camera_crops  # the whole image
    assert any("text encoder minilm" in line for line in summary.architecture)


def test_parameter_count_from_headers_equals_the_tensors():
    tensors = load_safetensors(OCTO_SIM, progress=False)
    assert safetensors_parameter_count(OCTO_SIM) == sum(t.numel() for t in tensors.values())


def test_sharded_openvla_checkpoint(tmp_path):
    from openvla_fixtures import save_tiny_checkpoint

    directory = save_tiny_checkpoint(tmp_path / "openvla", max_shard_bytes=600_000)
    assert len(list(directory.glob("*.safetensors"))) > 1
    summary = summarise_checkpoint(directory)
    tensors = load_safetensors(directory, progress=False)
    assert summary.backend == "openvla" and summary.parameters == sum(t.numel() for t in tensors.values())
    assert summary.chunk_length == 1 and summary.action_kinds == ("discrete",)
    assert sorted(summary.stats) == ["bridge_orig", "fractal20220817_data"]
    assert summary.cameras == {"primary": (224, 224)}
    assert summary.prompt.startswith("In: What action should the robot take to")


def test_rt2_checkpoint(tmp_path):
    from vla_policy.backends.rt2.random_model import save_tiny_rt2_checkpoint

    directory = save_tiny_rt2_checkpoint(tmp_path / "rt2", token_mode="token_table", seed=0)
    summary = summarise_checkpoint(directory)
    assert summary.backend == "rt2" and summary.stats == {}
    assert summary.parameters > 0 and summary.chunk_length == 1
    assert "{instruction}" in summary.prompt
    rt2 = json.loads((directory / "rt2_config.json").read_text())
    assert summary.gripper.startswith(rt2["gripper_convention"])


def test_an_official_release_is_named_and_sent_to_convert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": {}}))
    (tmp_path / "dataset_statistics.json").write_text("{}")
    with pytest.raises(ValueError, match="official Octo release.*vla-stack convert octo"):
        summarise_checkpoint(tmp_path)


def test_unknown_directory_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama' is neither 'octo' nor 'openvla'"):
        summarise_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint directory not found"):
        summarise_checkpoint(tmp_path / "nothing")
