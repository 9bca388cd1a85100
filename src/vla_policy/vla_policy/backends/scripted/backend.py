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

from vla_common.action_space import BRIDGE_STEP_DT_S, ActionSpace, quantize_actions
from vla_common.ee_delta import apply_ee_delta
from vla_policy.backends.scripted.expert import ExpertConfig, ScriptedExpert
from vla_policy.contract import Observation, PolicyOutput

# Through the node graph an action runs 0.05-0.3 s after its observation, and in chunked execution
# the expert cannot know which of its predicted steps ran (a late chunk starts at step 1, temporal
# ensembling averages). So it steps from the measured pose, covering half the remaining distance
# per step: 20/20 seeds in every execution mode of the timing replica (tests/unit/vla_sim).
GRAPH_EXPERT = ExpertConfig(track_commanded_pose=False, step_gain=0.5)


class ScriptedBackend:
    name = "scripted"
    camera_names: tuple[str, ...] = ("primary", "wrist")
    # Nominal, for the contract only: the expert acts on privileged state and never reads pixels,
    # so any size perception sends is accepted (the graph's sizes live in config/perception.yaml).
    image_size = {"primary": (256, 256), "wrist": (128, 128)}

    def __init__(
        self,
        action_kind: str = "continuous",
        chunk_horizon: int = 1,
        expert_config: ExpertConfig | None = None,
        step_dt_s: float = BRIDGE_STEP_DT_S,
        **_: Any,
    ) -> None:
        self.action_space = ActionSpace(kind=action_kind, step_dt_s=step_dt_s)
        if chunk_horizon < 1:
            raise ValueError(f"chunk_horizon must be >= 1, got {chunk_horizon}")
        # Discrete actions are single steps, as OpenVLA emits them.
        self.horizon = 1 if action_kind == "discrete" else chunk_horizon
        self.expert = ScriptedExpert(expert_config or GRAPH_EXPERT)

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset()

    def infer(self, observation: Observation) -> PolicyOutput:
        missing = [camera for camera in self.camera_names if camera not in observation.images]
        if missing:  # the expert ignores pixels, but an observation without them is malformed
            raise ValueError(
                f"observation lacks camera(s) {missing}; the scripted backend expects {self.camera_names}"
            )
        if not observation.privileged or "tool_pose" not in observation.privileged:
            raise ValueError(
                "scripted backend needs the sim's privileged state (/sim/privileged_state); none received"
            )
        privileged = dict(observation.privileged)
        chunk = [self.expert.act(privileged)]
        if self.horizon > 1:
            lookahead = copy.deepcopy(self.expert)
            for _ in range(self.horizon - 1):
                privileged = predict_after_step(privileged, chunk[-1], self.expert.config.in_hand_distance_m)
                chunk.append(lookahead.act(privileged))
        values = np.asarray(chunk, dtype=np.float64)
        if self.action_space.kind == "discrete":
            values = quantize_actions(values, self.action_space)
        return PolicyOutput(chunk=values, info={"phase": str(getattr(self.expert, "phase", ""))})


def predict_after_step(privileged: dict, action: np.ndarray, in_hand_distance_m: float) -> dict:
    """The privileged state one step on, assuming the arm follows ``action`` exactly.

    The target object moves with the tool when the fingers are closed on it; everything else stays.
    Finger positions are kept as measured, so phase changes that wait for the fingers (close,
    release) are not predicted ahead of the real gripper.
    """
    pose = np.asarray(privileged["tool_pose"], dtype=np.float64)
    moved = apply_ee_delta(pose, np.asarray(action[:6], dtype=np.float64))
    state = {**privileged, "tool_pose": moved.tolist()}
    name = privileged.get("target_object")
    objects = privileged.get("objects", {})
    if name in objects:
        obj = objects[name]
        position = np.asarray(obj["position"], dtype=np.float64)
        gripping = privileged.get("finger_m", 1.0) <= float(obj.get("size_m", 0.04)) / 2 + 0.004
        if gripping and np.linalg.norm(position - pose[:3, 3]) < in_hand_distance_m:
            carried = {**obj, "position": (position + moved[:3, 3] - pose[:3, 3]).tolist()}
            state["objects"] = {**objects, name: carried}
    return state


def make_scripted_backend(**options: Any) -> ScriptedBackend:
    return ScriptedBackend(**options)
