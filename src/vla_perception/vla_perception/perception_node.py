"""Perception: any number of cameras in, one synchronised observation per control tick out.

Each camera (raw sensor_msgs/Image or CompressedImage, sensor-data QoS) feeds an approximate time
synchroniser. On every control tick the newest set whose stamps lie within the slop is checked
(stale, frozen, future frames are refused with a diagnostic), decoded, resized to the policy's
input size and published as rgb8 on /vla/observation/<camera>, every image under the set's stamp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from vla_common.latency import StageTimer
from vla_common.ros.node_runtime import (
    ERROR,
    OK,
    WARN,
    StageDiagnostics,
    declare,
    ns_to_stamp,
    run_node,
    stamp_to_ns,
)
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_perception.image_codec import (
    array_to_image_fields,
    compressed_to_array,
    decoded_encoding,
    image_to_array,
)
from vla_perception.preprocess import CameraPreprocess, to_policy_input
from vla_perception.sync import ApproximateSync, FrameHealth


@dataclass(frozen=True)
class CameraConfig:
    name: str
    topic: str
    transport: str  # raw | compressed
    preprocess: CameraPreprocess


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__("perception")
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        names = list(
            p(
                "cameras",
                ["primary", "wrist"],
                "Camera names; each has <name>.topic, .transport, .height, .width",
            )
        )
        self.control_hz = p("control_hz", 5.0, "Observations per second", minimum=0.1, maximum=100.0)
        slop_s = p(
            "sync_slop_s", 0.05, "Max stamp spread within one synchronised set (s)", minimum=0.0, maximum=1.0
        )
        max_age_s = p(
            "max_image_age_s", 0.5, "Frames older than this are refused (s)", minimum=0.01, maximum=10.0
        )
        frozen = p(
            "frozen_repeat_limit",
            30,
            "Identical frames in a row that count as frozen",
            minimum=2,
            maximum=10000,
        )
        self.instruction_topic = p(
            "instruction_topic", "/vla/instruction", "Latched std_msgs/String instruction"
        )
        self.cameras = [self._camera_config(name) for name in names]
        if not self.cameras:
            raise ValueError("parameter 'cameras' is empty: at least one camera is needed")

        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.sync = ApproximateSync(names, int(slop_s * 1e9), queue_size=5)
        self.health = FrameHealth(int(max_age_s * 1e9), frozen_repeat_limit=frozen)
        self.instruction: str | None = None
        self._episode_start_ns = 0

        self.obs_pubs = {
            c.name: self.create_publisher(Image, f"/vla/observation/{c.name}", RELIABLE_QOS)
            for c in self.cameras
        }
        for camera in self.cameras:
            msg_type = CompressedImage if camera.transport == "compressed" else Image
            self.create_subscription(
                msg_type, camera.topic, lambda m, c=camera.name: self._on_frame(c, m), CAMERA_QOS
            )
        self.create_subscription(String, self.instruction_topic, self._on_instruction, LATCHED_QOS)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS)
        self.create_timer(
            1.0 / self.control_hz, self._on_tick, callback_group=MutuallyExclusiveCallbackGroup()
        )

    def _camera_config(self, name: str) -> CameraConfig:
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        topic = p(f"{name}.topic", f"/camera/{name}/image_raw", f"Image topic of camera '{name}'")
        transport = p(
            f"{name}.transport", "raw", f"'raw' (sensor_msgs/Image) or 'compressed' for camera '{name}'"
        )
        if transport not in ("raw", "compressed"):
            raise ValueError(
                f"camera '{name}': transport '{transport}' is not supported; use raw or compressed"
            )
        preprocess = CameraPreprocess(
            height=p(f"{name}.height", 256, f"Policy input height of '{name}'", minimum=8, maximum=4096),
            width=p(f"{name}.width", 256, f"Policy input width of '{name}'", minimum=8, maximum=4096),
            mode=p(f"{name}.resize_mode", "resize", f"resize | center_crop | letterbox for '{name}'"),
            interpolation=p(
                f"{name}.interpolation", "antialias", f"antialias | area | linear | lanczos for '{name}'"
            ),
        )
        return CameraConfig(name, topic, transport, preprocess)

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self.get_logger().info(f"instruction: {msg.data!r}")

    def _on_episode(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":  # a new episode: frames of the last one must not be used
            self.sync.clear()
            self._episode_start_ns = int(event.get("stamp_ns", 0))

    def _on_frame(self, camera: str, msg: Image | CompressedImage) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
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
