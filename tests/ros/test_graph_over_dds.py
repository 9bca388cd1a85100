"""The real perception, policy and actuation nodes, each in its own process, over loopback DDS.

A fake camera/driver process publishes a raw bgr8 and a jpeg camera under non-default topic names;
this test process listens to the arm commands and checks them against the WidowX limits.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from graph_helpers import assert_joint_speed_within, spinning, start_graph
from rclpy.node import Node
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from vla_actuation.kinematics import (
    ARM_JOINT_NAMES,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
)
from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment
from vla_common.action_message import decode_action_chunk
from vla_common.ros.qos import RELIABLE_QOS

pytestmark = pytest.mark.ros

NODES = [
    NodeSpec("perception", "vla_perception.perception_node", ("perception",)),
    NodeSpec("policy", "vla_policy.policy_node", ("policy",)),
    NodeSpec("actuation", "vla_actuation.actuation_node", ("actuation",)),
]
OVERRIDES = {
    "perception": {
        "primary.topic": "/test/cam_a/image_raw",
        "wrist.topic": "/test/cam_b/image_raw/compressed",
        "wrist.transport": "compressed",
    },
    "policy": {"backend": "scripted", "action_kind": "discrete"},
    "actuation": {"execution_mode": "single_step"},
}


class Listener(Node):
    def __init__(self) -> None:
        super().__init__("test_listener")
        self.arm: list[tuple[float, np.ndarray]] = []
        self.actions: list[str] = []
        self.lock = threading.Lock()
        self.create_subscription(
            JointTrajectory, "/wx250s/arm_controller/joint_trajectory", self._on_arm, 100
        )
        self.create_subscription(String, "/vla/action", lambda m: self.actions.append(m.data), RELIABLE_QOS)
        self.estop = self.create_publisher(Bool, "/vla/estop", RELIABLE_QOS)

    def _on_arm(self, msg: JointTrajectory) -> None:
        assert list(msg.joint_names) == list(ARM_JOINT_NAMES)
        with self.lock:
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.arm.append((stamp_s, np.array(msg.points[0].positions)))


@pytest.fixture()
def graph(tmp_path: Path):
    env = loopback_environment(log_dir=str(tmp_path / "fake_logs"))
    fake = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_robot_process.py"))], env=env)
    launcher = start_graph(NODES, tmp_path, OVERRIDES)
    try:
        with spinning(Listener) as listener:
            yield listener, launcher
    finally:
        launcher.stop()
        fake.terminate()
        fake.wait(10)


def _wait_for(predicate, timeout_s: float, launcher) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.poll()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_camera_to_joint_commands_within_limits(graph):
    listener, launcher = graph
    _wait_for(lambda: len(listener.arm) >= 60 and listener.actions, 60.0, launcher)
    chunk = decode_action_chunk(listener.actions[-1])
    assert chunk.space.kind == "discrete" and chunk.bins is not None and chunk.values.shape == (1, 7)
    with listener.lock:
        commands = list(listener.arm)
    joints = np.array([c[1] for c in commands])
    assert np.all(joints >= JOINT_LOWER_RAD - 1e-9) and np.all(joints <= JOINT_UPPER_RAD + 1e-9)
    # Streamed at the servo rate, never faster than the joint speed limit.
    assert_joint_speed_within([c[0] for c in commands], joints, JOINT_VELOCITY_LIMIT_RAD_S)
    # The arm moved toward the object (the scripted policy drove it), not just held.
    assert np.ptp(joints, axis=0).max() > 0.02


def test_estop_holds_and_resumes_without_jump(graph):
    listener, launcher = graph
    _wait_for(lambda: len(listener.arm) >= 20, 60.0, launcher)
    listener.estop.publish(Bool(data=True))
    time.sleep(0.5)
    with listener.lock:
        at_stop = len(listener.arm)
        held = listener.arm[-1][1]
    time.sleep(1.0)
    with listener.lock:
        assert len(listener.arm) == at_stop, "commands kept streaming during the e-stop"
    listener.estop.publish(Bool(data=False))
    _wait_for(lambda: len(listener.arm) > at_stop + 5, 30.0, launcher)
    with listener.lock:
        first_after = listener.arm[at_stop][1]
    assert np.abs(first_after - held).max() <= JOINT_VELOCITY_LIMIT_RAD_S.max() * 0.06  # one servo step
