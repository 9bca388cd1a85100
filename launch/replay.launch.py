"""Bag replay: perception and policy (actuation optional) fed by a recorded rosbag2, on the bag's clock.

    ros2 launch vla_bringup replay.launch.py bag:=/data/episode_0 overrides:=widowx.yaml
    ros2 launch vla_bringup replay.launch.py             # play the bag yourself: ros2 bag play B --clock

Params: perception.yaml, policy.yaml (and actuation.yaml), control.yaml, then the optional
`overrides` file from the same config folder (widowx.yaml for a bag recorded on the real arm, so
the camera topics match), then the launch arguments; the nodes are the "replay" profile of
vla_bringup.profiles, as `vla-stack replay` starts them. The instruction comes from the bag
(/vla/instruction).
use_sim_time is true: the bag player publishes /clock (`--clock`).
If the bag itself recorded /clock (a sim run), set play_clock:=false so that only one clock runs.

with_actuation:=true also starts the actuation node so its commands can be checked in replay; never
use it while an arm driver is running: the commands would move the arm.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, SetEnvironmentVariable
from launch.launch_description import LaunchDescription
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from vla_bringup.profiles import profile


def _config(file_name: str) -> str:
    return os.path.join(get_package_share_directory("vla_bringup"), "config", file_name)


def _actions(context):
    overrides = LaunchConfiguration("overrides").perform(context)
    extra_params = [_config(overrides)] if overrides else []
    if overrides and not os.path.isfile(extra_params[0]):
        raise FileNotFoundError(f"launch argument overrides:='{overrides}': {extra_params[0]} does not exist")
    backend = LaunchConfiguration("policy").perform(context)
    with_actuation = LaunchConfiguration("with_actuation").perform(context) == "true"
    node_overrides = {"policy": {"backend": backend}} if backend else {}

    actions = [
        Node(output="screen", **spec.node_action_kwargs(_config, node_overrides.get(spec.name), extra_params))
        for spec in profile("replay")
        if with_actuation or spec.name != "actuation"
    ]
    bag = LaunchConfiguration("bag").perform(context)
    if bag:
        play = ["ros2", "bag", "play", bag]
        if LaunchConfiguration("play_clock").perform(context) == "true":
            play.append("--clock")
        actions.append(ExecuteProcess(cmd=play, output="screen"))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "bag", default_value="", description="rosbag2 to play; empty: play it yourself"
            ),
            DeclareLaunchArgument(
                "play_clock",
                default_value="true",
                choices=["true", "false"],
                description="ros2 bag play --clock (false when the bag already holds /clock)",
            ),
            DeclareLaunchArgument(
                "overrides", default_value="", description="extra params file in config/, e.g. widowx.yaml"
            ),
            DeclareLaunchArgument(
                "with_actuation",
                default_value="false",
                choices=["true", "false"],
                description="also run actuation",
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
            OpaqueFunction(function=_actions),
        ]
    )
