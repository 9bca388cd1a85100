"""The scripted expert under the backend contract (with a synthetic privileged scene)."""

from __future__ import annotations

import numpy as np
import pytest
from backend_contract import BackendContract, make_observation

from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD, forward_kinematics
from vla_policy.contract import Observation
from vla_policy.contract import make_backend as make_registered


def _privileged() -> dict:
    return {
        "objects": {
            "red_cube": {
                "position": [0.3, 0.05, 0.02],
                "yaw": 0.2,
                "colour": "red",
                "shape": "cube",
                "size_m": 0.04,
            }
        },
        "target_object": "red_cube",
        "destination": "bowl",
        "destination_position": [0.3, -0.1, 0.0],
        "tool_pose": forward_kinematics(BRIDGE_NEUTRAL_JOINTS_RAD).tolist(),
        "finger_m": 0.037,
        "time_s": 0.0,
    }


class _WithPrivileged:
    """Wraps the scripted backend so the shared contract's observations carry the sim's state."""

    def __init__(self, inner):
        self._inner = inner
        self.name, self.action_space = inner.name, inner.action_space
        self.camera_names, self.image_size = inner.camera_names, inner.image_size

    def reset(self, seed=None):
        self._inner.reset(seed)

    def infer(self, observation: Observation):
        return self._inner.infer(
            Observation(
                observation.stamp_ns,
                observation.images,
                observation.instruction,
                observation.proprio,
                _privileged(),
            )
        )


@pytest.mark.parametrize("action_kind", ["continuous", "discrete"])
class TestScriptedContract(BackendContract):
    @pytest.fixture()
    def backend(self, action_kind):
        return _WithPrivileged(make_registered("scripted", action_kind=action_kind, chunk_horizon=4))

    def test_discrete_is_single_step_and_continuous_chunked(self, backend, action_kind):
        chunk = np.asarray(backend.infer(make_observation(backend)).chunk)
        assert chunk.shape == ((1, 7) if action_kind == "discrete" else (4, 7))
