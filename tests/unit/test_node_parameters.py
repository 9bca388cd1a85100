"""Every node declares the one shared control_hz, read-only, and describes each parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vla_actuation.actuation_settings import PARAMETERS as ACTUATION
from vla_common.parameters import control_hz_spec, max_open_loop_spec
from vla_perception.perception_settings import PARAMETERS as PERCEPTION
from vla_perception.perception_settings import camera_parameters
from vla_policy.policy_settings import PARAMETERS as POLICY
from vla_sim.sim_settings import ROBOT_NAME, sim_parameters

CONFIG = Path(__file__).resolve().parents[2] / "config"
NODES = {
    "actuation": ACTUATION,
    "perception": PERCEPTION,
    "policy": POLICY,
    "sim": (ROBOT_NAME, *sim_parameters("wx250s")),
}


@pytest.mark.parametrize("node", sorted(NODES))
def test_control_hz_is_the_shared_read_only_spec(node):
    spec = next(spec for spec in NODES[node] if spec.name == "control_hz")
    shared = control_hz_spec("")
    assert (spec.default, spec.minimum, spec.maximum, spec.read_only) == (
        shared.default,
        shared.minimum,
        shared.maximum,
        True,
    )


@pytest.mark.parametrize("node", sorted(NODES))
def test_every_parameter_is_described_once(node):
    names = [spec.name for spec in NODES[node]]
    assert len(names) == len(set(names)), names
    assert all(spec.description for spec in NODES[node])


def _flatten(parameters: dict, prefix: str = "") -> set[str]:
    names = set()
    for key, value in parameters.items():
        if isinstance(value, dict):
            names |= _flatten(value, f"{prefix}{key}.")
        else:
            names.add(f"{prefix}{key}")
    return names


def _declared(node: str, parameters: dict) -> set[str]:
    names = {spec.name for spec in NODES[node]} | {"use_sim_time"}  # use_sim_time: rclpy's own
    if node == "perception":
        for camera in parameters.get("cameras", ["primary", "wrist"]):
            names |= {spec.name for spec in camera_parameters(camera)}
    return names


@pytest.mark.parametrize(
    "file_name", ["control", "actuation", "perception", "policy", "sim", "gazebo", "widowx"]
)
def test_every_key_in_the_params_files_is_a_declared_parameter(file_name):
    """A key no node declares is silently ignored by rclpy (a typo, or a copy such as step_dt_s)."""
    content = yaml.safe_load((CONFIG / f"{file_name}.yaml").read_text())
    for node, body in content.items():
        parameters = body["ros__parameters"]
        if node == "/**":  # control.yaml: reaches every node; each key is some nodes' shared number
            unknown = _flatten(parameters) - set().union(*(_declared(n, parameters) for n in NODES))
            assert not unknown, f"config/{file_name}.yaml: /** sets {sorted(unknown)}, declared by no node"
            continue
        if node in NODES:  # nodes that are not ours (recorders) are skipped
            unknown = _flatten(parameters) - _declared(node, parameters)
            assert not unknown, (
                f"config/{file_name}.yaml: {node} sets {sorted(unknown)}, not declared by {node}"
            )


def test_the_shared_open_loop_bound_is_one_spec():
    """control.yaml's max_open_loop_s: the policy plans by it, actuation stops a chunk there."""
    declaring = {node for node, specs in NODES.items() if any(s.name == "max_open_loop_s" for s in specs)}
    assert declaring == {"policy", "actuation"}
    shared = max_open_loop_spec()
    for node in declaring:
        assert next(s for s in NODES[node] if s.name == "max_open_loop_s") == shared
