"""Real WidowX 250 6DOF (wx250s): the Interbotix ros2_control driver plus perception, policy, actuation.

    ros2 launch vla_bringup widowx.launch.py primary_image_topic:=/camera/camera/color/image_raw
    ros2 launch vla_bringup widowx.launch.py start_driver:=false      # driver already running
    ros2 launch vla_bringup widowx.launch.py hardware_type:=fake       # Interbotix mock hardware, no arm

Params: perception.yaml, policy.yaml, actuation.yaml, then widowx.yaml on top (real-arm topics
and limits), then control.yaml (the control rate), then the launch arguments given here: the
"widowx" profile of vla_bringup.profiles, as `vla-stack launch widowx` starts it. Wall clock
(use_sim_time false). The instruction is not a parameter: publish it on /vla/instruction
(std_msgs/String, transient local), e.g. with the vla-stack command line.

The driver is interbotix_xsarm_ros_control/launch/xsarm_ros_control.launch.py (Interbotix
interbotix_ros_manipulators, humble/jazzy branches), whose arguments robot_model, hardware_type
(actual|fake) and use_rviz were checked against its source. It namespaces everything under
/<robot_name> (default robot_model): /wx250s/arm_controller/joint_trajectory,
/wx250s/gripper_controller/joint_trajectory and /wx250s/joint_states, which widowx.yaml names.
Not verified here: that the Jazzy build of the Interbotix packages keeps these names (no ROS
install on the machine that wrote this), and the camera driver, which is started separately
(e.g. realsense2_camera publishes /camera/color/image_raw by default on Humble; newer releases
use /camera/camera/color/image_raw: set primary_image_topic accordingly).
DDS: the loopback Fast DDS profile is set unless FASTDDS_DEFAULT_PROFILES_FILE already is. A camera
driver on the same machine still connects (shared memory / 127.0.0.1); one on another machine needs
a profile of your own, exported before launching.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import (
    DeclareLaunchArgument,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vla_bringup.profiles import profile

ROBOT_MODEL = "wx250s"


def _config(file_name: str) -> str:
    return os.path.join(get_package_share_directory("vla_bringup"), "config", file_name)


def _nodes(context):
    primary_topic = LaunchConfiguration("primary_image_topic").perform(context)
    wrist_topic = LaunchConfiguration("wrist_image_topic").perform(context)
    backend = LaunchConfiguration("policy").perform(context)

    overrides: dict[str, dict] = {"perception": {}, "policy": {}}
    if primary_topic:
        overrides["perception"]["primary.topic"] = primary_topic
    if wrist_topic:
        # widowx.yaml runs the primary camera only; a wrist topic adds the wrist camera to both nodes.
        overrides["perception"]["wrist.topic"] = wrist_topic
        overrides["perception"]["cameras"] = ["primary", "wrist"]
        overrides["policy"]["cameras"] = ["primary", "wrist"]
    if backend:
        overrides["policy"]["backend"] = backend
    return [
        Node(output="screen", **spec.node_action_kwargs(_config, overrides.get(spec.name)))
        for spec in profile("widowx")
    ]


def generate_launch_description() -> LaunchDescription:
    driver = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare("interbotix_xsarm_ros_control"), "launch", "xsarm_ros_control.launch.py"]
            )
        ),
        launch_arguments={
            "robot_model": ROBOT_MODEL,
            "hardware_type": LaunchConfiguration("hardware_type"),
            "use_rviz": LaunchConfiguration("use_rviz"),
        }.items(),
        # Evaluated before the include is resolved: with start_driver:=false the Interbotix
        # packages need not be installed at all.
        condition=IfCondition(LaunchConfiguration("start_driver")),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "start_driver",
                default_value="true",
                choices=["true", "false"],
                description="start the Interbotix ros2_control bring-up for the wx250s",
            ),
            DeclareLaunchArgument(
                "hardware_type",
                default_value="actual",
                choices=["actual", "fake"],
                description="Interbotix hardware: the real arm, or its mock hardware for a dry run",
            ),
            DeclareLaunchArgument("use_rviz", default_value="false", choices=["true", "false"]),
            DeclareLaunchArgument(
                "primary_image_topic",
                default_value="",
                description="third-person camera image topic; empty keeps widowx.yaml's",
            ),
            DeclareLaunchArgument(
                "wrist_image_topic",
                default_value="",
                description="wrist camera image topic; empty: no wrist camera",
            ),
            DeclareLaunchArgument(
                "policy", default_value="", description="policy backend; empty keeps the YAML's"
            ),
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                EnvironmentVariable(
                    "FASTDDS_DEFAULT_PROFILES_FILE", default_value=_config("fastdds_localhost.xml")
                ),
            ),
            driver,
            OpaqueFunction(function=_nodes),
        ]
    )
