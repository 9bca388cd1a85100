"""The demo's in-process observer: episode events, stage latencies and every node's other /diagnostics
values, third-person video, the bag, and (for ``vla-stack bench control``) an independent judge of
the arm commands (vla_eval.arm_monitor)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_common.inbound import decode_episode_event, image_to_pixels, load_bounded_json
from vla_common.robot import ARM_JOINT_NAMES
from vla_common.ros.callback_guard import CallbackGuard
from vla_common.ros.node_runtime import stamp_to_ns
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS
from vla_data.bag_recorder_node import BagRecorderNode
from vla_eval.arm_monitor import ArmMonitor, StreamedCommand

DIAGNOSTICS_DEPTH = 50  # every node's 1 Hz status, with room for a slow spin
MAX_LATENCY_SUMMARY_BYTES = 65536  # a node's stage latencies: a few hundred bytes


class DemoMonitorNode(Node):
    """Collects the sim's episode events and the nodes' latency diagnostics; hands on camera frames."""

    def __init__(
        self,
        video_topic: str | None,
        on_frame: Callable[[np.ndarray], None] | None,
        arm_monitor: ArmMonitor | None = None,
        robot_name: str = "wx250s",
    ) -> None:
        super().__init__("demo_monitor")
        self.events: list[dict] = []
        self.latency: dict[str, dict] = {}  # node -> {stage: {p50, p99, count}}
        self.values: dict[str, dict[str, str]] = {}  # node -> its newest /diagnostics values by key
        self.arm_monitor = arm_monitor
        self.done = False
        self.dropped: dict[str, int] = {}  # bad messages per kind (another publisher on a topic)
        self._on_frame = on_frame
        guard = CallbackGuard(self.get_logger()).wrap  # a bug here must not end the run either
        self.create_subscription(String, "/vla/episode", guard("episode", self._on_event), EVENTS_QOS)
        self.create_subscription(
            DiagnosticArray, "/diagnostics", guard("diagnostics", self._on_diagnostics), DIAGNOSTICS_DEPTH
        )
        if video_topic and on_frame:
            self.create_subscription(Image, video_topic, guard("video_frame", self._on_image), CAMERA_QOS)
        if arm_monitor is not None:
            ns = f"/{robot_name}"
            self.create_subscription(
                JointTrajectory, f"{ns}/arm_controller/joint_trajectory", guard("arm", self._on_arm), 100
            )
            self.create_subscription(JointState, f"{ns}/joint_states", guard("joints", self._on_joints), 100)

    def _on_event(self, msg: String) -> None:
        try:
            event = decode_episode_event(msg.data)
        except ValueError as exc:  # another publisher on the topic: the run goes on without it
            self._drop("episode", str(exc))
            return
        self.events.append(event.body)
        if event.event == "start" and self.arm_monitor is not None:
            self.arm_monitor.episode_start(event.stamp_ns, time.monotonic())
        if event.event == "done":
            self.done = True

    def _on_arm(self, msg: JointTrajectory) -> None:
        if not msg.points:
            return
        try:
            order = [list(msg.joint_names).index(name) for name in ARM_JOINT_NAMES]
            point = msg.points[0]
            command = StreamedCommand(
                received_s=time.monotonic(),
                stamp_ns=stamp_to_ns(msg.header.stamp),
                positions=tuple(float(point.positions[i]) for i in order),
                time_from_start_s=point.time_from_start.sec + point.time_from_start.nanosec * 1e-9,
            )
            self.arm_monitor.add(command)
        except (ValueError, IndexError) as exc:
            self._drop("arm_command", str(exc))

    def _on_joints(self, msg: JointState) -> None:
        try:
            positions = [msg.position[list(msg.name).index(name)] for name in ARM_JOINT_NAMES]
            self.arm_monitor.joint_state(time.monotonic(), positions, stamp_to_ns(msg.header.stamp))
        except (ValueError, IndexError) as exc:
            self._drop("joint_state", str(exc))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith("vla_stack/"):
                continue
            node = status.name.split("/", 1)[1]
            self.values[node] = {kv.key: kv.value for kv in status.values}
            for kv in status.values:
                if kv.key != "latency_ms":
                    continue
                try:
                    summary = load_bounded_json(
                        kv.value, what=f"{status.name} latency_ms", max_bytes=MAX_LATENCY_SUMMARY_BYTES
                    )
                except ValueError as exc:
                    self._drop("diagnostics", str(exc))
                    continue
                if isinstance(summary, dict):
                    self.latency[status.name.split("/", 1)[1]] = summary

    def _on_image(self, msg: Image) -> None:
        try:
            pixels = image_to_pixels(msg, what="video frame")
        except ValueError as exc:  # e.g. another encoding: no video frame from it
            self._drop("video_frame", str(exc))
            return
        self._on_frame(pixels)

    def _drop(self, kind: str, reason: str) -> None:
        """A message the monitor cannot use: counted and logged once per kind."""
        self.dropped[kind] = self.dropped.get(kind, 0) + 1
        if self.dropped[kind] == 1:
            self.get_logger().warning(
                f"demo monitor: ignoring a bad {kind} message ({reason}); more are counted"
            )


def monitor_run(
    *,
    timeout_s: float,
    poll_failure: Callable[[], str | None],
    on_episode_end: Callable[[dict], None],
    video_topic: str | None = None,
    on_frame: Callable[[np.ndarray], None] | None = None,
    bag_path: Path | None = None,
    arm_monitor: ArmMonitor | None = None,
    diagnostics: dict[str, dict[str, str]] | None = None,
) -> tuple[list[dict], dict[str, dict], str | None]:
    """Spin until the sim reports 'done', a node fails, or the timeout; returns (events, latency, failure).

    ``arm_monitor`` judges every arm command and joint state; ``diagnostics`` (a dict) receives each
    node's newest /diagnostics values by key at the end."""
    # The caller's SIGINT/SIGTERM handlers decide (vla_eval.demo: a stop ends the run at the next poll
    # with its bag closed); rclpy's own would shut the context down under the executor mid-spin.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    recorder = None
    failure: str | None = None
    try:
        monitor = DemoMonitorNode(video_topic, on_frame, arm_monitor)
        executor = SingleThreadedExecutor()
        executor.add_node(monitor)
        if bag_path is not None:
            recorder = BagRecorderNode(output=bag_path)
            recorder.get_logger().set_level(LoggingSeverity.WARN)  # one line per topic is noise here
            executor.add_node(recorder)
        deadline = time.monotonic() + timeout_s
        seen = 0
        while not monitor.done:
            executor.spin_once(timeout_sec=0.1)
            for event in monitor.events[seen:]:
                if event.get("event") == "end":
                    on_episode_end(event)
            seen = len(monitor.events)
            failure = poll_failure()
            if failure:
                break
            if time.monotonic() > deadline:
                failure = f"timed out after {timeout_s:.0f} s waiting for the episodes to finish"
                break
        # One more second of diagnostics so every node's final latencies arrive.
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        if diagnostics is not None:
            diagnostics.update(monitor.values)
        return monitor.events, monitor.latency, failure
    finally:
        if recorder is not None:
            recorder.close()
        rclpy.try_shutdown()
