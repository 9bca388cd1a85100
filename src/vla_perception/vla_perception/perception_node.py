"""Perception: any number of cameras in, a synchronised observation out as soon as a set is complete.

Each camera (raw sensor_msgs/Image or CompressedImage, sensor-data QoS) feeds an approximate time
synchroniser. Frames arrive serialized (a raw subscription) and are read in place by wire_frame
(the pixels are never copied into a Python message). A frame is checked on arrival (wire_frame: a
malformed buffer; frame_gate: stamps, size bounds, data, structure, frozen content) and refused
with a reason before it is queued. The frame that completes a set (every camera has a frame newer
than its frame in the last set, all within the slop) publishes it from its own callback, at most
at the camera rate: the set is checked for age, decoded, resized to the policy's input size and
published as rgb8 on /vla/observation/<camera>, every image under the set's stamp (serialized by
wire_frame, published raw). No timer delays it; the policy takes the newest observation when it
is free.

A refused frame counts ``rejected.frame.<camera>`` and ``refused.<cause>.<camera>`` (causes in
frame_gate) in /diagnostics, its reason becomes the status and is logged (throttled). A watchdog
timer at the control rate reports a missing set: when none was published for longer than a
control period plus the slop (sync.set_overdue_after_ns says why), it counts ``no_sync`` and names
the camera without frames (and why its topic is silent) or the one lagging past the slop. An
incompatible QoS on a camera subscription counts ``qos_incompatible.<camera>`` and is reported as
an error.
"""

from __future__ import annotations

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from vla_common.control_period import step_period_s
from vla_common.heap import fix_mmap_threshold
from vla_common.inbound import check_instruction, decode_episode_event
from vla_common.latency import StageTimer
from vla_common.ros.callback_guard import CallbackGuard, MessageRejections
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, run_node, stamp_to_ns
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_perception.camera_topics import Publisher, incompatible_qos_reason, silent_camera_reason
from vla_perception.frame_gate import Refusal, check_stamp
from vla_perception.image_codec import (
    compressed_to_array,
    decoded_encoding,
    image_to_array,
)
from vla_perception.perception_settings import (
    FRAME_MMAP_THRESHOLD_BYTES,
    PARAMETERS,
    CameraConfig,
    FrameChecks,
    build_camera,
    build_frame_checks,
    camera_names,
    camera_parameters,
)
from vla_perception.preprocess import CameraPreprocess, to_policy_input
from vla_perception.sync import SetWatchdog, set_overdue_after_ns
from vla_perception.wire_frame import parse_frame, serialize_image

NO_SET_LOG_INTERVAL_S = 5.0  # one log line per interval while no synchronised set forms
_MESSAGE_TYPES = {"raw": Image, "compressed": CompressedImage}


def _type_name(msg_type: type) -> str:
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def _camera_qos(camera: CameraConfig) -> QoSProfile:
    """The sensor-data profile with the camera's reliability."""
    reliable = camera.reliability == "reliable"
    return QoSProfile(
        depth=CAMERA_QOS.depth,
        history=CAMERA_QOS.history,
        durability=CAMERA_QOS.durability,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
    )


