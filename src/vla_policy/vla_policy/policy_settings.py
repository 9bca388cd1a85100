"""The policy node's parameters in one place, and what they build (pure, no ROS).

The backend, its checkpoint, device and options are loaded once; the cameras and topics shape the
subscriptions; the control rate paces inference: all read-only. How old an observation may be and
how long it waits for its privileged state may change while the node runs
(:func:`build_inference_limits`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_common.action_space import ACTION_KINDS
from vla_common.control_period import step_period_s
from vla_common.parameters import ParameterSpec, control_hz_spec, max_open_loop_spec

DEVICES = ("auto", "cuda", "cpu")

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("backend", "scripted", "Policy backend by name (see vla-stack backends)", read_only=True),
    control_hz_spec("Control steps per second: the step of every chunk, the replanning unit"),
    max_open_loop_spec(),
    ParameterSpec(
        "replan_steps",
        1,
        "Replan once the newest observation is this many control steps newer than the committed "
        "chunk's (1 = every step; the refill trigger may start earlier)",
        minimum=1,
        maximum=1000,
    ),
    ParameterSpec(
        "realtime_chunking",
        False,
        "Join each chunk to the steps the arm runs during its inference (diffusion guidance, or a "
        "prefix blend for other chunking backends)",
    ),
    ParameterSpec(
        "inject_latency_s",
        0.0,
        "Benchmarks only: pad every inference to this latency (s; 0 = off)",
        minimum=0.0,
        maximum=60.0,
        read_only=True,
    ),
    ParameterSpec(
        "inject_latency_jitter_s",
        0.0,
        "Benchmarks only: the padded latency varies uniformly by +- this (s)",
        minimum=0.0,
        maximum=60.0,
        read_only=True,
    ),
    ParameterSpec(
        "max_observation_age_s",
        0.5,
        "Older observations are not inferred on (s)",
        minimum=0.01,
        maximum=10.0,
    ),
    ParameterSpec(
        "cameras", ["primary", "wrist"], "Observation cameras, in the backend's order", read_only=True
    ),
    ParameterSpec("device", "auto", "Where the model runs", choices=DEVICES, read_only=True),
    ParameterSpec(
        "action_kind",
        "continuous",
        "Continuous chunks or discrete 256-bin indices (backends that support both)",
        choices=tuple(ACTION_KINDS),
        read_only=True,
    ),
    ParameterSpec(
        "chunk_horizon",
        4,
        "Action chunk length (backends that support it)",
        minimum=1,
        maximum=256,
        read_only=True,
    ),
    ParameterSpec("checkpoint", "", "Checkpoint directory (model backends)", read_only=True),
    ParameterSpec(
        "joint_states_topic", "/wx250s/joint_states", "sensor_msgs/JointState of the arm", read_only=True
    ),
    ParameterSpec(
        "use_privileged_state", True, "Subscribe /sim/privileged_state (scripted expert)", read_only=True
    ),
    ParameterSpec(
        "privileged_state_wait_s",
        0.2,
        "How long an observation waits for the privileged state of its own frame (s)",
        minimum=0.0,
        maximum=5.0,
    ),
    ParameterSpec(
        "backend_options",
        "{}",
        'JSON object of backend options, e.g. {"unnorm_key": "bridge_orig"}',
        read_only=True,
    ),
    ParameterSpec(
        "cpu_threads",
        1,
        "torch intra-op threads on CPU (0 = torch's default)",
        minimum=0,
        maximum=256,
        read_only=True,
    ),
)


@dataclass(frozen=True)
class InferenceLimits:
    """What the inference thread checks per observation; swapped whole when a parameter changes."""

    max_observation_age_s: float
    privileged_state_wait_s: float
    max_open_loop_s: float
    replan_steps: int
    realtime_chunking: bool


def build_inference_limits(values: Mapping[str, Any]) -> InferenceLimits:
    return InferenceLimits(
        max_observation_age_s=float(values["max_observation_age_s"]),
        privileged_state_wait_s=float(values["privileged_state_wait_s"]),
        max_open_loop_s=float(values["max_open_loop_s"]),
        replan_steps=int(values["replan_steps"]),
        realtime_chunking=bool(values["realtime_chunking"]),
    )


def resolve_device(requested: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is an error."""
    if requested not in DEVICES:
        raise ValueError(f"parameter 'device': '{requested}' is not one of {', '.join(DEVICES)}")
    if requested == "cpu":
        return "cpu"
    try:
        import torch  # lazy: optional and heavy, only a model backend needs it

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if requested == "cuda" and not has_cuda:
        raise ValueError("parameter 'device': 'cuda' requested but no CUDA device is available")
    return "cuda" if has_cuda else "cpu"


def parse_options(text: str) -> dict:
    """The backend_options parameter (a JSON object) as a dict; errors name the parameter."""
    try:
        options = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameter 'backend_options': not JSON ({exc.msg}): {text!r}") from exc
    if not isinstance(options, dict):
        raise ValueError(f"parameter 'backend_options': expected a JSON object, got {text!r}")
    return options


def backend_options(values: Mapping[str, Any], device: str) -> dict:
    """The keyword arguments of make_backend: device, action kind, chunk length, control period,
    checkpoint, extras. A backend whose step is free (the scripted expert) may take ``step_dt_s``;
    a model keeps the step it was trained at (and actuation refuses it at another rate)."""
    options = {
        "device": device,
        "action_kind": values["action_kind"],
        "chunk_horizon": values["chunk_horizon"],
        "step_dt_s": step_period_s(values["control_hz"]),
        **parse_options(values["backend_options"]),
    }
    if values["checkpoint"]:
        options["checkpoint"] = values["checkpoint"]
    return options
