"""Over DDS: the arm moved by a reset that no start event has announced (yet) is streamed from where
it is, never from the old pose (issue 22 point 3, at episode boundaries)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from graph_helpers import spinning, start_graph, wait_until
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_actuation.kinematics import JOINT_VELOCITY_LIMIT_RAD_S
from vla_bringup.profiles import NodeSpec
from vla_common.action_message import encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_common.robot import ARM_JOINT_NAMES
from vla_common.ros.qos import RELIABLE_QOS

pytestmark = pytest.mark.ros

START = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160])
# Commands sent before the node can have seen the reset (its joint states come every 20 ms) are
# dropped, as the sim drops those stamped before an episode start.
IN_FLIGHT_NS = 50_000_000
RESET_MOVE = np.array([0.0, 0.0, 0.0, 0.0, -0.6, 0.0])  # a reset pose 0.6 rad away: found at episode starts


class Robot(Node):
    """A driver stand-in: joint states at 50 Hz where the last command put the arm; records how fast
    each command asks the arm to move from where it is (distance / time_from_start)."""

    def __init__(self) -> None:
        super().__init__("reset_pose_robot")
        self.lock = threading.Lock()
        self.pose = START.copy()
        self.speeds: list[tuple[int, float]] = []  # (stamp ns, worst speed / limit)
        self.reset_ns = 0  # when the arm was moved (node clock)
        self.actions = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self.joint_pub = self.create_publisher(JointState, "/wx250s/joint_states", 10)
        self.create_subscription(
            JointTrajectory, "/wx250s/arm_controller/joint_trajectory", self._on_arm, 100
        )
        self.create_timer(0.02, self._publish)

    def _on_arm(self, msg: JointTrajectory) -> None:
        point = msg.points[0]
        target = np.array(point.positions)
        tfs = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            if stamp_ns <= self.reset_ns + IN_FLIGHT_NS:
                return
            ratio = float(np.max(np.abs(target - self.pose) / (JOINT_VELOCITY_LIMIT_RAD_S * tfs)))
            self.speeds.append((stamp_ns, ratio))
            self.pose = target

    def _publish(self) -> None:
        with self.lock:
            pose = self.pose.copy()
        msg = JointState(name=list(ARM_JOINT_NAMES), position=[float(v) for v in pose])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(msg)

    def teleport(self, move: np.ndarray) -> int:
        with self.lock:
            self.pose = self.pose + move
            self.reset_ns = self.get_clock().now().nanoseconds
        return self.reset_ns

    def send(self, values) -> None:
        stamp = self.get_clock().now().nanoseconds
        self.actions.publish(String(data=encode_action_chunk(stamp, ActionSpace(), np.atleast_2d(values))))


def test_a_reset_pose_the_start_event_has_not_announced_is_streamed_from_where_the_arm_is(tmp_path):
    launcher = start_graph(
        [NodeSpec("actuation", "vla_actuation.actuation_node", ("actuation",))],
        tmp_path,
        {"actuation": {"execution_mode": "single_step"}},
    )
    try:
        with spinning(Robot) as robot:
            assert wait_until(lambda: robot.count_subscribers("/vla/action") > 0, 30.0)
            time.sleep(1.0)  # joint states reach the node
            step = [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
            for _ in range(5):
                robot.send(step)
                time.sleep(0.2)
            assert wait_until(lambda: len(robot.speeds) > 0, 3.0), "no arm command before the reset"
            reset_ns = robot.teleport(RESET_MOVE)
            for _ in range(8):
                robot.send(step)
                time.sleep(0.2)
            with robot.lock:
                after = [ratio for stamp_ns, ratio in robot.speeds if stamp_ns > reset_ns]
            assert after, "no arm command after the reset"
            # From where the arm is, within the speed limit (1 % for stamps as float seconds):
            # streamed from the old pose, the first command asked for 0.6 rad in 0.04 s (4.8x).
            assert max(after) <= 1.01, after
    finally:
        launcher.stop()
