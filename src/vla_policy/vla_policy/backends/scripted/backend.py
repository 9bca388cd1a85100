"""Scripted expert as a policy backend (a baseline and demonstration generator, not a VLA).

It reads the simulator's privileged object poses, so it only works in the embedded sim. With
``action_kind="discrete"`` it quantises its deltas into 256 bins with the bridge_orig statistics,
the way OpenVLA's tokens are coded, so the discrete actuation path is exercised end to end. With
``chunk_horizon > 1`` it rolls its phase machine forward on a copy, assuming the arm follows, to
emit a continuous chunk.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from vla_policy.ee_delta import apply_ee_delta
from vla_policy.action_space import ActionSpace, quantize_actions
from vla_policy.backends.scripted.expert import ScriptedExpert
from vla_policy.contract import Observation, PolicyOutput, register_backend


class ScriptedBackend:
    name = "scripted"
    camera_names: tuple[str, ...] = ("primary", "wrist")
    image_size = {"primary": (256, 256), "wrist": (128, 128)}

    def __init__(self, action_kind: str = "continuous", chunk_horizon: int = 1, **_: Any) -> None:
        self.action_space = ActionSpace(kind=action_kind)
        if chunk_horizon < 1:
            raise ValueError(f"chunk_horizon must be >= 1, got {chunk_horizon}")
        # Discrete actions are single steps, as OpenVLA emits them.
        self.horizon = 1 if action_kind == "discrete" else chunk_horizon
        self.expert = ScriptedExpert()

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset()

    def infer(self, observation: Observation) -> PolicyOutput:
        if not observation.privileged or "tool_pose" not in observation.privileged:
            raise ValueError(
                "scripted backend needs the sim's privileged state (/sim/privileged_state); none received"
            )
        privileged = dict(observation.privileged)
        chunk = [self.expert.act(privileged)]
        if self.horizon > 1:
            lookahead = copy.deepcopy(self.expert)
            pose = np.asarray(privileged["tool_pose"], dtype=np.float64)
            for _ in range(self.horizon - 1):
                pose = apply_ee_delta(pose, chunk[-1][:6])
                privileged = {**privileged, "tool_pose": pose.tolist()}
                chunk.append(lookahead.act(privileged))
        values = np.asarray(chunk, dtype=np.float64)
        if self.action_space.kind == "discrete":
            values = quantize_actions(values, self.action_space)
        return PolicyOutput(chunk=values, info={"phase": str(getattr(self.expert, "phase", ""))})


@register_backend("scripted")
def make_scripted_backend(**options: Any) -> ScriptedBackend:
    return ScriptedBackend(**options)
