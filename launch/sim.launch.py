"""Simulated WidowX 250 6DOF: MuJoCo sim, perception, policy and actuation on the sim clock.

    ros2 launch vla_bringup sim.launch.py
    ros2 launch vla_bringup sim.launch.py policy:=scripted instruction:="put the spoon on the towel" seed:=3

The nodes, their params files (control.yaml last) and fixed parameters are the "sim" profile of
vla_bringup.profiles, the same description the pip launcher (`vla-stack demo`) starts. Every node
reads its params files from share/vla_bringup/config (config/ in the repository). Launch arguments
left empty keep the value in those files; given ones override it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.launch_description import LaunchDescription
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node

from vla_bringup.profiles import profile


def _config(file_name: str) -> str:
    return os.path.join(get_package_share_directory("vla_bringup"), "config", file_name)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"launch argument seed:='{text}' is not an integer") from None


def _nodes(context):
    backend = LaunchConfiguration("policy").perform(context)
    instruction = LaunchConfiguration("instruction").perform(context)
    seed = LaunchConfiguration("seed").perform(context)

    # The sim owns the episode: it publishes each episode's instruction (latched
    # /vla/instruction) and seeds it. Which node runs on which clock is the profile's.
    overrides: dict[str, dict] = {"sim": {}, "policy": {"backend": backend}}
    if instruction:
        overrides["sim"]["instruction"] = instruction
    if seed:
        overrides["sim"]["seed"] = _seed(seed)
    return [
        Node(output="screen", **spec.node_action_kwargs(_config, overrides.get(spec.name)))
        for spec in profile("sim")
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("policy", default_value="scripted", description="policy backend name"),
            DeclareLaunchArgument(
                "instruction",
                default_value="",
                description="instruction for every episode; empty: each task's own",
            ),
            DeclareLaunchArgument(
                "seed", default_value="", description="seed of the first episode; empty keeps sim.yaml's"
            ),
            # Loopback-only Fast DDS (shared memory + 127.0.0.1), unless the caller chose a profile.
            # Only Fast DDS reads this variable; other RMWs ignore it.
            SetEnvironmentVariable(
                "FASTDDS_DEFAULT_PROFILES_FILE",
                EnvironmentVariable(
                    "FASTDDS_DEFAULT_PROFILES_FILE", default_value=_config("fastdds_localhost.xml")
                ),
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
