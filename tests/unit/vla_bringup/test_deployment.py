"""The deployment numbers come from the params files the nodes load, and follow a changed copy."""

from __future__ import annotations

import shutil

import pytest
import yaml
from params_copy import edit_params

from vla_bringup.deployment import load_deployment, node_parameters
from vla_bringup.paths import repo_root
from vla_bringup.policies import resolve_policy

CONFIG = repo_root() / "config"


def test_the_shipped_deployment():
    deployment = load_deployment()
    assert deployment.control_hz == 5.0 and deployment.step_dt_s == 0.2
    assert deployment.chunk_horizon == 4
    assert deployment.camera_sizes == {"primary": (256, 256), "wrist": (128, 128)}


def test_the_deployment_follows_a_changed_copy(config_copy):
    edit_params(config_copy / "control.yaml", "/**", control_hz=10.0)
    edit_params(config_copy / "policy.yaml", "policy", chunk_horizon=2)
    edit_params(config_copy / "perception.yaml", "perception", cameras=["primary"])
    deployment = load_deployment()
    assert deployment.step_dt_s == 0.1 and deployment.chunk_horizon == 2
    assert deployment.camera_sizes == {"primary": (256, 256)}
    # the named policy runs the graph's chunk length
    assert resolve_policy("octo-sim", checkpoint="/m").options["chunk_horizon"] == 2


def test_wildcard_parameters_come_first(config_copy):
    (config_copy / "extra.yaml").write_text(
        "/**:\n  ros__parameters: {control_hz: 4.0, seed: 1}\nsim:\n  ros__parameters: {seed: 2}\n"
    )
    assert node_parameters("extra", "sim") == {"control_hz": 4.0, "seed": 2}


def test_errors_name_the_file_and_the_key(config_copy):
    edit_params(config_copy / "control.yaml", "/**", control_hz=0.0)
    with pytest.raises(ValueError, match="control.yaml: control_hz must be > 0, got 0.0"):
        load_deployment()
    shutil.copy(CONFIG / "control.yaml", config_copy / "control.yaml")
    document = yaml.safe_load((config_copy / "policy.yaml").read_text())
    del document["policy"]["ros__parameters"]["chunk_horizon"]
    (config_copy / "policy.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(KeyError, match="policy.yaml: 'chunk_horizon' is missing"):
        load_deployment()
    with pytest.raises(FileNotFoundError, match="params file 'absent'"):
        node_parameters("absent", "sim")
