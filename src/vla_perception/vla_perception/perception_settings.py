"""The perception node's parameters in one place, and what they build (pure, no ROS).

The cameras, their topics and policy input sizes, the instruction topic and the control rate shape
the node's subscriptions, publishers and timer: read-only. The frame checks (synchronisation slop,
maximum image age, frozen-frame limit) may change while the node runs; :func:`build_frame_checks`
checks them as at start-up and the node swaps the result in whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_common.parameters import ParameterSpec, control_hz_spec
from vla_perception.preprocess import INTERPOLATIONS, MODES, CameraPreprocess
from vla_perception.sync import ApproximateSync, FrameHealth

TRANSPORTS = ("raw", "compressed")
SYNC_QUEUE_SIZE = 5  # frames kept per camera while looking for a set

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "cameras",
        ["primary", "wrist"],
        "Camera names; each has <name>.topic, .transport, .height, .width",
        read_only=True,
    ),
    control_hz_spec("Observations per second"),
    ParameterSpec(
        "sync_slop_s", 0.05, "Max stamp spread within one synchronised set (s)", minimum=0.0, maximum=1.0
    ),
    ParameterSpec(
        "max_image_age_s", 0.5, "Frames older than this are refused (s)", minimum=0.01, maximum=10.0
    ),
    ParameterSpec(
        "frozen_repeat_limit",
        30,
        "Identical frames in a row that count as frozen",
        minimum=2,
        maximum=10000,
    ),
    ParameterSpec(
        "instruction_topic", "/vla/instruction", "Latched std_msgs/String instruction", read_only=True
    ),
)


def camera_parameters(name: str) -> tuple[ParameterSpec, ...]:
    """The read-only parameters of camera ``name`` (topic, transport, policy input size, resizing)."""
    return (
        ParameterSpec(
            f"{name}.topic", f"/camera/{name}/image_raw", f"Image topic of camera '{name}'", read_only=True
        ),
        ParameterSpec(
            f"{name}.transport",
            "raw",
            f"sensor_msgs/Image (raw) or CompressedImage for camera '{name}'",
            choices=TRANSPORTS,
            read_only=True,
        ),
        ParameterSpec(
            f"{name}.height", 256, f"Policy input height of '{name}'", minimum=8, maximum=4096, read_only=True
        ),
        ParameterSpec(
            f"{name}.width", 256, f"Policy input width of '{name}'", minimum=8, maximum=4096, read_only=True
        ),
        ParameterSpec(
            f"{name}.resize_mode", "resize", f"How '{name}' is resized", choices=MODES, read_only=True
        ),
        ParameterSpec(
            f"{name}.interpolation",
            "antialias",
            f"Resampling filter for '{name}'",
            choices=tuple(INTERPOLATIONS),
            read_only=True,
        ),
    )


@dataclass(frozen=True)
class CameraConfig:
    """One camera: its name, image topic, transport and how it becomes a policy input."""

    name: str
    topic: str
    transport: str  # raw | compressed
    preprocess: CameraPreprocess


def camera_names(values: Mapping[str, Any]) -> list[str]:
    """The ``cameras`` parameter; ValueError when it is empty."""
    names = list(values["cameras"])
    if not names:
        raise ValueError("parameter 'cameras' is empty: at least one camera is needed")
    return names


def build_camera(name: str, values: Mapping[str, Any]) -> CameraConfig:
    """Camera ``name`` from the values of :func:`camera_parameters`."""
    preprocess = CameraPreprocess(
        height=values[f"{name}.height"],
        width=values[f"{name}.width"],
        mode=values[f"{name}.resize_mode"],
        interpolation=values[f"{name}.interpolation"],
    )
    return CameraConfig(name, values[f"{name}.topic"], values[f"{name}.transport"], preprocess)


@dataclass(frozen=True)
class FrameChecks:
    """The frame checks that may change at run time, in the units the checkers take."""

    slop_ns: int
    max_age_ns: int
    frozen_repeat_limit: int

    def sync(self, cameras: list[str]) -> ApproximateSync:
        return ApproximateSync(cameras, self.slop_ns, queue_size=SYNC_QUEUE_SIZE)

    def health(self) -> FrameHealth:
        return FrameHealth(self.max_age_ns, frozen_repeat_limit=self.frozen_repeat_limit)


def build_frame_checks(values: Mapping[str, Any]) -> FrameChecks:
    """Frame checks from the parameter values; ValueError names the parameter and the value."""
    checks = FrameChecks(
        slop_ns=int(round(values["sync_slop_s"] * 1e9)),
        max_age_ns=int(round(values["max_image_age_s"] * 1e9)),
        frozen_repeat_limit=int(values["frozen_repeat_limit"]),
    )
    checks.health()  # the checker validates its own settings
    return checks
