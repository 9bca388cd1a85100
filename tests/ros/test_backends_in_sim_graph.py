"""Each model backend, with tiny random weights, drives the sim through the real node graph.

With random weights the arm just moves: this proves the plumbing (checkpoint loading in the policy
node, shapes, action coding, timing) and that whatever a model says, the arm stays in its limits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from graph_helpers import assert_joint_speed_within

from vla_actuation.kinematics import (
    ARM_JOINT_NAMES,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
    JOINT_VELOCITY_LIMIT_RAD_S,
)
from vla_bringup.ros_env import loopback_environment
from vla_data.bag_io import iter_messages

pytestmark = pytest.mark.ros


def _rt2_checkpoint(directory):
    from vla_policy.backends.rt2.random_model import save_tiny_rt2_checkpoint

    # Seed 1: this random model answers "0 0 0 ..." (no terminate, every delta at its low bin); the
    # safety layer clips those to the per-step bound and the workspace box.
    return save_tiny_rt2_checkpoint(directory, token_mode="number_tokens", seed=1)


def _openvla_checkpoint(directory):
    import dataclasses

    import torch

    from vla_common.action_space import BRIDGE_ORIG_STATS
    from vla_policy.backends.openvla.configuration import preset
    from vla_policy.backends.openvla.loading import build_model, save_openvla_checkpoint
    from vla_policy.backends.openvla.processing import synthetic_tokenizer

    stats = {"bridge_orig": {"action": BRIDGE_ORIG_STATS.as_dict()}}
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(preset("tiny"), norm_stats=stats), "cpu", torch.float32)
    save_openvla_checkpoint(model, synthetic_tokenizer(model.config.action_vocab_size), stats, directory)
    return directory


def _octo_checkpoint(directory):
    from vla_common.action_space import BRIDGE_ORIG_STATS
    from vla_policy.backends.octo.backend import build_random_octo
    from vla_policy.backends.octo.checkpoint import save_octo_checkpoint

    tiny = build_random_octo("tiny", seed=0)
    return save_octo_checkpoint(
        tiny.model, tiny.config, BRIDGE_ORIG_STATS, directory, tokenizer=tiny.tokenizer
    )


CHECKPOINTS = {"openvla": _openvla_checkpoint, "octo": _octo_checkpoint, "rt2": _rt2_checkpoint}
# How each is executed: OpenVLA and RT-2 emit one step; Octo's 4-step chunks are temporally
# ensembled by the actuation node, as Octo runs on the WidowX.
EXECUTION = {"openvla": "single_step", "rt2": "single_step", "octo": "temporal_ensembling"}
HORIZON = {"openvla": 1, "rt2": 1, "octo": 4}


@pytest.mark.parametrize("backend", sorted(CHECKPOINTS))
def test_backend_drives_the_sim_within_limits(tmp_path, backend):
    checkpoint = CHECKPOINTS[backend](tmp_path / "checkpoint")
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vla_stack.cli", "demo", "--policy", backend]
    cmd += ["--checkpoint", str(checkpoint), "--execution-mode", EXECUTION[backend]]
    cmd += [
        "--episodes",
        "1",
        "--max-steps",
        "20",
        "--no-video",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "r.json"),
    ]
    # Half real time: random-weight models on a loaded 2-core CI machine stay inside the actuation's
    # 0.4 s (sim time) freshness bound.
    cmd += ["--real-time-factor", "0.5"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert json.loads((tmp_path / "r.json").read_text())["episodes"][0]["steps"] > 0

    actions = [m for _, _, _, m in iter_messages(out / "bag", topics=["/vla/action"])]
    assert len(actions) >= 5, "the policy published too few actions"
    bodies = [json.loads(a.data) for a in actions]
    assert all(b["policy"] == backend for b in bodies)
    assert {len(b["values"] if b["kind"] == "continuous" else b["bins"]) for b in bodies} == {
        HORIZON[backend]
    }
    commands = [
        m for _, _, _, m in iter_messages(out / "bag", topics=["/wx250s/arm_controller/joint_trajectory"])
    ]
    assert len(commands) >= 10, "the arm was never commanded"
    joints = np.array([m.points[0].positions for m in commands])
    assert [list(m.joint_names) for m in commands[:1]] == [list(ARM_JOINT_NAMES)]
    assert np.all(joints >= JOINT_LOWER_RAD - 1e-9) and np.all(joints <= JOINT_UPPER_RAD + 1e-9)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in commands]
    assert_joint_speed_within(stamps, joints, JOINT_VELOCITY_LIMIT_RAD_S)
    assert np.ptp(joints, axis=0).max() > 0.005, "the arm did not move"
