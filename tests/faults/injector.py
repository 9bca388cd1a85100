"""The fault injector: an rclpy node of its own that publishes raw, hand-built messages on the graph's
topics and watches what the graph does (arm commands through vla_eval's ArmMonitor, /diagnostics,
actions, observations).

It shares no code with the nodes' validation: every message, good or bad, is built here from the
wire format as documented (README, vla_common.action_message's docstring), not with the nodes'
encoders; only the QoS profiles (what the graph subscribes with) and the robot's joint names are
imported.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from vla_common.robot import ARM_JOINT_NAMES
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_eval.arm_monitor import ArmMonitor, StreamedCommand, Violation

ARM_TOPIC = "/wx250s/arm_controller/joint_trajectory"
GRIPPER_TOPIC = "/wx250s/gripper_controller/joint_trajectory"  # one command per control step
JOINT_STATES_TOPIC = "/wx250s/joint_states"
ACTION_DIMS = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
INJECTED_POLICY = "fault_injector"
INJECTED = "fault_injector"  # frame_id of the joint states the injector makes up
# Each test judges the joints (limits, speed, the first command of an episode); the tool step per
# window has a test of its own that judges every command of the module.
JOINT_KINDS = ("position_limit", "joint_speed", "previous_episode")
TOOL_KINDS = ("tool_step_m", "tool_step_rad")
EPISODE_START_WINDOW_NS = 500_000_000  # what follows an episode start this closely is the start's doing


def action_json(stamp_ns: int, rows: object, **fields: object) -> str:
    """A /vla/action message built by hand (bridge_ee_delta, continuous, 0.2 s steps); ``fields``
    replace or add top-level fields. ``rows`` goes out as given (NaN as JSON's NaN)."""
    body = {
        "schema": "vla_stack/action_chunk/v1",
        "stamp_ns": stamp_ns,
        "policy": INJECTED_POLICY,
        "space": "bridge_ee_delta",
        "dims": ACTION_DIMS,
        "step_dt_s": 0.2,
        "kind": "continuous",
        "terminate": False,
        "inference_ms": 0.0,
        "values": rows.tolist() if isinstance(rows, np.ndarray) else rows,
    }
    body.update(fields)
    return json.dumps(body)


def rgb_image(stamp_ns: int, width: int = 320, height: int = 240, seed: int = 0, frame_id: str = "") -> Image:
    """A valid rgb8 Image of noise (a fresh seed: fresh content)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    msg.data = pixels.tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Injector(Node):
    """Publishes on every topic the graph subscribes to; records what the graph does."""

    def __init__(
        self, sim_time: bool = True, relay_delay_s: float = 0.05, log_dir: Path | None = None
    ) -> None:
        super().__init__(
            "fault_injector", parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, sim_time)]
        )
        self.log_dir = log_dir  # the launcher's log folder: <node>.log
        self.lock = threading.Lock()
        self.monitor = ArmMonitor()
        self.arm: list[tuple[float, int, np.ndarray, float]] = []  # (received s, stamp ns, joints, tfs s)
        self.measured: list[
            tuple[float, int, np.ndarray]
        ] = []  # valid joint states: (received s, stamp, joints)
        self.episode_starts: list[tuple[float, int]] = []  # (received s, stamp ns)
        self.policy_actions = 0
        self.policy_stamp_ns = 0  # stamp of the newest policy chunk
        self.gripper_stamp_ns = 0  # stamp of the newest gripper command: actuation's last control step
        self.observations: defaultdict[str, list[float]] = defaultdict(list)  # camera -> receipt times
        self.counters: dict[str, dict[str, int]] = {}  # node -> its latest count.* values
        self.notes: dict[str, dict[str, str]] = {}  # node -> its latest non-count values (last_rejected.*)
        self.texts: defaultdict[str, list[str]] = defaultdict(list)  # node -> every status message and note
        self.relay_joint_states = False  # republish each joint state, stamp kept, relay_delay_s later
        self.relay_delay_s = relay_delay_s
        self._relay: list[tuple[float, JointState]] = []

        self.action_pub = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self.episode_pub = self.create_publisher(String, "/vla/episode", EVENTS_QOS)
        self.estop_pub = self.create_publisher(Bool, "/vla/estop", RELIABLE_QOS)
        self.joint_state_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, 10)
        self.privileged_pub = self.create_publisher(String, "/sim/privileged_state", RELIABLE_QOS)
        self.instruction_pub = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.camera_pubs: dict[str, object] = {}

        self.create_subscription(JointTrajectory, ARM_TOPIC, self._on_arm, 200)
        self.create_subscription(JointTrajectory, GRIPPER_TOPIC, self._on_gripper, 50)
        self.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joint_state, 200)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS)
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.create_timer(0.005, self._relay_due)

    # --- what the graph does ----------------------------------------------------------------------
    def _on_arm(self, msg: JointTrajectory) -> None:
        received = time.monotonic()
        if list(msg.joint_names) != list(ARM_JOINT_NAMES) or not msg.points:
            return
        point = msg.points[0]
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        tfs = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
        joints = np.array(point.positions, dtype=float)
        with self.lock:
            self.arm.append((received, stamp_ns, joints, tfs))
            self.monitor.add(StreamedCommand(received, stamp_ns, tuple(joints), tfs))

    def _on_gripper(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.gripper_stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_joint_state(self, msg: JointState) -> None:
        received = time.monotonic()
        names = list(msg.name)
        if self.relay_joint_states and msg.header.frame_id not in ("relayed", INJECTED):
            relayed = JointState(name=names, position=list(msg.position))
            relayed.header.stamp = msg.header.stamp
            relayed.header.frame_id = "relayed"
            with self.lock:
                self._relay.append((received + self.relay_delay_s, relayed))
        if msg.header.frame_id in ("relayed", INJECTED) or not all(n in names for n in ARM_JOINT_NAMES):
            return  # the arm's own joint states only
        if len(msg.position) != len(names):
            return
        joints = np.array([msg.position[names.index(n)] for n in ARM_JOINT_NAMES], dtype=float)
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            if np.all(np.isfinite(joints)) and stamp_ns > 0:
                self.measured.append((received, stamp_ns, joints))
            self.monitor.joint_state(received, joints, stamp_ns)

    def _relay_due(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [m for t, m in self._relay if t <= now]
            self._relay = [(t, m) for t, m in self._relay if t > now]
        for msg in due:
            self.joint_state_pub.publish(msg)

    def _on_episode(self, msg: String) -> None:
        received = time.monotonic()
        try:
            event = json.loads(msg.data)
        except ValueError:
            return  # our own malformed events come back to us
        if (
            isinstance(event, dict)
            and event.get("event") == "start"
            and isinstance(event.get("stamp_ns"), int)
        ):
            with self.lock:
                self.episode_starts.append((received, event["stamp_ns"]))
                self.monitor.episode_start(event["stamp_ns"], received)

    def _on_action(self, msg: String) -> None:
        if f'"policy": "{INJECTED_POLICY}"' in msg.data[:400]:
            return
        try:
            stamp_ns = json.loads(msg.data)["stamp_ns"]
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.policy_actions += 1
            self.policy_stamp_ns = stamp_ns

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                node = status.name.removeprefix("vla_stack/")
                counts, notes = {}, {}
                for kv in status.values:
                    if kv.key.startswith("count."):
                        counts[kv.key[6:]] = int(kv.value)
                    elif kv.key != "latency_ms":
                        notes[kv.key] = kv.value
                self.counters[node], self.notes[node] = counts, notes
                texts = self.texts[node]
                for text in (status.message, *notes.values()):
                    if not texts or text not in texts[-20:]:
                        texts.append(text)

    def watch_observations(self, cameras: Sequence[str]) -> None:
        for camera in cameras:
            self.create_subscription(
                Image,
                f"/vla/observation/{camera}",
                lambda _m, c=camera: self._on_observation(c),
                RELIABLE_QOS,
            )

    def _on_observation(self, camera: str) -> None:
        with self.lock:
            self.observations[camera].append(time.monotonic())

    # --- queries --------------------------------------------------------------------------------
    def count(self, node: str, key: str) -> int:
        with self.lock:
            return self.counters.get(node, {}).get(key, 0)

    def said(self, node: str, *words: str) -> bool:
        """Did ``node`` name all ``words`` in one status message or note (last_rejected.*)?"""
        with self.lock:
            return any(all(w in text for w in words) for text in self.texts.get(node, []))

    def named(self, node: str, *words: str) -> bool:
        """Did ``node`` name all ``words`` on /diagnostics (``said``) or in one line of its log?

        /diagnostics carries the latest status at 1 Hz (and the last reason per kind); a reason that
        a good message replaced within the second is still in the log."""
        if self.said(node, *words):
            return True
        if self.log_dir is None or not (self.log_dir / f"{node}.log").exists():
            return False
        lines = (self.log_dir / f"{node}.log").read_text(errors="replace").splitlines()
        return any(all(w in line for w in words) for line in lines)

    def commands(self) -> int:
        with self.lock:
            return len(self.arm)

    def violations_since(
        self, index: int, kinds: Sequence[str] = JOINT_KINDS, near_episode_starts: bool = False
    ) -> list[Violation]:
        """Monitor violations of ``kinds`` after the first ``index``; by default without those stamped
        within EPISODE_START_WINDOW_NS after an episode start (the episode-start test owns those)."""
        with self.lock:
            found = [v for v in self.monitor.violations[index:] if v.kind in kinds]
            starts = [stamp for _, stamp in self.episode_starts]
        if near_episode_starts:
            return found
        return [v for v in found if not any(0 <= v.stamp_ns - s <= EPISODE_START_WINDOW_NS for s in starts)]

    def violations_near_episode_starts(self) -> list[Violation]:
        with self.lock:
            found = list(self.monitor.violations)
            starts = [stamp for _, stamp in self.episode_starts]
        return [v for v in found if any(0 <= v.stamp_ns - s <= EPISODE_START_WINDOW_NS for s in starts)]

    def violation_count(self) -> int:
        with self.lock:
            return len(self.monitor.violations)

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- what the injector sends ------------------------------------------------------------------
    def send_action(self, rows: object, age_s: float = 0.0, **fields: object) -> None:
        stamp = fields.pop("stamp_ns", self.now_ns() - int(age_s * 1e9))
        self.action_pub.publish(String(data=action_json(stamp, rows, **fields)))

    def send_joint_state(self, positions: Sequence[float], names: Sequence[str] = ARM_JOINT_NAMES) -> None:
        msg = JointState(name=list(names), position=[float(p) for p in positions])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(self.now_ns(), 1_000_000_000)
        msg.header.frame_id = INJECTED
        self.joint_state_pub.publish(msg)

    def latest_measured(self) -> np.ndarray:
        with self.lock:
            return self.measured[-1][2].copy()

    def publish_camera(self, topic: str, msg: Image) -> None:
        if topic not in self.camera_pubs:
            self.camera_pubs[topic] = self.create_publisher(Image, topic, CAMERA_QOS)
        self.camera_pubs[topic].publish(msg)


@contextmanager
def spinning(injector: Injector) -> Iterator[Injector]:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            rclpy.spin_once(injector, timeout_sec=0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield injector
    finally:
        stop.set()
        thread.join(5)


def node_pids(launcher) -> dict[str, int]:
    return {n.spec.name: n.process.pid for n in launcher.running}


def all_alive(launcher, pids: dict[str, int]) -> bool:
    """The graph runs and every node is the same process as at the start (none restarted or gone)."""
    return launcher.poll() is None and node_pids(launcher) == pids and all(_alive(p) for p in pids.values())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP a node (as when the OS pauses the process); SIGCONT on exit, whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def repeat(seconds: float, period_s: float, action: Callable[[int], None]) -> None:
    """Call ``action(i)`` every ``period_s`` for ``seconds`` (wall time)."""
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        action(i)
        i += 1
        time.sleep(max(0.0, start + i * period_s - time.monotonic()))
