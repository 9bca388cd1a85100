"""Test fake, run as its own process: two cameras and a WidowX driver stand-in over DDS.

Publishes a 640x480 bgr8 raw camera and a jpeg CompressedImage camera at 10 Hz, the instruction
(latched), a privileged scene state with one object, and joint_states at 50 Hz that follow the last
commanded arm trajectory point (like the Interbotix fake driver). Runs until killed.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_actuation.kinematics import forward_kinematics
from vla_common.ros.qos import CAMERA_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_perception.image_codec import array_to_compressed, array_to_image_fields

NEUTRAL = [-0.132, -0.762, 0.445, -0.020, 1.756, -0.160]
ARM = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


class FakeRobot(Node):
    def __init__(self, instruction: str) -> None:
        super().__init__("fake_robot")
        self.joints = np.array(NEUTRAL)
        self.finger = 0.037
        self.rng = np.random.default_rng(0)
        self.raw_pub = self.create_publisher(Image, "/test/cam_a/image_raw", CAMERA_QOS)
        self.jpeg_pub = self.create_publisher(CompressedImage, "/test/cam_b/image_raw/compressed", CAMERA_QOS)
        self.joint_pub = self.create_publisher(JointState, "/wx250s/joint_states", 10)
        self.priv_pub = self.create_publisher(String, "/sim/privileged_state", RELIABLE_QOS)
        self.instruction_pub = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.instruction_pub.publish(String(data=instruction))
        self.create_subscription(JointTrajectory, "/wx250s/arm_controller/joint_trajectory", self._on_arm, 10)
        self.create_subscription(
            JointTrajectory, "/wx250s/gripper_controller/joint_trajectory", self._on_grip, 10
        )
        self.create_timer(0.1, self._cameras)
        self.create_timer(0.02, self._joint_states)

    def _on_arm(self, msg: JointTrajectory) -> None:
        order = [list(msg.joint_names).index(j) for j in ARM]
        self.joints = np.array([msg.points[-1].positions[i] for i in order])

    def _on_grip(self, msg: JointTrajectory) -> None:
        self.finger = float(msg.points[-1].positions[0])

    def _cameras(self) -> None:
        stamp = self.get_clock().now().to_msg()
        frame = self.rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        fields = array_to_image_fields(frame, "bgr8")
        raw = Image(
            height=fields.height, width=fields.width, encoding="bgr8", step=fields.step, data=fields.data
        )
        raw.header.stamp = stamp
        self.raw_pub.publish(raw)
        fmt, data = array_to_compressed(frame[::2, ::2].copy(), "jpeg", "bgr8")
        jpeg = CompressedImage(format=fmt, data=data)
        jpeg.header.stamp = stamp
        self.jpeg_pub.publish(jpeg)
        tool = forward_kinematics(self.joints)
        state = {
            "objects": {
                "red_cube": {
                    "position": [0.30, 0.05, 0.02],
                    "yaw": 0.0,
                    "colour": "red",
                    "shape": "cube",
                    "size_m": 0.04,
                }
            },
            "target_object": "red_cube",
            "destination": None,
            "destination_position": None,
            "tool_pose": tool.tolist(),
            "finger_m": self.finger,
            "time_s": 0.0,
        }
        self.priv_pub.publish(String(data=json.dumps(state)))

    def _joint_states(self) -> None:
        msg = JointState(
            name=ARM + ["left_finger", "right_finger"],
            position=[float(v) for v in self.joints] + [self.finger, -self.finger],
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(msg)


def main() -> None:
    rclpy.init()
    node = FakeRobot(sys.argv[1] if len(sys.argv) > 1 else "pick up the red cube")
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
