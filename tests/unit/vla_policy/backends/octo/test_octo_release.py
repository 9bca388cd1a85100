"""An official-layout Octo release -> our checkpoint (vla_policy.backends.octo.release), for real.

The synthetic release is written with orbax and flax (the convert extra, installed by `make test`) in
the layout upstream's save_pretrained writes; crosscheck/octo_release proves that layout against
the upstream code. Here: the conversion gives back exactly the weights the release was written from,
config.json's settings reach the OctoConfig, the chosen dataset's statistics and the tokenizer travel
with the checkpoint, the backend loads and runs it, and a directory that is not a release is refused
by name.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.octo.backend import make_octo_backend
from vla_policy.backends.octo.checkpoint import load_octo_checkpoint
from vla_policy.backends.octo.release import (
    ReleaseLayoutError,
    config_overrides,
    convert_release,
    example_batch_shapes,
    read_release,
    select_statistics,
)
from vla_policy.backends.octo.synthetic_release import (
    OTHER_DATASET,
    SYNTHETIC_STEP,
    T5_TIED,
    synthetic_config,
    write_synthetic_release,
    write_t5_tokenizer,
)
from vla_policy.checkpoint import load_safetensors
from vla_policy.contract import Observation


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("octo_release")
    directory, state = write_synthetic_release(root / "octo-synthetic-1.5", seed=3)
    tokenizer = write_t5_tokenizer(root / "t5-base")
    return directory, state, tokenizer


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    directory, _, tokenizer = release
    out = tmp_path_factory.mktemp("converted") / "octo"
    return convert_release(directory, out, tokenizer, dataset="bridge_dataset")


def test_release_has_the_official_layout(release):
    directory, _, _ = release
    names = {p.name for p in directory.iterdir()}
    assert {"config.json", "dataset_statistics.json", "example_batch.msgpack", str(SYNTHETIC_STEP)} <= names
    assert (directory / str(SYNTHETIC_STEP) / "default").is_dir()
    shapes = example_batch_shapes(directory / "example_batch.msgpack")
    assert shapes["observation/image_primary"] == (1, 2, 64, 64, 3)
    assert shapes["task/language_instruction/input_ids"] == (1, 16)


def test_conversion_gives_back_the_weights_the_release_was_written_from(release, converted):
    _, state, _ = release
    saved = load_safetensors(converted.directory, progress=False)
    expected = {k: v for k, v in state.items() if k != T5_TIED}
    assert set(saved) - {T5_TIED} == set(expected)
    worst = max(float((saved[k] - v).abs().max()) for k, v in expected.items())
    assert worst == 0.0, worst


def test_config_json_settings_reach_the_model_config(converted):
    config = load_octo_config_dict(converted.directory)
    reference = synthetic_config()
    assert config["repeat_task_tokens"] is True
    assert config["window"] == reference.window == 2
    assert [tuple(s) for s in config["image_sizes"]] == [(64, 64), (32, 32)]
    assert (config["action_horizon"], config["action_dim"]) == (4, 7)
    assert config["num_inference_steps"] == config["diffusion_steps"] == 20
    assert (config["scheduler"], config["prediction_type"]) == ("ddpm", "epsilon")
    assert config["head_num_blocks"] == 2 and config["stem_features"] == [32, 32, 32, 32]


def load_octo_config_dict(directory):
    return json.loads((directory / "config.json").read_text())


def test_statistics_of_the_chosen_dataset_with_their_mask(converted):
    stats = json.loads((converted.directory / "norm_stats.json").read_text())
    assert list(stats) == ["bridge_dataset"]
    action = stats["bridge_dataset"]["action"]
    assert action["mask"] == [True] * 6 + [False]
    assert action["mean"] == pytest.approx(list(BRIDGE_ORIG_STATS.mean))
    assert action["q99"] == pytest.approx(list(BRIDGE_ORIG_STATS.q99))


def test_tokenizer_travels_with_the_checkpoint(release, converted):
    from transformers import AutoTokenizer

    source = AutoTokenizer.from_pretrained(str(release[2]), local_files_only=True)
    loaded = load_octo_checkpoint(converted.directory)
    text = "put the red cube in the bowl"
    assert loaded.tokenizer(text)["input_ids"] == source(text)["input_ids"]
    assert source(text)["input_ids"][-1] == 1  # T5 appends </s>


def test_backend_runs_the_converted_checkpoint(converted):
    backend = make_octo_backend(checkpoint=str(converted.directory), seed=0)
    image = np.zeros((128, 128, 3), np.uint8)
    out = backend.infer(
        Observation(images={"primary": image, "wrist": image}, instruction="pick up the cube", stamp_ns=1)
    )
    assert out.chunk.shape == (4, 7) and np.all(np.isfinite(out.chunk))


def test_the_loader_compiles_on_request(converted):
    """``backend_options: {"compile": true}`` reaches the real loader (compiled at first inference)."""
    plain = make_octo_backend(str(converted.directory))
    compiled = make_octo_backend(str(converted.directory), compile=True)
    assert not isinstance(plain.model.transformer, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(compiled.model.transformer, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(compiled.model.action_head, torch._dynamo.eval_frame.OptimizedModule)


def test_ocdbt_checkpoints_convert_too(tmp_path):
    directory, state = write_synthetic_release(tmp_path / "release", seed=1, use_ocdbt=True)
    result = convert_release(
        directory, tmp_path / "out", write_t5_tokenizer(tmp_path / "t5"), dataset=OTHER_DATASET
    )
    saved = load_safetensors(result.directory, progress=False)
    key = "transformer.blocks.1.attention.out.weight"
    assert torch.equal(saved[key], state[key])
    mask = json.loads((result.directory / "norm_stats.json").read_text())[OTHER_DATASET]["action"]["mask"]
    assert mask == [True] * 7


def test_two_datasets_need_a_choice_and_unknown_ones_are_listed(release, tmp_path):
    directory, _, tokenizer = release
    with pytest.raises(ReleaseLayoutError, match="pick one with --dataset.*bridge_dataset"):
        convert_release(directory, tmp_path / "a", tokenizer)
    with pytest.raises(ReleaseLayoutError, match="'bridge' not found; available: \\['bridge_dataset', "):
        convert_release(directory, tmp_path / "b", tokenizer, dataset="bridge")


def test_a_fine_tune_holds_one_dataset_and_a_missing_mask_normalises_everything():
    entry = {"action": {k: v for k, v in BRIDGE_ORIG_STATS.as_dict().items() if k != "mask"}}
    entry["action"]["p01"], entry["action"]["p99"] = entry["action"].pop("q01"), entry["action"].pop("q99")
    key, stats = select_statistics({**entry, "proprio": {}}, None, "dataset_statistics.json")
    assert key == "default" and stats.mask == (True,) * 7  # as upstream's sample_actions


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: shutil.rmtree(d / str(SYNTHETIC_STEP)), "no <step>/default/ checkpoint folder"),
        (
            lambda d: _edit_config(d, ["model", "heads", "action", "name"], "MSEActionHead"),
            "implements one 'action' DiffusionActionHead",
        ),
        (lambda d: _edit_config(d, ["text_processor"], None), "needs HFTokenizer"),
        (lambda d: _edit_config(d, ["model"], None), "no 'model' section"),
    ],
)
def test_not_a_release_is_refused_by_name(release, tmp_path, damage, message):
    copy = tmp_path / "release"
    shutil.copytree(release[0], copy)
    damage(copy)
    with pytest.raises(ReleaseLayoutError, match=message):
        read_release(copy)


def _edit_config(directory, path, value):
    config = json.loads((directory / "config.json").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (directory / "config.json").write_text(json.dumps(config))


def test_a_tokenizer_bigger_than_the_embedding_is_refused(release, tmp_path):
    directory, _, _ = release
    big = write_t5_tokenizer(tmp_path / "t5", vocab_size=4096)
    # the unigram vocabulary has ~100 pieces; pad it past the 128-row embedding with added tokens
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(big), local_files_only=True)
    tokenizer.add_tokens([f"tok{i}" for i in range(64)])
    tokenizer.save_pretrained(str(big))
    with pytest.raises(ValueError, match="more than the T5 embedding's 128 rows"):
        convert_release(directory, tmp_path / "out", big, dataset="bridge_dataset")


def test_attention_flags_follow_config_json_with_upstream_defaults(release):
    directory, _, _ = release
    released = read_release(directory)
    assert config_overrides(released)["use_correct_attention"] is True
    assert config_overrides(released)["repeat_task_tokens"] is True
    del released.config["model"]["repeat_task_tokens"], released.config["model"]["use_correct_attention"]
    assert not config_overrides(released)["repeat_task_tokens"]  # OctoModule.create's defaults
    assert not config_overrides(released)["use_correct_attention"]


def test_without_the_convert_extra_the_command_names_it(release, tmp_path, monkeypatch):
    from vla_stack.cli import main

    directory, _, tokenizer = release
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # as if orbax-checkpoint were not installed
    argv = ["convert", "octo", str(directory), str(tmp_path / "out"), "--tokenizer", str(tokenizer)]
    with pytest.raises(SystemExit, match="needs the convert extra .*requirements-convert.txt"):
        main([*argv, "--dataset", "bridge_dataset"])
    assert not (tmp_path / "out").exists()
