"""The contract every policy backend passes (subclass BackendContract, implement make_backend).

Images + instruction in; an action of the declared space and shape out; deterministic under a seed.
Each backend's subclass builds a tiny random-weight model in the test (through its real loading
code where it has one).
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_common.action_space import ActionSpace
from vla_policy.contract import Observation, PolicyBackend, PolicyOutput, validate_output

INSTRUCTION = "put the red cube in the bowl"


def make_observation(backend: PolicyBackend, seed: int = 0, instruction: str = INSTRUCTION) -> Observation:
    rng = np.random.default_rng(seed)
    images = {
        camera: rng.integers(0, 256, (*backend.image_size[camera], 3), dtype=np.uint8)
        for camera in backend.camera_names
    }
    proprio = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160, 0.037])
    return Observation(stamp_ns=1_000_000_000, images=images, instruction=instruction, proprio=proprio)


class BackendContract:
    """Subclass and implement ``make_backend(self, tmp_path)`` returning a ready backend."""

    def make_backend(self, tmp_path) -> PolicyBackend:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture()
    def backend(self, tmp_path) -> PolicyBackend:
        return self.make_backend(tmp_path)

    def test_declares_its_interface(self, backend):
        assert isinstance(backend, PolicyBackend)
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.action_space, ActionSpace)
        assert backend.camera_names and set(backend.camera_names) <= set(backend.image_size)

    def test_images_and_instruction_in_action_of_declared_space_out(self, backend):
        backend.reset(seed=0)
        output = backend.infer(make_observation(backend))
        assert isinstance(output, PolicyOutput)
        chunk = validate_output(output, backend.action_space)
        assert chunk.shape[1] == backend.action_space.dim
        if backend.action_space.kind == "discrete":
            assert np.issubdtype(chunk.dtype, np.integer)
        else:
            assert np.all(np.isfinite(chunk))

    def test_deterministic_under_a_seed(self, backend):
        backend.reset(seed=7)
        first = np.asarray(backend.infer(make_observation(backend)).chunk)
        backend.reset(seed=7)
        second = np.asarray(backend.infer(make_observation(backend)).chunk)
        np.testing.assert_array_equal(first, second)

    def test_accepts_images_of_another_size(self, backend):
        # Perception may deliver another input size than the model's; the backend's processor resizes.
        observation = make_observation(backend)
        resized = {name: np.zeros((97, 131, 3), np.uint8) for name in observation.images}
        out = backend.infer(
            Observation(observation.stamp_ns, resized, observation.instruction, observation.proprio)
        )
        validate_output(out, backend.action_space)

    def test_missing_camera_is_a_clear_error(self, backend):
        observation = make_observation(backend)
        with pytest.raises(ValueError, match=backend.camera_names[0]):
            backend.infer(Observation(observation.stamp_ns, {}, observation.instruction, observation.proprio))
