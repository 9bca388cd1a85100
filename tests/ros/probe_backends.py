"""A backend for DDS tests of the policy node's schedule: each chunk says which inference made it.

Loaded by the policy node process through the import-path form of the ``backend`` parameter
(``probe_backends:make_counting_backend``; the test puts tests/ros on the node's PYTHONPATH). It
is a real backend of the contract, not a model: chunk ``k`` of an episode holds ``k *
COUNT_STEP_M`` in every row's x (the rest 0, the gripper open), so a test reading /vla/action can
tell the rows the policy node copied from the committed chunk (real-time chunking's prefix) from
the backend's own.
"""

from __future__ import annotations

import numpy as np

from vla_common.action_space import ActionSpace
from vla_policy.contract import Observation, PolicyOutput

COUNT_STEP_M = 0.001  # x of chunk k's rows: k mm


class CountingBackend:
    name = "counting_probe"
    guides_chunks = False  # the policy node blends its prefix

    def __init__(self, horizon: int, step_dt_s: float) -> None:
        self.horizon = horizon
        self.action_space = ActionSpace(step_dt_s=step_dt_s)
        self.camera_names = ("primary",)
        self.image_size = {"primary": (8, 8)}
        self.count = 0

    def reset(self, seed: int | None = None) -> None:
        self.count = 0

    def infer(self, observation: Observation) -> PolicyOutput:
        self.count += 1
        chunk = np.zeros((self.horizon, 7))
        chunk[:, 0] = self.count * COUNT_STEP_M
        chunk[:, 6] = 1.0
        return PolicyOutput(chunk=chunk, info={"count": self.count})


def make_counting_backend(chunk_horizon: int = 4, step_dt_s: float = 0.2, **_: object) -> CountingBackend:
    return CountingBackend(int(chunk_horizon), float(step_dt_s))