class PerceptionNode(Node):
    """Synchronises the cameras and publishes a policy-ready observation as each camera set completes."""

    def __init__(self) -> None:
        super().__init__("perception")
        self.params = NodeParameters(self)
        values = self.params.declare(PARAMETERS)
        names = camera_names(values)
        self.cameras = [build_camera(name, self.params.declare(camera_parameters(name))) for name in names]
        self.instruction_topic = values["instruction_topic"]
        self.checks = build_frame_checks(values)
        self.sync = self.checks.sync(names)
        self.gate = self.checks.gate()
        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.guard = CallbackGuard(self.get_logger(), self.diag)  # a bug in a callback: logged, not fatal
        self.rejections = MessageRejections(self.get_logger(), self.diag)
        guard = self.guard.wrap
        self.instruction: str | None = None
        self._episode_start_ns = 0
        self._refused: dict[str, str] = {}  # camera -> its latest refusal since the last observation
        self._qos_problems: dict[str, str] = {}  # camera -> incompatible QoS, reported from then on

        self.obs_pubs = {
            c.name: self.create_publisher(Image, f"/vla/observation/{c.name}", RELIABLE_QOS)
            for c in self.cameras
        }
        for camera in self.cameras:
            self.create_subscription(
                _MESSAGE_TYPES[camera.transport],
                camera.topic,
                guard(f"frame.{camera.name}", lambda m, c=camera: self._on_frame(c, m)),
                _camera_qos(camera),
                raw=True,  # serialized bytes, read in place by wire_frame
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=guard(
                        f"qos.{camera.name}", lambda event, c=camera: self._on_incompatible_qos(c, event)
                    )
                ),
            )
        self.create_subscription(
            String, self.instruction_topic, guard("instruction", self._on_instruction), LATCHED_QOS
        )
        self.create_subscription(String, "/vla/episode", guard("episode", self._on_episode), EVENTS_QOS)
        control_period_s = step_period_s(values["control_hz"])
        self._control_period_ns = int(round(control_period_s * 1e9))
        self.watchdog = SetWatchdog(set_overdue_after_ns(self._control_period_ns, self.checks.slop_ns))
        self.create_timer(
            control_period_s,
            guard("watchdog", self._on_watchdog),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.params.on_change(build_frame_checks, self._apply_frame_checks)

    def _apply_frame_checks(self, checks: FrameChecks) -> None:
        """Swap in frame checks changed at run time (``ros2 param set``), already validated.

        The node spins a single-threaded executor (run_node), so this runs between two callbacks.
        A new slop drops the queued frames (the next set forms from new ones); new limits restart
        the frozen-content runs.
        """
        if checks.slop_ns != self.checks.slop_ns:
            self.sync = checks.sync([camera.name for camera in self.cameras])
            self.watchdog.overdue_ns = set_overdue_after_ns(self._control_period_ns, checks.slop_ns)
        if checks.limits != self.checks.limits:
            self.gate = checks.gate()
        self.checks = checks

    def _refuse(self, camera: str, refusal: Refusal) -> None:
        self.rejections.drop(f"frame.{camera}", refusal.reason)
        self.diag.count(f"refused.{refusal.cause}.{camera}")
        self._refused[camera] = refusal.reason

    def _on_incompatible_qos(self, camera: CameraConfig, event: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = getattr(event.last_policy_kind, "name", str(event.last_policy_kind))
        reason = incompatible_qos_reason(camera.name, camera.topic, policy, event.total_count)
        self.diag.count(f"qos_incompatible.{camera.name}")
        self.diag.report(ERROR, reason)
        self._qos_problems[camera.name] = reason

    def _silent_camera(self, camera: CameraConfig) -> str:
        publishers = [
            Publisher(
                info.node_name,
                info.topic_type,
                info.qos_profile.reliability.name.lower(),
                info.qos_profile.durability.name.lower(),
            )
            for info in self.get_publishers_info_by_topic(camera.topic)
        ]
        expected = _type_name(_MESSAGE_TYPES[camera.transport])
        return silent_camera_reason(camera.name, camera.topic, expected, camera.reliability, publishers)

    def _on_instruction(self, msg: String) -> None:
        try:
            self.instruction = check_instruction(msg.data)
        except ValueError as exc:
            self.rejections.drop("instruction", str(exc))
            return
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_episode_event(msg.data)
        except ValueError as exc:
            self.rejections.drop("episode", str(exc))
            return
        if event.event == "start":  # a new episode: frames of the last one must not be used
            self.sync.clear()
            self.gate.reset()
            self._episode_start_ns = event.stamp_ns

    def _on_frame(self, camera: CameraConfig, serialized: bytes) -> None:
        msg, refusal = parse_frame(camera.name, camera.transport, serialized)
        if refusal is not None:
            self._refuse(camera.name, refusal)
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        now_ns = self.get_clock().now().nanoseconds
        refusal = self.gate.admit(camera.name, camera.transport, msg, stamp_ns, now_ns)
        if refusal is not None:  # refused on arrival, before it is queued or decoded
            self._refuse(camera.name, refusal)
            return
        if stamp_ns < self._episode_start_ns:  # in flight across an episode start: not a fault
            self.diag.count(f"before_episode.{camera.name}")
            return
        self.sync.add(camera.name, stamp_ns, msg)
        self.diag.count(f"frames.{camera.name}")
        self._publish_complete_set()

    def _on_watchdog(self) -> None:
        """Reports, throttled, while no set has been published for longer than it should."""
        now_ns = self.get_clock().now().nanoseconds
        if self.instruction is None:  # nothing is published before an instruction: not a missing set
            self.diag.report(WARN, f"waiting for an instruction on {self.instruction_topic}")
            self.watchdog.mark(now_ns)
            return
        if not self.watchdog.overdue(now_ns):
            return
        refused = "".join(f"; refused {reason}" for reason in self._refused.values())
        refused += "".join(f"; {reason}" for reason in self._qos_problems.values())
        message = f"no synchronised camera set: {self._why_no_set()}{refused}"
        self.diag.report(WARN, message, log=False)  # its numbers change every tick: log throttled
        self.get_logger().warning(message, throttle_duration_sec=NO_SET_LOG_INTERVAL_S)
        self.diag.count("no_sync")

    def _publish_complete_set(self) -> None:
        """Publishes the set the last frame completed, if it did (called on every admitted frame)."""
        if self.instruction is None:  # frames stay queued; the watchdog says what is awaited
            return
        with self.timer.measure("sync"):
            synced = self.sync.pop_newest_set()
        if synced is None:
            return
        now_ns = self.get_clock().now().nanoseconds
        frames: dict[str, tuple[np.ndarray, str, CameraPreprocess]] = {}
        for camera in self.cameras:
            stamp_ns, msg = synced.frames[camera.name]
            refusal = check_stamp(camera.name, stamp_ns, now_ns, self.checks.limits)
            if refusal is not None:  # aged in the queue since it arrived
                self._refuse(camera.name, refusal)
                return
            try:
                with self.timer.measure("image_decode"):
                    if camera.transport == "compressed":
                        array = compressed_to_array(msg.format, bytes(msg.data), camera=camera.name)
                        encoding = decoded_encoding(array, msg.format)
                    else:
                        array, encoding = image_to_array(msg, camera=camera.name, copy=False), msg.encoding
            except ValueError as exc:  # what only the decoder sees (libjpeg warnings)
                self._refuse(camera.name, Refusal("corrupt", str(exc)))
                return
            frames[camera.name] = (array, encoding, camera.preprocess)
        try:
            with self.timer.measure("preprocess"):
                images = {name: to_policy_input(*frame) for name, frame in frames.items()}
        except ValueError as exc:
            self.diag.report(ERROR, f"preprocess: {exc}")
            self.diag.count("bad_preprocess")
            return
        with self.timer.measure("publish"):
            for name, rgb in images.items():  # serialized here, published as they are (raw)
                self.obs_pubs[name].publish(serialize_image(synced.stamp_ns, name, rgb))
        self.watchdog.mark(now_ns)
        self.diag.count("observations")
        if self._qos_problems:  # observations flow, but a publisher's frames never reach us
            self.diag.report(WARN, "; ".join(self._qos_problems.values()), log=False)
        else:
            self.diag.report(OK, "ok")
        self._refused.clear()

    def _why_no_set(self) -> str:
        """The camera without frames (and why its topic is silent), or the one lagging past the slop."""
        missing = [camera for camera in self.cameras if camera.name in self.sync.missing()]
        if missing:
            return "cameras without frames: " + "; ".join(self._silent_camera(camera) for camera in missing)
        lagging = self.sync.lagging()
        if lagging:
            return "; ".join(
                f"camera '{name}' lags {lag_ns / 1e9:.3f} s behind the newest frame "
                f"(sync_slop_s={self.checks.slop_ns / 1e9:.3f})"
                for name, lag_ns in lagging.items()
            )
        return "no new frames within the slop since the last set"


def main(args=None) -> int:
    fix_mmap_threshold(FRAME_MMAP_THRESHOLD_BYTES)  # see perception_settings
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
