"""The ``ros2 launch`` files start the graphs of vla_bringup.profiles, as the pip launcher does.

Each launch file's generate_launch_description runs against small stand-ins for the ``launch``,
``launch_ros`` and ``ament_index_python`` modules (no ROS install here) that record the actions
built; the OpaqueFunction is then evaluated with the launch arguments at their defaults (or as a
test sets them). The Node actions it returns must be the profile's nodes: same executables, same
params files in the same order as the pip launcher's command line, same fixed parameters, plus
only what the launch arguments add.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

from vla_bringup.launcher import node_command
from vla_bringup.profiles import profile

REPO = Path(__file__).resolve().parents[3]
LAUNCH_DIR = REPO / "launch"


class Recorded:
    """A launch action or substitution: keeps its arguments."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args
        self.kwargs = kwargs


class Node(Recorded):
    pass


class DeclareLaunchArgument(Recorded):
    pass


class OpaqueFunction(Recorded):
    pass


class ExecuteProcess(Recorded):
    pass


class LaunchConfiguration(Recorded):
    def perform(self, context: dict[str, str]) -> str:
        return context[self.args[0]]


def fake_ros_modules(share_dir: Path) -> dict[str, types.ModuleType]:
    contents = {
        "ament_index_python": {},
        "ament_index_python.packages": {"get_package_share_directory": lambda package: str(share_dir)},
        "launch": {},
        "launch.actions": {
            "DeclareLaunchArgument": DeclareLaunchArgument,
            "ExecuteProcess": ExecuteProcess,
            "IncludeLaunchDescription": Recorded,
            "OpaqueFunction": OpaqueFunction,
            "SetEnvironmentVariable": Recorded,
        },
        "launch.conditions": {"IfCondition": Recorded},
        "launch.launch_description": {"LaunchDescription": lambda entities: list(entities)},
        "launch.launch_description_sources": {"PythonLaunchDescriptionSource": Recorded},
        "launch.substitutions": {
            "EnvironmentVariable": Recorded,
            "LaunchConfiguration": LaunchConfiguration,
            "PathJoinSubstitution": Recorded,
        },
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
        "launch_ros.substitutions": {"FindPackageShare": Recorded},
    }
    modules = {}
    for name, attributes in contents.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        modules[name] = module
    return modules


@pytest.fixture
def share_dir(tmp_path, monkeypatch) -> Path:
    """share/vla_bringup of a colcon install: its config/ is the repository's."""
    (tmp_path / "config").symlink_to(REPO / "config")
    for name, module in fake_ros_modules(tmp_path).items():
        monkeypatch.setitem(sys.modules, name, module)
    return tmp_path


def launched_actions(launch_file: Path, arguments: dict[str, str] | None = None) -> list[Recorded]:
    """What the launch file's OpaqueFunction starts, with the launch arguments given (else defaults)."""
    entities = runpy.run_path(str(launch_file))["generate_launch_description"]()
    context = {
        e.args[0]: e.kwargs.get("default_value", "") for e in entities if isinstance(e, DeclareLaunchArgument)
    }
    unknown = set(arguments or {}) - set(context)
    assert not unknown, f"{launch_file.name} declares no launch argument {sorted(unknown)}"
    context.update(arguments or {})
    actions = []
    for entity in entities:
        if isinstance(entity, OpaqueFunction):
            actions += entity.kwargs["function"](context)
    return actions


def graph_differences(
    nodes: list[Node], profile_name: str, added: dict[str, dict] | None = None, extra_files: tuple = ()
) -> list[str]:
    """How the launched nodes differ from the profile (with ``added`` launch-argument parameters)."""
    specs = {spec.name: spec for spec in profile(profile_name)}
    launched = {node.kwargs.get("name"): node for node in nodes}
    differences = []
    if set(launched) != set(specs):
        differences.append(f"nodes {sorted(launched, key=str)} != profile's {sorted(specs)}")
    for name in sorted(set(launched) & set(specs)):
        node, spec = launched[name].kwargs, specs[name]
        if (node.get("package"), node.get("executable")) != (spec.package, spec.executable):
            differences.append(
                f"{name}: runs {node.get('package')}/{node.get('executable')}, not {spec.module}"
            )
        *files, values = node["parameters"]
        cmd = node_command(spec)
        pip_files = [Path(cmd[i + 1]).name for i, a in enumerate(cmd) if a == "--params-file"]
        if [Path(f).name for f in files] != [*pip_files, *extra_files]:
            differences.append(
                f"{name}: params files {files}, pip launcher {pip_files} + {list(extra_files)}"
            )
        expected = {**spec.parameters, **(added or {}).get(name, {})}
        if values != expected:
            differences.append(f"{name}: parameters {values} != {expected}")
    return differences


