"""The soak's rclpy side: the fuzz publisher and the observer of what the graph does under it.

:class:`SoakNode` publishes fuzzed messages (vla_eval.fuzz_messages) on every topic the sim graph
subscribes to, each at its own rate, from its own thread, and records what matters: actuation's arm
commands (judged by an ArmMonitor), the sim's joint states and episode events, and every node's
counters on /diagnostics. Messages are attributed to their publishing node by the publisher gid in
the message info, so the monitor judges actuation's commands only (never the fuzzer's malformed
ones on the same topic) and counts the sim's episodes only (never the fuzzer's fake starts).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_common.inbound import decode_episode_event
from vla_common.robot import ARM_JOINT_NAMES
from vla_common.ros.node_runtime import ns_to_stamp, stamp_to_ns
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_eval.arm_monitor import ArmMonitor, StreamedCommand
from vla_eval.fuzz_messages import FuzzMessage, draw_batch, render_text, stamp_ns

FUZZ_NODE = "soak_fuzz"
CONTEXT_S = 1.0  # fuzzed messages published this long before a violation are listed with it
FUZZ_LOG_LEN = 2000
DIAGNOSTICS_PREFIX = "vla_stack/"
UNKNOWN_NODE_NAME = "_NODE_NAME_UNKNOWN_"  # rmw: an endpoint seen before its node's name arrived


@dataclass(frozen=True)
class FuzzTopic:
    """One fuzzed topic: where, which kind of message, at what rate."""

    topic: str
    kind: str
    rate_hz: float


def _qos(kind: str, topic: str):
    if kind == "image" and topic.startswith("/camera/"):
        return CAMERA_QOS
    if kind == "instruction":
        return LATCHED_QOS
    if kind == "episode":
        return EVENTS_QOS
    if kind in ("image", "action", "privileged_state"):
        return RELIABLE_QOS
    return 10


_MSG_TYPES = {
    "image": Image,
    "compressed_image": CompressedImage,
    "instruction": String,
    "action": String,
    "episode": String,
    "privileged_state": String,
    "joint_state": JointState,
    "arm_command": JointTrajectory,
    "gripper_command": JointTrajectory,
}


def to_ros(message: FuzzMessage, now_ns: int):
    """The ROS message for a fuzz description published at ``now_ns`` (the graph's clock)."""
    f = message.fields
    stamp = ns_to_stamp(stamp_ns(message, now_ns))
    if message.kind == "image":
        msg = Image(
            height=f["height"], width=f["width"], encoding=f["encoding"], is_bigendian=0, step=f["step"]
        )
        msg.data = f["data"]
    elif message.kind == "compressed_image":
        msg = CompressedImage(format=f["format"])
        msg.data = f["data"]
    elif message.kind == "joint_state":
        msg = JointState(name=f["names"], position=f["positions"])
    elif message.kind in ("arm_command", "gripper_command"):
        msg = JointTrajectory(joint_names=f["names"])
        msg.points = [
            JointTrajectoryPoint(
                positions=positions,
                time_from_start=Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))),
            )
            for t, positions in f["points"]
        ]
    else:
        return String(data=render_text(message, now_ns))
    msg.header.stamp = stamp
    return msg


