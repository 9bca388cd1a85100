"""The RT-2 backend end to end on tiny random PaliGemma models: loading, constrained decoding, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vla_common.action_space import dequantize_actions
from vla_policy.backends.rt2.action_text import parse_action_text
from vla_policy.backends.rt2.backend import RT2Backend, build_random_rt2, make_rt2_backend
from vla_policy.backends.rt2.binning import RT1_ACTION_HIGH, RT1_ACTION_LOW, ActionBinning
from vla_policy.backends.rt2.config import RT2_CONFIG_FILE, TOKEN_MODES, RT2Config
from vla_policy.backends.rt2.random_model import build_random_paligemma, random_rt2_config
from vla_policy.checkpoint import read_json, write_json
from vla_policy.contract import Observation, validate_output

MODES = TOKEN_MODES  # number_tokens and token_table on a word tokenizer, loc_tokens and digits on Gemma's


def _observation(seed: int, camera: str = "primary", instruction: str = "put the red cube in the bowl"):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (int(rng.integers(20, 80)), int(rng.integers(20, 80)), 3), dtype=np.uint8)
    return Observation(stamp_ns=1, images={camera: image}, instruction=instruction)


def _scrambled_model(seed: int, token_mode: str = "number_tokens"):
    """A tiny PaliGemma whose weights are large enough that its answers differ from token to token."""
    model, processor = build_random_paligemma("tiny", seed=seed, token_mode=token_mode)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model, processor


@pytest.mark.parametrize("mode", MODES)
def test_constrained_decoding_of_random_models_always_parses(mode):
    texts = []
    for seed in range(3 if mode == "digits" else 6):  # digits answers are ~23 tokens instead of 9
        model, processor = _scrambled_model(seed, mode)
        backend = RT2Backend(model, processor, random_rt2_config(processor, mode))
        for step in range(2):
            output = backend.infer(_observation(seed * 10 + step))
            chunk = validate_output(output, backend.action_space)
            parsed = parse_action_text(output.info["action_text"])
            assert output.terminate == parsed.terminate
            token_ids = output.info["token_ids"]
            assert token_ids[-1] == backend.grammar.eos_id and len(token_ids) <= backend.grammar.length
            if mode == "digits":  # the tokenizer's own decode reads the same answer
                decoded = parse_action_text(processor.tokenizer.decode(token_ids, skip_special_tokens=True))
                assert decoded.bins.tolist() == parsed.bins.tolist() and len(token_ids) > 9
            else:
                assert len(token_ids) == 9
            np.testing.assert_allclose(
                dequantize_actions(chunk, backend.action_space)[0], output.info["action"]
            )
            texts.append(output.info["action_text"])
    bins = np.array([parse_action_text(t).bins for t in texts])
    assert len(np.unique(bins)) > 20  # the answers really come from the model, not a constant


def test_unconstrained_random_models_do_not_answer_in_action_text():
    # Why the grammar exists: the same models without it produce text that does not parse.
    failures = 0
    for seed in range(3):
        model, processor = _scrambled_model(seed)
        backend = RT2Backend(model, processor, random_rt2_config(processor))
        inputs = backend._inputs(_observation(seed))
        generated = model.generate(**inputs, max_new_tokens=backend.grammar.length, do_sample=False)
        tokens = generated[0, inputs["input_ids"].shape[-1] :].tolist()
        try:
            parse_action_text(backend.grammar.tokens_to_text(tokens))
        except ValueError:
            failures += 1
    assert failures == 3


@pytest.mark.parametrize("mode", MODES)
def test_loads_the_saved_checkpoint_through_the_registry(tiny_checkpoints, mode):
    from vla_policy.contract import make_backend

    backend = make_backend(
        "rt2", checkpoint=str(tiny_checkpoints[mode]), device="cpu", action_kind="discrete", chunk_horizon=4
    )
    assert backend.config.token_mode == mode
    assert backend.camera_names == ("primary",) and backend.image_size == {"primary": (32, 32)}
    assert backend.action_space.kind == "discrete" and backend.action_space.n_bins == 257
    output = backend.infer(_observation(0))
    assert output.chunk.shape == (1, 7) and output.chunk.dtype == np.int64
    table = read_json(tiny_checkpoints[mode] / RT2_CONFIG_FILE).get("action_token_ids")
    assert (table is not None) == (mode == "token_table")


def test_loc_tokens_with_all_1024_bins_end_to_end():
    model, processor = _scrambled_model(3, "loc_tokens")
    binning = ActionBinning(RT1_ACTION_LOW, RT1_ACTION_HIGH, "bin_centers", "rt1", n_bins=1024)
    backend = RT2Backend(model, processor, RT2Config("loc_tokens", binning))
    assert backend.action_space.n_bins == 1025
    bins = []
    for seed in range(4):
        output = backend.infer(_observation(seed))
        chunk = validate_output(output, backend.action_space)
        np.testing.assert_allclose(dequantize_actions(chunk, backend.action_space)[0], output.info["action"])
        text = processor.tokenizer.decode(output.info["token_ids"], skip_special_tokens=True)
        assert text == "".join(f"<loc{int(v):04d}>" for v in output.info["action_text"].split())
        bins.extend(output.info["model_bins"].tolist())
    assert max(bins) >= 256  # the bins beyond RT-2's 256 are reachable


def test_continuous_action_kind(tiny_checkpoints):
    backend = make_rt2_backend(checkpoint=tiny_checkpoints["number_tokens"], action_kind="continuous")
    output = backend.infer(_observation(1))
    chunk = validate_output(output, backend.action_space)
    assert chunk.dtype == np.float64
    np.testing.assert_allclose(chunk[0], output.info["action"])


def test_prompt_follows_the_rt2_template():
    config = random_rt2_config(build_random_paligemma("tiny")[1])
    assert config.prompt("Put the red cube in the bowl.") == (
        "Q: what action should the robot take to put the red cube in the bowl? A:"
    )


def test_build_random_rt2_for_the_benchmark():
    backend = build_random_rt2("tiny", device="cpu", dtype="float32", seed=0, compile=False)
    validate_output(backend.infer(_observation(2)), backend.action_space)
    with pytest.raises(ValueError, match="rt2 size 'huge' is unknown"):
        build_random_rt2("huge")
    with pytest.raises(ValueError, match="compile"):
        build_random_rt2("tiny", compile=True)
    with pytest.raises(ValueError, match="dtype 'int8'"):
        build_random_rt2("tiny", dtype="int8")


@pytest.fixture()
def checkpoint_copy(tiny_checkpoints, tmp_path):
    return shutil.copytree(tiny_checkpoints["number_tokens"], tmp_path / "copy")


def test_missing_checkpoint_option_and_directory():
    with pytest.raises(ValueError, match="needs 'checkpoint'"):
        make_rt2_backend(device="cpu")
    with pytest.raises(FileNotFoundError, match="directory missing: /nonexistent/rt2"):
        make_rt2_backend(checkpoint="/nonexistent/rt2")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (RT2_CONFIG_FILE, "checkpoint file missing: .*rt2_config.json"),
        ("config.json", "checkpoint file missing: .*config.json"),
        ("model.safetensors", "no model.safetensors"),
    ],
)
def test_missing_file_is_named(checkpoint_copy, name, message):
    (checkpoint_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        make_rt2_backend(checkpoint=checkpoint_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("gripper_convention"), r"missing key\(s\) \['gripper_convention'\]"),
        (lambda c: c["action_ranges"].pop("bin_decoding"), "'action_ranges' needs keys"),
        (lambda c: c.update(token_mode="token_table"), "needs 'action_token_ids'"),
        (
            lambda c: c.update(token_mode="token_table", action_token_ids=list(range(10**6, 10**6 + 256))),
            "vocab",
        ),
        (lambda c: c["action_ranges"].update(low=[2.0] * 7), r"high\[0\]=1.0 is not above low\[0\]=2.0"),
        (lambda c: c.update(prompt_template="Q: act? A:"), "lacks '{instruction}'"),
        (lambda c: c.update(separator_token="<nope>"), "separator_token '<nope>'"),
        (lambda c: c.update(token_mode="digits", separator_token="<eos>"), "'digits' separates integers"),
        (lambda c: c.update(token_mode="loc_tokens", action_token_format="<act{}>"), "no token '<act0>'"),
        (lambda c: c.update(token_mode="loc_tokens", action_token_format="<act>"), "1 different names"),
        (lambda c: c.update(action_token_ids=list(range(256))), "only read in token_mode 'token_table'"),
        (lambda c: c.update(token_mode="words"), "token_mode 'words' is not one of"),
        (lambda c: c["action_ranges"].update(n_bins=1), "n_bins must be an integer >= 2"),
        (lambda c: c["action_ranges"].update(n_bins=2.5), "'action_ranges.n_bins' must be an integer"),
        (lambda c: c.update(token_mode="digits", number_width=2), "number width 2"),
    ],
)
def test_bad_rt2_config_is_a_clear_error(checkpoint_copy, edit, message):
    path = checkpoint_copy / RT2_CONFIG_FILE
    config = read_json(path)
    edit(config)
    write_json(path, config)
    with pytest.raises(ValueError, match=message):
        make_rt2_backend(checkpoint=checkpoint_copy)


def test_config_round_trips_through_json(tiny_checkpoints):
    config = RT2Config.load(tiny_checkpoints["token_table"])
    assert RT2Config.from_dict(config.to_dict()) == config
    assert config.binning.gripper_convention == "rt1" and len(config.action_token_ids) == 256


def test_wrong_camera_and_bad_image_are_named(tiny_checkpoints):
    backend = make_rt2_backend(checkpoint=tiny_checkpoints["number_tokens"])
    with pytest.raises(ValueError, match="lacks camera 'primary'"):
        backend.infer(_observation(0, camera="wrist"))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        backend.infer(Observation(1, {"primary": np.zeros((32, 32), np.uint8)}, "go"))
