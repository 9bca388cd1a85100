"""Checkpoint directories in the official layout: loading, statistics, options and their errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from openvla_fixtures import NORM_STATS, tiny_model

from vla_policy.backends.openvla.backend import build_random_openvla, make_openvla_backend
from vla_policy.contract import Observation, make_backend

IMAGE = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def _observation(instruction: str = "put the red cube in the bowl") -> Observation:
    return Observation(1, {"primary": IMAGE}, instruction)


def _copy(checkpoint_dir, tmp_path):
    return shutil.copytree(checkpoint_dir, tmp_path / "copy")


def test_official_layout_files_are_written(checkpoint_dir):
    names = {p.name for p in checkpoint_dir.iterdir()}
    assert {
        "config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
        "dataset_statistics.json",
    } <= names
    config = json.loads((checkpoint_dir / "config.json").read_text())
    assert config["model_type"] == "openvla" and config["vision_backbone_id"] == "dinosiglip-vit-so-224px"
    assert config["norm_stats"]["bridge_orig"]["action"]["q01"][0] == pytest.approx(-0.02873)
    weight_map = json.loads((checkpoint_dir / "model.safetensors.index.json").read_text())["weight_map"]
    assert "vision_backbone.featurizer.blocks.0.attn.qkv.weight" in weight_map
    assert "vision_backbone.fused_featurizer.attn_pool.kv.weight" in weight_map


def test_loaded_model_reproduces_the_saved_one(checkpoint_dir):
    backend = make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", progress=False)
    original = tiny_model(seed=0)
    pixels = torch.randn(1, 6, 224, 224)
    ids = torch.tensor([[1, 300, 301, 259]])
    torch.testing.assert_close(
        backend.model.multimodal_embeddings(pixels, ids), original.multimodal_embeddings(pixels, ids)
    )
    assert backend.model.projector.fc1.weight.dtype == torch.float32  # CPU default


def test_infer_returns_bins_and_the_unnormalised_action(checkpoint_dir):
    backend = make_backend(
        "openvla", checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", progress=False
    )
    output = backend.infer(_observation())
    assert output.chunk.shape == (1, 7) and output.chunk.dtype == np.int64
    tokens = output.info["tokens"]
    np.testing.assert_array_equal(output.chunk[0], np.clip(512 - tokens - 1, 0, 254))
    from vla_common.action_space import dequantize_actions

    np.testing.assert_allclose(
        output.info["action"], dequantize_actions(output.chunk[0], backend.action_space)
    )
    assert backend.action_space.kind == "discrete" and backend.action_space.stats.q01[0] == pytest.approx(
        -0.02873
    )


def test_unnorm_key_selects_the_statistics(checkpoint_dir):
    other = make_openvla_backend(
        checkpoint=str(checkpoint_dir), unnorm_key="fractal20220817_data", progress=False
    )
    assert other.action_space.stats.q01[0] == pytest.approx(-0.2)


def test_unknown_or_missing_unnorm_key_lists_the_available(checkpoint_dir):
    with pytest.raises(
        ValueError, match=r"unnorm_key 'bridge' not found; available: \['bridge_orig', 'fractal"
    ):
        make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge", progress=False)
    with pytest.raises(ValueError, match=r"2 datasets; pass unnorm_key, one of \['bridge_orig'"):
        make_openvla_backend(checkpoint=str(checkpoint_dir), progress=False)


def test_statistics_fall_back_to_dataset_statistics_json(checkpoint_dir, tmp_path):
    root = _copy(checkpoint_dir, tmp_path)
    config = json.loads((root / "config.json").read_text())
    del config["norm_stats"]
    (root / "config.json").write_text(json.dumps(config))
    backend = make_openvla_backend(checkpoint=str(root), unnorm_key="fractal20220817_data", progress=False)
    assert backend.action_space.stats.q99[0] == pytest.approx(0.2)
    (root / "dataset_statistics.json").unlink()
    with pytest.raises(FileNotFoundError, match="no 'norm_stats' and neither norm_stats.json"):
        make_openvla_backend(checkpoint=str(root), unnorm_key="bridge_orig", progress=False)


def test_missing_files_and_keys_are_named(checkpoint_dir, tmp_path):
    with pytest.raises(ValueError, match="option 'checkpoint'"):
        make_openvla_backend()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        make_openvla_backend(checkpoint=str(tmp_path / "nowhere"))
    root = _copy(checkpoint_dir, tmp_path)
    shard = sorted(root.glob("model-*.safetensors"))[-1]
    shard.rename(root / "moved.bin")
    with pytest.raises(FileNotFoundError, match=shard.name):
        make_openvla_backend(checkpoint=str(root), unnorm_key="bridge_orig", progress=False)
    (root / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        make_openvla_backend(checkpoint=str(root), unnorm_key="bridge_orig", progress=False)
    (root / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_openvla_backend(checkpoint=str(root), unnorm_key="bridge_orig", progress=False)


def test_unsupported_config_values_are_named(checkpoint_dir, tmp_path):
    root = _copy(checkpoint_dir, tmp_path)
    config = json.loads((root / "config.json").read_text())
    config["image_resize_strategy"] = "letterbox"
    (root / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="image_resize_strategy 'letterbox' is not supported"):
        make_openvla_backend(checkpoint=str(root), unnorm_key="bridge_orig", progress=False)


def test_dtype_and_quantisation_options_are_checked(checkpoint_dir):
    with pytest.raises(ValueError, match="dtype 'int3'"):
        make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", dtype="int3")
    with pytest.raises(ValueError, match="load_in '8bit' needs device 'cuda'"):
        make_openvla_backend(
            checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", load_in="8bit", progress=False
        )
    with pytest.raises(ValueError, match="load_in '2bit'"):
        make_openvla_backend(
            checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", load_in="2bit", progress=False
        )


def test_bfloat16_on_request_and_unknown_options_are_ignored(checkpoint_dir):
    backend = make_openvla_backend(
        checkpoint=str(checkpoint_dir),
        unnorm_key="bridge_orig",
        dtype="bfloat16",
        chunk_horizon=4,
        action_kind="continuous",
        some_future_option=True,
        progress=False,
    )
    assert backend.model.projector.fc1.weight.dtype == torch.bfloat16
    assert backend.infer(_observation()).chunk.shape == (1, 7)


def test_random_tiny_backend_for_benchmarks():
    backend = build_random_openvla("tiny", device="cpu", dtype="float32", seed=0)
    assert backend.image_size == {"primary": (224, 224)}
    assert backend.infer(_observation()).chunk.shape == (1, 7)
    with pytest.raises(ValueError, match="size '13b' is unknown"):
        build_random_openvla("13b")
    assert NORM_STATS  # the fixtures' statistics are what the checkpoint carries


def test_remote_code_is_opt_in_warns_and_needs_shipped_code(checkpoint_dir, caplog):
    with caplog.at_level("WARNING"), pytest.raises(ValueError, match="no 'auto_map'"):
        make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", use_remote_code=True)
    assert "executes the modelling code" in caplog.text
    caplog.clear()
    make_openvla_backend(checkpoint=str(checkpoint_dir), unnorm_key="bridge_orig", progress=False)
    assert "executes the modelling code" not in caplog.text
