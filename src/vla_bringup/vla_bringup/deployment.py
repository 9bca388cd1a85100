"""The deployment numbers the nodes run with, read from the same params files they load.

The graph replica, the benchmarks and the training collection take the control rate, the chunk
length and the camera input sizes from here, so that they agree with the node graph by
construction: change config/ (or point VLA_STACK_CONFIG_DIR at a copy) and all of them follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vla_bringup.paths import params_file


@dataclass(frozen=True)
class Deployment:
    control_hz: float  # control ticks per second (config/control.yaml)
    max_open_loop_s: float  # a chunk's steps run within this of its observation (config/control.yaml)
    chunk_horizon: int  # actions per policy chunk (config/policy.yaml)
    camera_sizes: dict[str, tuple[int, int]]  # perception camera -> policy input (height, width)

    @property
    def step_dt_s(self) -> float:
        """Seconds per control tick: the step_dt_s every action chunk carries."""
        return 1.0 / self.control_hz


def node_parameters(file_name: str, node: str, directory: Path | None = None) -> dict:
    """The ros__parameters of ``node`` in config/<file_name>.yaml (wildcard '/**' entries first)."""
    document = yaml.safe_load(params_file(file_name, directory).read_text()) or {}
    merged: dict = {}
    for key in ("/**", node, f"/{node}"):
        merged.update((document.get(key) or {}).get("ros__parameters", {}))
    return merged


def load_deployment(directory: Path | None = None) -> Deployment:
    """Read config/control.yaml, policy.yaml and perception.yaml; errors name the file and key."""
    control = node_parameters("control", "/**", directory)
    policy = node_parameters("policy", "policy", directory)
    perception = node_parameters("perception", "perception", directory)
    control_hz = float(require(control, "control_hz", "control.yaml"))
    if not control_hz > 0:
        raise ValueError(f"control.yaml: control_hz must be > 0, got {control_hz}")
    max_open_loop_s = float(require(control, "max_open_loop_s", "control.yaml"))
    chunk_horizon = int(require(policy, "chunk_horizon", "policy.yaml"))
    sizes = {}
    for camera in require(perception, "cameras", "perception.yaml"):
        entry = require(perception, camera, "perception.yaml")
        sizes[camera] = (
            int(require(entry, "height", f"perception.yaml {camera}")),
            int(require(entry, "width", f"perception.yaml {camera}")),
        )
    return Deployment(control_hz, max_open_loop_s, chunk_horizon, sizes)


def require(section: dict, key: str, where: str) -> Any:
    """``section[key]``; KeyError naming ``where`` (the file, and the node or camera) and the key."""
    if key not in section:
        raise KeyError(f"{where}: '{key}' is missing")
    return section[key]
