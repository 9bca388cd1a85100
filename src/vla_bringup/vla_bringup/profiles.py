"""The node graphs, described once: the pip launcher and the ``ros2 launch`` files both build from here.

A profile is the list of nodes one graph starts: which executable, which params files (in order,
later ones override earlier ones) and which parameters are fixed for that graph. Every node loads
config/control.yaml (the control rate, defined once) after its own files: see CONTROL_PARAMS. The
launch files in launch/ add their launch arguments on top;
tests/unit/vla_bringup/test_launch_matches_profiles.py checks they start exactly these nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# Loaded by every node, after its own params files: '/**' control_hz. Last, not first: rcl files
# every -p override under '/**' too, and applies the '/**' section at the position its first
# occurrence has among the params files. Loaded first, the node-specific sections would come after
# it and beat every -p override (`vla-stack demo --episodes 2` would run episodes forever).
CONTROL_PARAMS = "control"


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, also the top-level key in its params YAML
    module: str  # python -m target: <package>.<executable>, the console_script's module
    params: tuple[str, ...]  # config/<name>.yaml files, later ones override earlier ones
    parameters: dict[str, object] = field(default_factory=dict)  # fixed -p overrides

    def __post_init__(self) -> None:
        if self.module.count(".") != 1:
            raise ValueError(f"node '{self.name}': module '{self.module}' must be '<package>.<executable>'")

    @property
    def package(self) -> str:
        """The ROS package (``ros2 run <package> <executable>``)."""
        return self.module.split(".")[0]

    @property
    def executable(self) -> str:
        """The console_script the package installs for this node."""
        return self.module.split(".")[1]

    @property
    def params_files(self) -> tuple[str, ...]:
        """The params file names, in load order (control.yaml last)."""
        return tuple(f"{name}.yaml" for name in self.params)

    def node_action_kwargs(
        self,
        config_path: Callable[[str], str],
        overrides: Mapping[str, object] | None = None,
        extra_params_files: Sequence[str] = (),
    ) -> dict[str, object]:
        """Keyword arguments of the launch_ros ``Node`` action that starts this node.

        ``parameters`` lists the params file paths (``config_path`` maps a file name to its
        installed path; ``extra_params_files``, already paths, load after this node's own), then
        one dict: the fixed parameters with ``overrides`` on top.
        """
        files = [config_path(name) for name in self.params_files]
        return {
            "package": self.package,
            "executable": self.executable,
            "name": self.name,
            "parameters": [*files, *extra_params_files, {**self.parameters, **(overrides or {})}],
        }


def _node(name: str, module: str, *params: str, **parameters: object) -> NodeSpec:
    return NodeSpec(name, module, (*params, CONTROL_PARAMS), parameters)


def _core(*overrides_file: str, use_sim_time: bool) -> tuple[NodeSpec, ...]:
    """Perception, policy and actuation, each on its own params file (+ an overrides file)."""
    modules = {
        "perception": "vla_perception.perception_node",
        "policy": "vla_policy.policy_node",
        "actuation": "vla_actuation.actuation_node",
    }
    return tuple(
        _node(name, module, name, *overrides_file, use_sim_time=use_sim_time)
        for name, module in modules.items()
    )


PROFILES: dict[str, tuple[NodeSpec, ...]] = {
    # The embedded MuJoCo WidowX. The sim node is the clock: it steps physics on wall time and
    # publishes /clock, so it keeps wall time itself; everything else runs on /clock.
    "sim": (_node("sim", "vla_sim.sim_node", "sim", use_sim_time=False), *_core(use_sim_time=True)),
    # A real WidowX: the Interbotix ros2_control driver runs separately (launch/widowx.launch.py
    # starts it); widowx.yaml holds the real arm's topics.
    "widowx": _core("widowx", use_sim_time=False),
    # The WidowX in Gazebo (Interbotix xsarm_gz_classic, launch/gazebo.launch.py), on Gazebo's clock.
    "gazebo": _core("gazebo", use_sim_time=True),
    # Bag replay: the player publishes /clock. The replay command and replay.launch.py drop
    # actuation unless asked for it.
    "replay": _core(use_sim_time=True),
}


def profile(name: str) -> tuple[NodeSpec, ...]:
    if name not in PROFILES:
        raise ValueError(f"launch profile '{name}' is unknown; available: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]
