"""WidowX 250 6DOF in Gazebo through ros2_control, with perception, policy and actuation on sim time.

    ros2 launch vla_bringup gazebo.launch.py use_gazebo_gui:=false

Params: perception.yaml, policy.yaml, actuation.yaml, then gazebo.yaml on top, then control.yaml
(the control rate), then the launch arguments given here: the "gazebo" profile of vla_bringup.profiles.

The simulator is interbotix_xsarm_sim/launch/xsarm_gz_classic.launch.py (Interbotix
interbotix_ros_manipulators), arguments robot_model, use_rviz, use_gazebo_gui checked against its
humble source; it spawns arm_controller, gripper_controller and joint_state_broadcaster under
/<robot_name>. Limits that could not be verified or lifted here:
- Interbotix ships Gazebo Classic only. Gazebo Classic is not packaged for Ubuntu Noble, so this
  file works on Humble; on Jazzy/Kilted the description needs a gz (Harmonic) port with
  gz_ros2_control and ros_gz_bridge, which Interbotix does not provide.
- The Interbotix world has no camera: add one to the world (or the URDF via external_urdf_loc) and
  set primary_image_topic to its image topic; gazebo.yaml assumes /camera/image_raw.
- The controller topic names under /wx250s are inferred from the namespaces in that launch file,
  not observed on a running Gazebo.
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
    backend = LaunchConfiguration("policy").perform(context)

    overrides: dict[str, dict] = {"perception": {}, "policy": {}}
    if primary_topic:
        overrides["perception"]["primary.topic"] = primary_topic
    if backend:
        overrides["policy"]["backend"] = backend
    return [
        Node(output="screen", **spec.node_action_kwargs(_config, overrides.get(spec.name)))
        for spec in profile("gazebo")
    ]


def generate_launch_description() -> LaunchDescription:
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution(
                [FindPackageShare("interbotix_xsarm_sim"), "launch", "xsarm_gz_classic.launch.py"]
            )
        ),
        launch_arguments={
            "robot_model": ROBOT_MODEL,
            "use_rviz": LaunchConfiguration("use_rviz"),
            "use_gazebo_gui": LaunchConfiguration("use_gazebo_gui"),
        }.items(),
        condition=IfCondition(LaunchConfiguration("start_gazebo")),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "start_gazebo",
                default_value="true",
                choices=["true", "false"],
                description="start the Interbotix Gazebo bring-up (false: it is already running)",
            ),
            DeclareLaunchArgument("use_gazebo_gui", default_value="true", choices=["true", "false"]),
            DeclareLaunchArgument("use_rviz", default_value="false", choices=["true", "false"]),
            DeclareLaunchArgument(
                "primary_image_topic",
                default_value="",
                description="camera image topic; empty keeps gazebo.yaml's",
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
            gazebo,
            OpaqueFunction(function=_nodes),
        ]
    )
