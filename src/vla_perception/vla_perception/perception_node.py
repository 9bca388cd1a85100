"""Perception: any number of cameras in, one synchronised observation per control tick out.

Each camera (raw sensor_msgs/Image or CompressedImage, sensor-data QoS) feeds an approximate time
synchroniser. On every control tick the newest set whose stamps lie within the slop is checked
(stale, frozen, future frames are refused with a diagnostic), decoded, resized to the policy's
input size and published as rgb8 on /vla/observation/<camera>, every image under the set's stamp.
"""

from __future__ import annotations

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from vla_common.control_period import step_period_s
from vla_common.inbound import check_instruction, check_pixel_count, decode_episode_event
from vla_common.latency import StageTimer
from vla_common.ros.callback_guard import CallbackGuard, MessageRejections
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, ns_to_stamp, run_node, stamp_to_ns
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_perception.image_codec import (
    array_to_image_fields,
    compressed_to_array,
    decoded_encoding,
    image_to_array,
)
from vla_perception.perception_settings import (
    PARAMETERS,
    FrameChecks,
    build_camera,
    build_frame_checks,
    camera_names,
    camera_parameters,
)
from vla_perception.preprocess import CameraPreprocess, to_policy_input


class PerceptionNode(Node):
    """Synchronises the cameras and publishes one policy-ready observation per control tick."""

    def __init__(self) -> None:
        super().__init__("perception")
        self.params = NodeParameters(self)
        values = self.params.declare(PARAMETERS)
        names = camera_names(values)
        self.cameras = [build_camera(name, self.params.declare(camera_parameters(name))) for name in names]
        self.instruction_topic = values["instruction_topic"]
        self.checks = build_frame_checks(values)
        self.sync = self.checks.sync(names)
        self.health = self.checks.health()
        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.guard = CallbackGuard(self.get_logger(), self.diag)  # a bug in a callback: logged, not fatal
        self.rejections = MessageRejections(self.get_logger(), self.diag)
        guard = self.guard.wrap
        self.instruction: str | None = None
        self._episode_start_ns = 0

        self.obs_pubs = {
            c.name: self.create_publisher(Image, f"/vla/observation/{c.name}", RELIABLE_QOS)
            for c in self.cameras
        }
        for camera in self.cameras:
            msg_type = CompressedImage if camera.transport == "compressed" else Image
            self.create_subscription(
                msg_type,
                camera.topic,
                guard(f"frame.{camera.name}", lambda m, c=camera.name: self._on_frame(c, m)),
                CAMERA_QOS,
            )
        self.create_subscription(
            String, self.instruction_topic, guard("instruction", self._on_instruction), LATCHED_QOS
        )
        self.create_subscription(String, "/vla/episode", guard("episode", self._on_episode), EVENTS_QOS)
        self.create_timer(
            step_period_s(values["control_hz"]),
            guard("tick", self._on_tick),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.params.on_change(build_frame_checks, self._apply_frame_checks)

    def _apply_frame_checks(self, checks: FrameChecks) -> None:
        """Swap in frame checks changed at run time (``ros2 param set``), already validated.

        The node spins a single-threaded executor (run_node), so this runs between two callbacks.
        A new slop drops the queued frames (the next set forms from new ones); new age or frozen
        limits restart the frozen-frame counts.
        """
        if checks.slop_ns != self.checks.slop_ns:
            self.sync = checks.sync([camera.name for camera in self.cameras])
        if (checks.max_age_ns, checks.frozen_repeat_limit) != (
            self.checks.max_age_ns,
            self.checks.frozen_repeat_limit,
        ):
            self.health = checks.health()
        self.checks = checks

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
            self._episode_start_ns = event.stamp_ns

    def _on_frame(self, camera: str, msg: Image | CompressedImage) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
            return
        if isinstance(msg, Image):  # refused on arrival, before it is queued or decoded
            try:
                check_pixel_count(int(msg.width), int(msg.height), what=f"camera '{camera}'")
            except ValueError as exc:
                self.rejections.drop(f"frame.{camera}", str(exc))
                return
        self.sync.add(camera, stamp_ns, msg)
        self.diag.count(f"frames.{camera}")

    def _on_tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if self.instruction is None:
            self.diag.report(WARN, f"waiting for an instruction on {self.instruction_topic}")
            return
        with self.timer.measure("sync"):
            synced = self.sync.pop_newest_set()
        if synced is None:
            missing = self.sync.missing()
            reason = f"cameras without frames: {missing}" if missing else "no new set within the slop"
            self.diag.report(WARN, f"no synchronised camera set: {reason}")
            self.diag.count("no_sync")
            return
        frames: dict[str, tuple[np.ndarray, str, CameraPreprocess]] = {}
        for camera in self.cameras:
            stamp_ns, msg = synced.frames[camera.name]
            try:
                with self.timer.measure("image_decode"):
                    if camera.transport == "compressed":
                        array = compressed_to_array(msg.format, bytes(msg.data), camera=camera.name)
                        encoding = decoded_encoding(array, msg.format)
                    else:
                        array, encoding = image_to_array(msg, camera=camera.name, copy=False), msg.encoding
            except ValueError as exc:
                self.diag.report(ERROR, f"camera '{camera.name}': {exc}")
                self.diag.count(f"bad_frame.{camera.name}")
                return
            problems = self.health.check(camera.name, stamp_ns, array, now_ns)
            if problems:
                self.diag.report(ERROR, "; ".join(problems))
                self.diag.count(f"refused.{camera.name}")
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
            for name, rgb in images.items():
                fields = array_to_image_fields(rgb, "rgb8")
                out = Image(
                    height=fields.height,
                    width=fields.width,
                    encoding=fields.encoding,
                    is_bigendian=fields.is_bigendian,
                    step=fields.step,
                    data=fields.data,
                )
                out.header.stamp = ns_to_stamp(synced.stamp_ns)
                out.header.frame_id = name
                self.obs_pubs[name].publish(out)
        self.diag.count("observations")
        self.diag.report(OK, "ok")


def main(args=None) -> int:
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
