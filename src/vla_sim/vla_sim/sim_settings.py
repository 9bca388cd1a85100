"""The sim node's parameters in one place, and the pacing that may change while it runs (pure).

Topics, cameras and their sizes, publishing rates and the control rate shape the node's publishers
and its loop; the episode schedule (seeds, count, family, instruction, step budget, plan file) is
fixed at start so that a run is reproducible from its parameters: all read-only. The pacing (real-
time factor, camera read noise, the settle pause at each episode start) may change at run time
(:func:`build_pacing`); the loop reads it afresh each tick, frame or episode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_common.parameters import ParameterSpec, control_hz_spec

ROBOT_NAME = ParameterSpec(
    "robot_name", "wx250s", "Robot namespace of the topics, as the Interbotix driver uses", read_only=True
)


def sim_parameters(robot_name: str) -> tuple[ParameterSpec, ...]:
    """Every parameter after ``robot_name`` (the default publishers to wait for are in its namespace)."""
    return (
        ParameterSpec(
            "seed",
            0,
            "Seed of the first episode; episode i uses seed + i",
            minimum=0,
            maximum=2**31 - 1,
            read_only=True,
        ),
        ParameterSpec(
            "episodes",
            0,
            "Episodes to run; 0 = run episodes forever",
            minimum=0,
            maximum=100000,
            read_only=True,
        ),
        ParameterSpec("task_family", "", "Task family; empty = the sim's default", read_only=True),
        ParameterSpec("instruction", "", "Instruction override; empty = the task's own", read_only=True),
        ParameterSpec(
            "max_steps",
            80,
            "Control steps per episode before it counts as failed",
            minimum=1,
            maximum=10000,
            read_only=True,
        ),
        control_hz_spec("Control ticks per second: episode steps are counted in them"),
        ParameterSpec(
            "real_time_factor",
            1.0,
            "Sim seconds per wall second; 0 = as fast as possible",
            minimum=0.0,
            maximum=100.0,
        ),
        ParameterSpec(
            "clock_hz", 100.0, "Rate of /clock (sim time)", minimum=10.0, maximum=500.0, read_only=True
        ),
        ParameterSpec(
            "joint_state_hz",
            50.0,
            "Rate of joint_states (sim time)",
            minimum=1.0,
            maximum=500.0,
            read_only=True,
        ),
        ParameterSpec(
            "camera_hz", 10.0, "Rate of each camera (sim time)", minimum=0.5, maximum=60.0, read_only=True
        ),
        ParameterSpec("cameras", ["third_person", "wrist"], "Cameras to publish", read_only=True),
        ParameterSpec("camera_width", 320, "Rendered width (px)", minimum=16, maximum=1920, read_only=True),
        ParameterSpec("camera_height", 240, "Rendered height (px)", minimum=16, maximum=1080, read_only=True),
        ParameterSpec(
            "camera_noise_sigma", 2.0, "Sensor read noise (8-bit levels)", minimum=0.0, maximum=50.0
        ),
        ParameterSpec(
            "settle_wall_s",
            0.5,
            "Wall time the clock pauses at each episode start",
            minimum=0.0,
            maximum=10.0,
        ),
        ParameterSpec(
            "wait_for_graph_s",
            60.0,
            "Wall time to wait for actuation before the first episode",
            minimum=0.0,
            maximum=600.0,
            read_only=True,
        ),
        ParameterSpec(
            "wait_for_publishers",
            ["/vla/action", f"/{robot_name}/arm_controller/joint_trajectory"],
            "Topics that must have a publisher before the first episode starts",
            read_only=True,
        ),
        ParameterSpec(
            "camera_subscribers",
            1,
            "Subscribers each camera needs before the first episode (perception; +1 for a recorder)",
            minimum=0,
            maximum=100,
            read_only=True,
        ),
        ParameterSpec(
            "episode_plan_file",
            "",
            "JSON list of episodes [{seed, family, target_object, base_object, direction, "
            "instruction_text, max_steps}] to run instead of seed + i (vla-stack eval writes it)",
            read_only=True,
        ),
    )


@dataclass(frozen=True)
class Pacing:
    """How the sim loop paces itself; swapped whole when one of its parameters changes."""

    real_time_factor: float  # sim seconds per wall second; 0 = as fast as possible
    camera_noise_sigma: float  # sensor read noise, 8-bit levels
    settle_wall_s: float  # wall pause at each episode start


def build_pacing(values: Mapping[str, Any]) -> Pacing:
    return Pacing(
        real_time_factor=float(values["real_time_factor"]),
        camera_noise_sigma=float(values["camera_noise_sigma"]),
        settle_wall_s=float(values["settle_wall_s"]),
    )
