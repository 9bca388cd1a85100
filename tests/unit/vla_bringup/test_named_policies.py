"""One table of named policies for every command: demo, eval, replay, launch and `vla-stack backends`."""

from __future__ import annotations

import json

import pytest

from vla_bringup import policies
from vla_bringup.launcher import GraphLauncher
from vla_bringup.policies import describe_policies, expand_policy_overrides, named_policies
from vla_bringup.profiles import profile
from vla_policy.contract import available_backends
from vla_stack.cli import backends_listing


def test_a_named_policy_as_the_policy_backend_is_expanded_before_the_node_starts(tmp_path):
    overrides = {"policy": {"backend": "octo-sim", "checkpoint": str(tmp_path)}, "sim": {"episodes": 1}}
    expanded = expand_policy_overrides(overrides)
    policy = expanded["policy"]
    assert (policy["backend"], policy["checkpoint"], policy["use_privileged_state"]) == (
        "octo",
        str(tmp_path),
        False,
    )
    assert json.loads(policy["backend_options"]) == {"chunk_horizon": 4, "seed": 0}
    assert expanded["sim"] == {"episodes": 1}
    assert overrides["policy"]["backend"] == "octo-sim"  # the caller's mapping is left alone


def test_options_given_beside_a_named_policy_are_merged_over_its_own():
    expanded = expand_policy_overrides(
        {"policy": {"backend": "octo-sim", "backend_options": '{"seed": 7}', "use_privileged_state": True}}
    )["policy"]
    assert json.loads(expanded["backend_options"]) == {"chunk_horizon": 4, "seed": 7}
    assert expanded["use_privileged_state"] is True
    with pytest.raises(ValueError, match="backend_options: expected a JSON object, got '\\[1\\]'"):
        expand_policy_overrides({"policy": {"backend": "octo-sim", "backend_options": "[1]"}})


def test_a_backend_name_is_left_as_it_is_and_a_missing_checkpoint_is_named(monkeypatch, tmp_path):
    plain = {"policy": {"backend": "octo", "checkpoint": "/m"}}
    assert expand_policy_overrides(plain) == plain
    scripted = expand_policy_overrides({"policy": {"backend": "scripted"}})["policy"]
    assert scripted["backend"] == "scripted" and scripted["use_privileged_state"] is True
    monkeypatch.setattr(policies, "repo_root", lambda: tmp_path)
    with pytest.raises(ValueError, match=f"policy 'octo-sim': no checkpoint at {tmp_path}/models/octo-sim"):
        GraphLauncher(profile("sim"), {}, overrides={"policy": {"backend": "octo-sim"}})


def test_the_launcher_expands_it_for_launch_demo_eval_and_replay():
    launcher = GraphLauncher(profile("sim"), {}, overrides={"policy": {"backend": "octo-sim"}})
    assert launcher.overrides["policy"]["backend"] == "octo"
    assert launcher.overrides["policy"]["checkpoint"].endswith("models/octo-sim")


def test_vla_stack_backends_lists_the_backends_and_marks_the_named_policies():
    lines = backends_listing()
    named_at = next(i for i, line in enumerate(lines) if line.startswith("named policies"))
    assert [line.strip() for line in lines[1:named_at]] == available_backends()
    named = {line.split()[0]: line for line in lines[named_at + 1 :]}
    assert set(named) == set(named_policies()) >= {"octo-sim", "scripted"}
    assert "backend octo, checkpoint models/octo-sim" in named["octo-sim"]
    assert describe_policies()["scripted"].startswith("backend scripted")
