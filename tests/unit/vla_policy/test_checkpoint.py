import json

import pytest
import torch

from vla_policy.checkpoint import (
    load_norm_stats,
    load_safetensors,
    load_state_dict_strict,
    read_json,
    save_safetensors,
)


def test_read_json_names_file_and_missing_keys(tmp_path):
    path = tmp_path / "config.json"
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_json(path)
    path.write_text('{"a": 1}')
    with pytest.raises(ValueError, match=r"config.json: missing key\(s\) \['b'\]"):
        read_json(path, required=("a", "b"))
    path.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(path)


def test_single_and_sharded_safetensors(tmp_path):
    save_safetensors({"a": torch.ones(2)}, tmp_path / "model.safetensors")
    assert set(load_safetensors(tmp_path, progress=False)) == {"a"}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_safetensors({"a": torch.ones(2)}, sharded / "model-00001-of-00002.safetensors")
    save_safetensors({"b": torch.zeros(3)}, sharded / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    tensors = load_safetensors(sharded, progress=False)
    assert tensors["b"].shape == (3,) and tensors["a"].sum() == 2
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002"):
        load_safetensors(sharded, progress=False)


def test_strict_loading_names_keys_and_shapes():
    module = torch.nn.Linear(2, 3)
    with pytest.raises(
        KeyError, match=r"ckpt: 1 missing key\(s\) \['bias'\].*1 unexpected key\(s\) \['extra'\]"
    ):
        load_state_dict_strict(module, {"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, "ckpt")
    with pytest.raises(ValueError, match=r"'weight' has shape \(2, 2\)"):
        load_state_dict_strict(module, {"weight": torch.zeros(2, 2), "bias": torch.zeros(3)}, "ckpt")


def test_norm_stats_unnorm_key(tmp_path):
    entry = {"action": {"q01": [0.0], "q99": [1.0], "mask": [True]}}
    path = tmp_path / "norm_stats.json"
    path.write_text(json.dumps({"bridge_orig": entry, "fractal": entry}))
    key, stats = load_norm_stats(path, "bridge_orig")
    assert key == "bridge_orig" and stats.q99 == (1.0,)
    with pytest.raises(
        ValueError, match=r"unnorm_key 'libero' not found; available: \['bridge_orig', 'fractal'\]"
    ):
        load_norm_stats(path, "libero")
    with pytest.raises(ValueError, match="pass unnorm_key"):
        load_norm_stats(path)
