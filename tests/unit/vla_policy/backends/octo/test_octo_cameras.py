"""An absent camera is a pad mask (Octo's pad_mask_dict), not a refusal: Bridge has no wrist camera."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.backend import build_random_octo
from vla_policy.backends.octo.processor import unnormalize_actions
from vla_policy.contract import Observation

INSTRUCTION = "put the red cube in the bowl"


def random_images(backend, rng: np.random.Generator, window: int = 2) -> dict[str, torch.Tensor]:
    return {
        c: torch.from_numpy(rng.integers(0, 256, (1, window, *backend.image_size[c], 3), dtype=np.uint8))
        for c in backend.camera_names
    }


@pytest.mark.parametrize("overrides", [{}, {"proprio_dim": 7, "object_slots": 4}])
def test_a_masked_cameras_pixels_do_not_reach_the_readout(overrides):
    backend = build_random_octo("tiny", seed=0, **overrides)
    model = backend.model
    rng = np.random.default_rng(0)
    images = random_images(backend, rng)
    other = {**images, "wrist": 255 - images["wrist"]}
    text, text_mask = backend._text_embedding(INSTRUCTION)
    steps = torch.ones(1, 2, dtype=torch.bool)
    no_wrist = {"wrist": torch.zeros(1, 2, dtype=torch.bool)}
    proprio = torch.zeros(1, 2, 7) if overrides else None
    with torch.no_grad():
        masked = model(images, text, steps, no_wrist, proprio=proprio)
        masked_other = model(other, text, steps, no_wrist, proprio=proprio)
        seen = model(images, text, steps, proprio=proprio)
        seen_other = model(other, text, steps, proprio=proprio)
    torch.testing.assert_close(masked, masked_other, rtol=0, atol=0)
    assert not torch.allclose(seen, seen_other)  # unmasked, the same change does reach it
    assert not torch.allclose(masked, seen)


def test_camera_masks_name_an_unknown_camera(tiny_backend):
    with pytest.raises(ValueError, match="'left'"):
        tiny_backend.model.attention_mask(1, torch.ones(1, 1, dtype=torch.bool), {"left": torch.ones(1, 1)})


def test_an_observation_without_the_wrist_camera_runs_with_the_wrist_masked(tiny_backend):
    rng = np.random.default_rng(1)
    primary = rng.integers(0, 256, (*tiny_backend.image_size["primary"], 3), dtype=np.uint8)
    wrist = rng.integers(0, 256, (*tiny_backend.image_size["wrist"], 3), dtype=np.uint8)

    def chunk(images: dict) -> tuple[np.ndarray, dict]:
        tiny_backend.reset(seed=4)
        out = tiny_backend.infer(Observation(1, images, INSTRUCTION))
        out = tiny_backend.infer(Observation(2, images, INSTRUCTION))  # a full window
        return out.chunk, out.info

    absent, info = chunk({"primary": primary})
    assert info["absent_cameras"] == ["wrist"] and absent.shape == (4, 7)
    present, info = chunk({"primary": primary, "wrist": wrist})
    black, _ = chunk({"primary": primary, "wrist": np.zeros_like(wrist)})
    assert info["absent_cameras"] == []
    assert not np.allclose(absent, present)
    assert not np.allclose(absent, black)  # masked, not a black image
    # the backend's absent camera is the model's pad mask, whatever pixels stand behind it
    tiny_backend.reset(seed=4)
    model = tiny_backend.model
    text, _ = tiny_backend._text_embedding(INSTRUCTION)
    images = {
        "primary": torch.from_numpy(np.stack([primary, primary]))[None],
        "wrist": torch.from_numpy(np.stack([wrist, wrist]))[None],
    }
    with torch.no_grad():
        readout = model(images, text, torch.ones(1, 2, dtype=torch.bool), {"wrist": torch.zeros(1, 2)})
        model.sample_actions(readout[:, -1], tiny_backend.sampler, tiny_backend.generator)  # the first step's
        normalized = model.sample_actions(readout[:, -1], tiny_backend.sampler, tiny_backend.generator)
    space = tiny_backend.action_space
    expected = unnormalize_actions(normalized[0].numpy(), space.stats, space.dim_names)
    np.testing.assert_allclose(absent, expected, rtol=0, atol=1e-6)


def test_an_observation_without_any_of_the_cameras_is_refused(tiny_backend):
    with pytest.raises(ValueError, match=r"none of the cameras \['primary', 'wrist'\]"):
        tiny_backend.infer(Observation(1, {"left": np.zeros((8, 8, 3), np.uint8)}, INSTRUCTION))
