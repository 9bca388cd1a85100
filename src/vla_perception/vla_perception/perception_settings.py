"""The perception node's parameters in one place, and what they build (pure, no ROS).

The cameras, their topics, transports, QoS and policy input sizes, the instruction topic and the
control rate shape the node's subscriptions, publishers and timer: read-only. The frame checks
(synchronisation slop, maximum image age and future offset, frozen-frame time, size limits) may
change while the node runs; :func:`build_frame_checks` checks them as at start-up and the node
swaps the result in whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_common.inbound import MAX_IMAGE_PIXELS
from vla_common.parameters import ParameterSpec, control_hz_spec
from vla_perception.camera_topics import RELIABILITIES
from vla_perception.frame_gate import NS_PER_S, FrameGate, FrameLimits
from vla_perception.preprocess import INTERPOLATIONS, MODES, CameraPreprocess
from vla_perception.sync import ApproximateSync

TRANSPORTS = ("raw", "compressed")
SYNC_QUEUE_SIZE = 5  # frames kept per camera while looking for a set
MAX_COMPRESSED_BYTES = 8 * 1024 * 1024  # a 1920x1200 PNG of a noisy scene stays below this
# The perception process's glibc mmap threshold (vla_common.heap): larger buffers are mapped when
# allocated and given back when freed, so odd-sized frames never fragment the heap. A mapped buffer
# is page-faulted in each time: at the common 256 KiB, rclpy's take of a 640x480 frame (two 0.9 MB
# copies) cost 0.3-0.6 ms per copy on a 2-core VM, more than all of perception's own work. At 1 MiB
# 640x480 rgb8/bgr8 frames come from the heap and are reused; anything larger is still mapped. RSS
# under fuzzed frames of random sizes at the soak's rate, 60 s to 330 s: +3.7 MB at 1 MiB, +9.0 MB
# at 256 KiB (one run each); `vla-stack soak` is the check.
FRAME_MMAP_THRESHOLD_BYTES = 1024 * 1024

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(
        "cameras",
        ["primary", "wrist"],
        "Camera names; each has <name>.topic, .transport, .height, .width",
        read_only=True,
    ),
    control_hz_spec("Rate of the missing-set watchdog (a set is overdue after a period plus the slop)"),
    ParameterSpec(
        "sync_slop_s", 0.05, "Max stamp spread within one synchronised set (s)", minimum=0.0, maximum=1.0
    ),
    ParameterSpec(
        "max_image_age_s", 0.5, "Frames older than this are refused (s)", minimum=0.01, maximum=10.0
    ),
    ParameterSpec(
        "max_future_s",
        0.5,
        "Frames stamped further ahead of the node's clock are refused (s)",
        minimum=0.0,
        maximum=10.0,
    ),
    ParameterSpec(
        "frozen_after_s",
        1.0,
        "Frames with unchanged content (fresh stamps) for this long count as frozen (s); 0: off",
        minimum=0.0,
        maximum=60.0,
    ),
    ParameterSpec(
        "max_pixels",
        MAX_IMAGE_PIXELS,
        "Camera frames of more pixels (raw, or declared by a compressed header) are refused on arrival",
        minimum=1,
        maximum=100_000_000,
    ),
    ParameterSpec(
        "max_compressed_bytes",
        MAX_COMPRESSED_BYTES,
        "Compressed camera frames of more bytes are refused on arrival",
        minimum=1024,
        maximum=1_000_000_000,
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
            f"{name}.reliability",
            "best_effort",
            f"QoS reliability of the subscription to camera '{name}' (reliable needs a reliable publisher)",
            choices=RELIABILITIES,
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
    """One camera: its name, image topic, transport, QoS reliability and how it becomes a policy input."""

    name: str
    topic: str
    transport: str  # raw | compressed
    preprocess: CameraPreprocess
    reliability: str = "best_effort"  # best_effort | reliable


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
    return CameraConfig(
        name, values[f"{name}.topic"], values[f"{name}.transport"], preprocess, values[f"{name}.reliability"]
    )


def _ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


@dataclass(frozen=True)
class FrameChecks:
    """The frame checks that may change at run time, in the units the checkers take."""

    slop_ns: int
    limits: FrameLimits

    def sync(self, cameras: list[str]) -> ApproximateSync:
        # a camera's frame more than the slop older than its newest: its clock jumped back
        return ApproximateSync(cameras, self.slop_ns, queue_size=SYNC_QUEUE_SIZE, max_reorder_ns=self.slop_ns)

    def gate(self) -> FrameGate:
        return FrameGate(self.limits)


def build_frame_checks(values: Mapping[str, Any]) -> FrameChecks:
    """Frame checks from the parameter values; ValueError names the parameter and the value."""
    return FrameChecks(
        slop_ns=_ns(values["sync_slop_s"]),
        limits=FrameLimits(
            max_age_ns=_ns(values["max_image_age_s"]),
            max_future_ns=_ns(values["max_future_s"]),
            frozen_after_ns=_ns(values["frozen_after_s"]),
            max_pixels=int(values["max_pixels"]),
            max_compressed_bytes=int(values["max_compressed_bytes"]),
        ),
    )