def nodes_of(actions: list[Recorded]) -> list[Node]:
    return [a for a in actions if isinstance(a, Node)]


@pytest.mark.parametrize(
    ("launch_file", "profile_name", "added"),
    [
        ("sim.launch.py", "sim", {"policy": {"backend": "scripted"}}),  # policy:= defaults to scripted
        ("widowx.launch.py", "widowx", {}),
        ("gazebo.launch.py", "gazebo", {}),
    ],
)
def test_launch_file_starts_its_profile(share_dir, launch_file, profile_name, added):
    actions = launched_actions(LAUNCH_DIR / launch_file)
    assert graph_differences(nodes_of(actions), profile_name, added) == []
    for node in nodes_of(actions):
        # the control rate, after the node's own files and before the launch arguments' values
        assert Path(node.kwargs["parameters"][-2]) == share_dir / "config" / "control.yaml"


def test_replay_launch_starts_the_replay_profile(share_dir):
    without = nodes_of(launched_actions(LAUNCH_DIR / "replay.launch.py"))
    assert {n.kwargs["name"] for n in without} == {"perception", "policy"}
    actions = launched_actions(
        LAUNCH_DIR / "replay.launch.py",
        {"with_actuation": "true", "overrides": "widowx.yaml", "policy": "octo", "bag": "/data/b"},
    )
    added = {"policy": {"backend": "octo"}}
    assert graph_differences(nodes_of(actions), "replay", added, extra_files=("widowx.yaml",)) == []
    (play,) = [a for a in actions if isinstance(a, ExecuteProcess)]
    assert play.kwargs["cmd"] == ["ros2", "bag", "play", "/data/b", "--clock"]


def test_launch_arguments_reach_the_nodes(share_dir):
    sim = launched_actions(
        LAUNCH_DIR / "sim.launch.py", {"seed": "3", "instruction": "stack", "policy": "octo"}
    )
    added = {"sim": {"seed": 3, "instruction": "stack"}, "policy": {"backend": "octo"}}
    assert graph_differences(nodes_of(sim), "sim", added) == []
    widowx = launched_actions(
        LAUNCH_DIR / "widowx.launch.py", {"primary_image_topic": "/cam", "wrist_image_topic": "/wrist"}
    )
    both = ["primary", "wrist"]
    added = {
        "perception": {"primary.topic": "/cam", "wrist.topic": "/wrist", "cameras": both},
        "policy": {"cameras": both},
    }
    assert graph_differences(nodes_of(widowx), "widowx", added) == []
    with pytest.raises(ValueError, match="seed:='x' is not an integer"):
        launched_actions(LAUNCH_DIR / "sim.launch.py", {"seed": "x"})


def test_a_launch_file_that_drifts_from_its_profile_is_caught(share_dir, tmp_path):
    """A hand-written node list (the sim node on sim time, no control.yaml) differs from the profile."""
    source = (LAUNCH_DIR / "sim.launch.py").read_text()
    built = 'Node(output="screen", **spec.node_action_kwargs(_config, overrides.get(spec.name)))'
    assert built in source
    drifted = built.replace(
        "**spec.node_action_kwargs(_config, overrides.get(spec.name))",
        "package=spec.package, executable=spec.executable, name=spec.name, "
        'parameters=[_config(f"{spec.name}.yaml"), {"use_sim_time": True, **overrides.get(spec.name, {})}]',
    )
    (tmp_path / "drifted.launch.py").write_text(source.replace(built, drifted))
    differences = graph_differences(
        nodes_of(launched_actions(tmp_path / "drifted.launch.py")), "sim", {"policy": {"backend": "scripted"}}
    )
    assert any(d.startswith("sim: params files") for d in differences), differences
    assert any(d.startswith("sim: parameters {'use_sim_time': True}") for d in differences), differences
