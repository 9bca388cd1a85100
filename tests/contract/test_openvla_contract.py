"""OpenVLA under the backend contract: a tiny random model saved in the official layout, loaded back."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from backend_contract import BackendContract, make_observation

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.openvla.configuration import preset
from vla_policy.backends.openvla.loading import build_model, save_openvla_checkpoint
from vla_policy.backends.openvla.processing import ImageOptions, synthetic_tokenizer
from vla_policy.contract import make_backend

NORM_STATS = {"bridge_orig": {"action": BRIDGE_ORIG_STATS.as_dict()}}


def _tiny_random_model(seed: int = 0):
    """The tiny preset with matrices at std 2 / sqrt(fan_in), so greedy tokens differ between inputs."""
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(preset("tiny"), norm_stats=NORM_STATS), "cpu", torch.float32)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0.0, 2.0 / parameter[0].numel() ** 0.5)
    return model


class TestOpenVLAContract(BackendContract):
    def make_backend(self, tmp_path):
        model = _tiny_random_model()
        save_openvla_checkpoint(
            model, synthetic_tokenizer(model.config.action_vocab_size), NORM_STATS, tmp_path
        )
        return make_backend("openvla", checkpoint=str(tmp_path), device="cpu", progress=False)

    def test_one_step_of_bins_with_the_action_in_info(self, backend):
        output = backend.infer(make_observation(backend))
        assert output.chunk.shape == (1, 7)
        assert output.info["action"].shape == (7,) and np.all(np.isfinite(output.info["action"]))
        assert output.info["unnorm_key"] == "bridge_orig"

    def test_instruction_changes_the_tokens(self, backend):
        first = backend.infer(make_observation(backend, instruction="open the drawer")).info["tokens"]
        second = backend.infer(make_observation(backend, instruction="close the drawer")).info["tokens"]
        assert not np.array_equal(first, second)


class TestOpenVLAContractWithTheEvaluationImagePath(TestOpenVLAContract):
    """The same contract with OpenVLA's evaluation image path: JPEG + Lanczos-3 resize, then the crop."""

    def make_backend(self, tmp_path):
        model = _tiny_random_model()
        save_openvla_checkpoint(
            model, synthetic_tokenizer(model.config.action_vocab_size), NORM_STATS, tmp_path
        )
        return make_backend(
            "openvla",
            checkpoint=str(tmp_path),
            device="cpu",
            progress=False,
            resize="jpeg-lanczos3",
            center_crop=True,
        )

    def test_the_options_are_in_use(self, backend):
        assert backend.image_options == ImageOptions(resize="jpeg-lanczos3", center_crop=True)
