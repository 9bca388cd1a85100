"""One policy registry: a named policy (octo-sim) reaches the policy node the same way from every command.

`vla-stack demo`, `eval` (through demo), `replay` and `launch --set policy.backend=NAME` all resolve
the name through vla_bringup.policies, and `vla-stack backends` lists it; over DDS it is proven in
tests/ros/test_launcher_loopback.py (launch) and tests/ros/test_replay.py (replay).
"""

from __future__ import annotations

import json

from vla_bringup.launcher import GraphLauncher
from vla_bringup.policies import named_policies, resolve_policy
from vla_bringup.profiles import profile
from vla_data.bag_playback import PlayTopic
from vla_data.replay import ReplayOptions, graph_overrides, replay_nodes
from vla_eval.demo import DemoOptions, demo_overrides
from vla_eval.evaluate import EvalOptions, _demo_options
from vla_stack.cli import backends_listing

CAMERAS = [
    PlayTopic("/a", "/camera/third_person/image_raw", "sensor_msgs/msg/Image"),
    PlayTopic("/b", "/camera/wrist/image_raw", "sensor_msgs/msg/Image"),
]
KEYS = ("backend", "checkpoint", "backend_options", "use_privileged_state")


def _policy_node(params: dict) -> dict:
    return {k: json.loads(params[k]) if k == "backend_options" else params[k] for k in KEYS}


def test_octo_sim_reaches_the_policy_node_alike_from_demo_eval_replay_and_launch(tmp_path):
    spec = resolve_policy("octo-sim")
    demo = demo_overrides(DemoOptions(policy="octo-sim"), spec)["policy"]
    eval_options = _demo_options(
        EvalOptions(policy="octo-sim", episodes=1),
        [{"max_steps": 80}],
        tmp_path / "plan.json",
        None,
        tmp_path,
    )
    evaluated = demo_overrides(eval_options, resolve_policy(eval_options.policy))["policy"]
    replay = graph_overrides(ReplayOptions("bag", policy="octo-sim"), CAMERAS, replay_nodes(False), 5.0)
    launch = GraphLauncher(profile("sim"), {}, overrides={"policy": {"backend": "octo-sim"}}).overrides
    want = {
        "backend": "octo",
        "checkpoint": spec.checkpoint,
        "backend_options": spec.options,
        "use_privileged_state": False,
    }
    assert spec.checkpoint.endswith("models/octo-sim")
    for command, params in (
        ("demo", demo),
        ("eval", evaluated),
        ("replay", replay["policy"]),
        ("launch", launch["policy"]),
    ):
        assert _policy_node(params) == want, command


def test_vla_stack_backends_lists_every_name_the_commands_accept():
    listed = [line.split()[0] for line in backends_listing() if line.startswith("  ")]
    assert set(named_policies()) <= set(listed)
    assert "octo-sim" in listed