class SoakNode(Node):
    """Fuzzes the graph's inputs and records its arm commands, episodes and diagnostics."""

    def __init__(self, monitor: ArmMonitor, robot_name: str = "wx250s") -> None:
        super().__init__(FUZZ_NODE, parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.monitor = monitor
        self.lock = threading.Lock()
        self.started_s = time.monotonic()
        self.episode_starts = 0
        self.episode_ends: list[dict] = []
        self.counters: dict[str, dict[str, int]] = {}  # node -> its /diagnostics counters (newest)
        self.arm_publishers: Counter[str] = Counter()  # arm commands by publishing node
        self.violations: list[dict] = []
        self.monitor_errors: list[str] = []
        self.published: Counter[tuple[str, str]] = Counter()  # (kind, label) -> published
        self.unpublishable: Counter[tuple[str, str]] = Counter()  # (kind, label) -> could not be built
        self.fuzz_lag_s: list[float] = []  # how late each fuzzed message went out (machine load)
        self._fuzz_log: deque[tuple[float, str, str]] = deque(maxlen=FUZZ_LOG_LEN)
        self._gid_names: dict[bytes, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.starved: Counter[str] = Counter()  # a topic's turn came and no drawn message was ready
        self.node_census: Counter[str] = Counter()  # the most nodes of each name seen at once on the domain
        ns = f"/{robot_name}"
        self.arm_topic = f"{ns}/arm_controller/joint_trajectory"
        self.joint_topic = f"{ns}/joint_states"
        self.create_subscription(JointTrajectory, self.arm_topic, self._on_arm, 100)
        self.create_subscription(JointState, self.joint_topic, self._on_joints, 100)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    # --- who published it -----------------------------------------------------------------------
    def _publisher(self, topic: str, info: Mapping) -> str:
        gid = bytes((info.get("publisher_gid") or {}).get("data", b""))
        name = self._gid_names.get(gid)
        if name is None:
            for endpoint in self.get_publishers_info_by_topic(topic):
                # Not cached while discovery has the endpoint but not yet its node's name: asked again
                # at the next message (cached, a whole short soak judged none of actuation's commands).
                if endpoint.node_name != UNKNOWN_NODE_NAME:
                    self._gid_names[bytes(endpoint.endpoint_gid)] = endpoint.node_name
            name = self._gid_names.get(gid, "?")
        return name

    def take_census(self) -> None:
        """Note the nodes on the domain: another graph there would feed ours (and our judge) its messages."""
        seen = Counter(self.get_node_names())
        with self.lock:
            for name, count in seen.items():
                self.node_census[name] = max(self.node_census[name], count)

    # --- observations ---------------------------------------------------------------------------
    def _on_arm(self, msg: JointTrajectory, info: Mapping) -> None:
        publisher = self._publisher(self.arm_topic, info)
        with self.lock:
            self.arm_publishers[publisher] += 1
        if publisher != "actuation" or not msg.points:
            return
        point = msg.points[0]
        try:
            order = [list(msg.joint_names).index(name) for name in ARM_JOINT_NAMES]
            positions = tuple(float(point.positions[i]) for i in order)
        except (ValueError, IndexError) as exc:
            self._monitor_error(f"actuation command with joints {list(msg.joint_names)}: {exc}")
            return
        command = StreamedCommand(
            received_s=time.monotonic(),
            stamp_ns=stamp_to_ns(msg.header.stamp),
            positions=positions,
            time_from_start_s=point.time_from_start.sec + point.time_from_start.nanosec * 1e-9,
        )
        try:
            found = self.monitor.add(command)
        except ValueError as exc:
            self._monitor_error(str(exc))
            return
        self._record(found)

    def _on_joints(self, msg: JointState, info: Mapping) -> None:
        if self._publisher(self.joint_topic, info) != "sim":
            return
        try:
            positions = [msg.position[list(msg.name).index(name)] for name in ARM_JOINT_NAMES]
            found = self.monitor.joint_state(time.monotonic(), positions, stamp_to_ns(msg.header.stamp))
        except (ValueError, IndexError) as exc:
            self._monitor_error(f"sim joint state: {exc}")
            return
        self._record(found)

    def _on_episode(self, msg: String, info: Mapping) -> None:
        if self._publisher("/vla/episode", info) != "sim":
            return
        try:  # the sim's own event (the fuzzer's are not read), still decoded like any input
            event = decode_episode_event(msg.data)
        except ValueError as exc:
            self._monitor_error(f"sim episode event: {exc}")
            return
        with self.lock:
            if event.event == "start":
                self.episode_starts += 1
                self.monitor.episode_start(event.stamp_ns, time.monotonic())
            elif event.event == "end":
                self.episode_ends.append(event.body)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if not status.name.startswith(DIAGNOSTICS_PREFIX):
                continue
            counters = {}
            for kv in status.values:
                if kv.key.startswith("count."):
                    try:
                        counters[kv.key[6:]] = int(kv.value)
                    except ValueError:
                        continue
            with self.lock:
                self.counters[status.name[len(DIAGNOSTICS_PREFIX) :]] = counters

    def _monitor_error(self, text: str) -> None:
        with self.lock:
            if len(self.monitor_errors) < 100:
                self.monitor_errors.append(text)

    def _record(self, found: list) -> None:
        if not found:
            return
        now = time.monotonic()
        with self.lock:
            recent = [
                {"before_s": round(now - t, 3), "kind": kind, "label": label}
                for t, kind, label in self._fuzz_log
                if now - t <= CONTEXT_S
            ]
            for violation in found:
                self.violations.append(
                    {
                        "at_s": round(now - self.started_s, 3),
                        "kind": violation.kind,
                        "value": violation.value,
                        "bound": violation.bound,
                        "detail": violation.detail,
                        "fuzz_before": recent[-20:],
                    }
                )

    # --- the fuzzer -----------------------------------------------------------------------------
    def start_fuzz(self, topics: list[FuzzTopic], seed: int, batch: int = 20) -> None:
        """Create the fuzz publishers and start publishing (after the graph is up: the sim waits
        for publishers on the arm and action topics, and must not take the fuzzer's for the graph's).

        One thread draws batches ahead (hypothesis takes up to a second or two for a batch of long
        strings), another publishes on schedule, so a slow draw never delays a topic.
        """
        publishers = {
            t.topic: self.create_publisher(_MSG_TYPES[t.kind], t.topic, _qos(t.kind, t.topic)) for t in topics
        }
        stream = FuzzStream(topics, seed, batch)
        stream.top_up(self._stop)  # the first batch of every topic before the first publish
        self._threads = [
            threading.Thread(target=stream.draw_loop, args=(self._stop,), name="fuzz-draw", daemon=True),
            threading.Thread(
                target=self._publish_loop, args=(topics, publishers, stream), name="fuzz", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def stop_fuzz(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10.0)

    def _publish_loop(self, topics: list[FuzzTopic], publishers: dict, stream: FuzzStream) -> None:
        start = time.monotonic()
        due = {t.topic: start + i * 0.05 for i, t in enumerate(topics)}
        rates = {t.topic: t.rate_hz for t in topics}
        while not self._stop.is_set():
            topic = min(due, key=due.get)
            wait = due[topic] - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            lag = time.monotonic() - due[topic]
            due[topic] = max(due[topic] + 1.0 / rates[topic], time.monotonic())
            message = stream.next(topic)
            if message is None:
                with self.lock:
                    self.starved[topic] += 1
                continue
            self._publish(publishers[topic], message, lag)

    def _publish(self, publisher, message: FuzzMessage, lag_s: float) -> None:
        key = (message.kind, message.label)
        try:
            publisher.publish(to_ros(message, self.get_clock().now().nanoseconds))
        except Exception:  # noqa: BLE001 - a description rclpy cannot serialise (e.g. a NUL in a string)
            with self.lock:
                self.unpublishable[key] += 1
            return
        with self.lock:
            self.published[key] += 1
            self.fuzz_lag_s.append(lag_s)
            self._fuzz_log.append((time.monotonic(), message.kind, message.label))


class FuzzStream:
    """Per topic, a queue of drawn messages; the same topics and seed give the same sequences."""

    def __init__(self, topics: list[FuzzTopic], seed: int, batch: int) -> None:
        self.topics = topics
        self.seed = seed
        self.batch = batch
        self._queues: dict[str, deque[FuzzMessage]] = {t.topic: deque() for t in topics}
        self._batches: Counter[str] = Counter()

    def next(self, topic: str) -> FuzzMessage | None:
        try:
            return self._queues[topic].popleft()  # deque pops and appends are thread-safe
        except IndexError:
            return None

    def top_up(self, stop: threading.Event) -> None:
        """Draw a batch for every topic whose queue is below half a batch."""
        for index, spec in enumerate(self.topics):
            if stop.is_set():
                return
            if len(self._queues[spec.topic]) < self.batch // 2 + 1:
                number = self._batches[spec.topic]
                self._queues[spec.topic].extend(
                    draw_batch(spec.kind, batch_seed(self.seed, index, number), self.batch)
                )
                self._batches[spec.topic] = number + 1

    def draw_loop(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            self.top_up(stop)


def batch_seed(seed: int, topic_index: int, batch: int) -> int:
    """The hypothesis seed of one batch of one topic: distinct per topic and batch, fixed by ``seed``."""
    return (seed * 1_000_003 + topic_index) * 100_003 + batch


class SoakSession:
    """rclpy, the soak node and an executor spinning it on a thread, for the length of a ``with``."""

    def __init__(self, monitor_factory: Callable[[], ArmMonitor] = ArmMonitor) -> None:
        self._monitor_factory = monitor_factory
        self.node: SoakNode | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._spinner: threading.Thread | None = None

    def __enter__(self) -> SoakNode:
        rclpy.init(args=[])
        self.node = SoakNode(self._monitor_factory())
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, name="soak-spin", daemon=True)
        self._spinner.start()
        return self.node

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - shutting down under the spinner
            return

    def __exit__(self, *exc_info) -> None:
        if self.node is not None:
            self.node.stop_fuzz()
        rclpy.try_shutdown()
        if self._spinner is not None:
            self._spinner.join(timeout=5.0)
