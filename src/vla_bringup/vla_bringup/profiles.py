"""Node graphs the launcher starts, from the same params YAML the ROS 2 launch files use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, also the top-level key in its params YAML
    module: str  # python -m target (the console_script's module)
    params: tuple[str, ...]  # config/<name>.yaml files, later ones override earlier ones
    parameters: dict[str, object] = field(default_factory=dict)  # fixed -p overrides


_CORE = (
    NodeSpec("perception", "vla_perception.perception_node", ("perception",)),
    NodeSpec("policy", "vla_policy.policy_node", ("policy",)),
    NodeSpec("actuation", "vla_actuation.actuation_node", ("actuation",)),
)


def _with(spec: NodeSpec, extra_params: tuple[str, ...] = (), **parameters: object) -> NodeSpec:
    return NodeSpec(spec.name, spec.module, spec.params + extra_params, {**spec.parameters, **parameters})


PROFILES: dict[str, tuple[NodeSpec, ...]] = {
    # The embedded MuJoCo WidowX: everything on sim time.
    "sim": (NodeSpec("sim", "vla_sim.sim_node", ("sim",), {"use_sim_time": True}),)
    + tuple(_with(s, (), use_sim_time=True) for s in _CORE),
    # A real WidowX: the Interbotix ros2_control driver runs separately (see README).
    "widowx": tuple(
        _with(s, ("widowx",), use_sim_time=False, use_privileged_state=False)
        if s.name == "policy"
        else _with(s, ("widowx",), use_sim_time=False)
        for s in _CORE
    ),
    # Bag replay: the player publishes /clock; actuation is optional (--set actuation.enabled is not a thing:
    # use the replay command, which drops it when asked).
    "replay": tuple(_with(s, (), use_sim_time=True) for s in _CORE),
}


def profile(name: str) -> tuple[NodeSpec, ...]:
    if name not in PROFILES:
        raise ValueError(f"launch profile '{name}' is unknown; available: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]
