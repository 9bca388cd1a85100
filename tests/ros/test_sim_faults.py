"""The sim node over DDS under bad controller commands: it rejects them as joint_trajectory_controller
would, counts and names each (/diagnostics), holds the arm, ignores a command computed before the
episode started, and goes on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import spinning, start_graph, wait_until
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_bringup.profiles import NodeSpec
from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAME
from vla_common.ros.node_runtime import ns_to_stamp
from vla_common.ros.qos import EVENTS_QOS

pytestmark = pytest.mark.ros


class SimProbe(Node):
    def __init__(self) -> None:
        super().__init__("sim_fault_probe")
        self.lock = threading.Lock()
        self.joints: np.ndarray | None = None
        self.counters: dict[str, int] = {}
        self.notes: dict[str, str] = {}
        self.episode_start_ns = 0
        self.arm = self.create_publisher(JointTrajectory, "/wx250s/arm_controller/joint_trajectory", 10)
        self.gripper = self.create_publisher(
            JointTrajectory, "/wx250s/gripper_controller/joint_trajectory", 10
        )
        self.create_subscription(JointState, "/wx250s/joint_states", self._on_joints, 10)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.joints = np.array([msg.position[list(msg.name).index(j)] for j in ARM_JOINT_NAMES])

    def _on_episode(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":
            with self.lock:
                self.episode_start_ns = int(event["stamp_ns"])

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "vla_stack/sim":
                with self.lock:
                    self.counters = {
                        kv.key[6:]: int(kv.value) for kv in status.values if kv.key.startswith("count.")
                    }
                    self.notes = {kv.key: kv.value for kv in status.values if kv.key.startswith("last_")}

    def measured(self) -> np.ndarray:
        with self.lock:
            return self.joints.copy()

    def count(self, key: str) -> int:
        with self.lock:
            return self.counters.get(key, 0)

    def reason(self, kind: str) -> str:
        with self.lock:
            return self.notes.get(f"last_rejected.{kind}", "")

    def send(self, publisher, names, points, stamp_ns: int = 0) -> None:
        msg = JointTrajectory(joint_names=list(names))
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.points = [
            JointTrajectoryPoint(
                positions=[float(p) for p in positions],
                time_from_start=Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9))),
            )
            for t, positions in points
        ]
        publisher.publish(msg)


@pytest.fixture()
def sim(tmp_path: Path):
    launcher = start_graph(
        [NodeSpec("sim", "vla_sim.sim_node", ("sim",), {"use_sim_time": True})],
        tmp_path,
        {
            "sim": {
                "episodes": 1,
                "max_steps": 300,  # one episode of 60 s: no reset moves the arm during the test
                "wait_for_graph_s": 0.0,
                "settle_wall_s": 0.2,
                "camera_hz": 0.5,
                "camera_width": 32,
                "camera_height": 24,
            }
        },
    )
    try:
        with spinning(SimProbe) as node:
            assert wait_until(lambda: node.joints is not None and node.episode_start_ns > 0, 60.0)
            yield node, launcher
    finally:
        launcher.stop()


def test_bad_commands_are_rejected_by_reason_and_the_arm_holds(sim):
    node, launcher = sim
    here = node.measured()
    far = here + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.3])
    cases = [  # (publisher, names, points, words of the reason)
        (node.arm, ARM_JOINT_NAMES[:5], [(0.5, far[:5])], "are not the controller's"),
        (node.arm, ARM_JOINT_NAMES, [(0.5, far[:5])], "point 0: positions"),
        (node.arm, ARM_JOINT_NAMES, [(0.5, [*far[:5], float("nan")])], "are not 6 finite numbers"),
        (node.arm, ARM_JOINT_NAMES, [(0.5, [*far[:2], 2.5, *far[3:]])], "elbow 2.5000 is outside its limits"),
        (node.arm, ARM_JOINT_NAMES, [], "0 points"),
        (node.arm, ARM_JOINT_NAMES, [(0.5, far), (0.5, far)], "point 1: time_from_start 0.5 s is not"),
        (node.gripper, [FINGER_JOINT_NAME], [(0.5, [0.2])], "left_finger 0.2000 is outside its limits"),
    ]
    for publisher, names, points, words in cases:
        kind = "arm_trajectory" if publisher is node.arm else "gripper_trajectory"
        before = node.count(f"rejected.{kind}")
        node.send(publisher, names, points)
        assert wait_until(lambda k=kind, b=before: node.count(f"rejected.{k}") > b, 5.0), (
            words,
            node.counters,
        )
        assert wait_until(lambda k=kind, w=words: w in node.reason(k), 3.0), (words, node.notes)
    assert np.max(np.abs(node.measured() - here)) < 0.02  # nothing was applied: the arm held
    assert launcher.poll() is None, launcher.poll()

    # Computed before the episode started (stamped at its start, while the clock stood still): ignored.
    with node.lock:
        start_ns = node.episode_start_ns
    node.send(node.arm, ARM_JOINT_NAMES, [(0.5, far)], stamp_ns=start_ns)
    assert wait_until(lambda: node.count("previous_episode.arm_trajectory") >= 1, 5.0), node.counters
    time.sleep(0.5)
    assert np.max(np.abs(node.measured() - here)) < 0.02

    node.send(node.arm, list(reversed(ARM_JOINT_NAMES)), [(0.5, far[::-1])])  # a good one moves the arm
    assert wait_until(lambda: abs(node.measured()[5] - far[5]) < 0.05, 5.0), (node.measured(), far)
    assert launcher.poll() is None, launcher.poll()
