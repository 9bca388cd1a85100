"""The Octo backend under the backend contract: a tiny random model saved and loaded through the factory."""

from __future__ import annotations

import numpy as np
from backend_contract import BackendContract, make_observation

from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.backends.octo.backend import build_random_octo
from vla_policy.backends.octo.checkpoint import save_octo_checkpoint
from vla_policy.contract import Observation, validate_output
from vla_policy.contract import make_backend as make_registered


class TestOctoContract(BackendContract):
    def make_backend(self, tmp_path):
        tiny = build_random_octo("tiny", seed=0)
        directory = save_octo_checkpoint(
            tiny.model, tiny.config, BRIDGE_ORIG_STATS, tmp_path / "octo", tokenizer=tiny.tokenizer
        )
        return make_registered(
            "octo", checkpoint=str(directory), device="cpu", action_kind="continuous", chunk_horizon=4
        )

    def test_chunk_is_four_bridge_steps_with_gripper_in_unit_range(self, backend):
        backend.reset(seed=0)
        chunk = np.asarray(backend.infer(make_observation(backend)).chunk)
        assert chunk.shape == (4, 7)
        assert np.all((chunk[:, 6] >= 0.0) & (chunk[:, 6] <= 1.0))

    def test_an_observation_without_the_wrist_camera_is_served_with_the_wrist_masked(self, backend):
        """Bridge has no wrist camera: Octo masks it (pad_mask_dict) instead of refusing."""
        observation = make_observation(backend)
        primary_only = {"primary": observation.images["primary"]}
        out = backend.infer(
            Observation(observation.stamp_ns, primary_only, observation.instruction, observation.proprio)
        )
        assert validate_output(out, backend.action_space).shape == (4, 7)
        assert out.info["absent_cameras"] == ["wrist"]
