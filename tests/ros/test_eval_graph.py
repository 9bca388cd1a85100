"""`vla-stack eval` through the node graph: the plan reaches the sim, results per family come back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vla_bringup.ros_env import loopback_environment
from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_data.bag_io import iter_messages
from vla_policy.backends.octo.backend import build_random_octo
from vla_policy.backends.octo.checkpoint import save_octo_checkpoint
from vla_sim import tasks

pytestmark = pytest.mark.ros


def _run(tmp_path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    cmd = [sys.executable, "-m", "vla_stack.cli", *args]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_eval_runs_the_heldout_plan_with_paraphrases_and_reports_per_family(tmp_path):
    result = tmp_path / "eval.json"
    run = _run(
        tmp_path,
        "eval",
        "--policy",
        "scripted",
        "--episodes",
        "4",
        "--instructions",
        "config/eval/paraphrases.yaml",
        "--json",
        str(result),
        "--out",
        str(tmp_path / "out"),
    )
    summary = json.loads(result.read_text())
    assert list(summary["per_family"]) == list(tasks.FAMILY_ORDER)
    held_out = tasks.heldout_episodes(4)
    assert [(e["seed"], e["family"]) for e in summary["episodes"]] == held_out
    # the sim announced the paraphrase, not the template, and still ran the seed's task
    assert summary["episodes"][0]["instruction"].startswith("grab the ")
    assert all(
        e["instruction"] != tasks.sample_episode(s, f).instruction
        for (s, f), e in zip(held_out, summary["episodes"], strict=True)
    )
    assert summary["overall"]["success"] >= 3, summary["episodes"]  # the expert, on every family
    failures = [e for e in summary["episodes"] if not e["success"]]
    assert len(summary["failure_videos"]) == len(failures)
    assert "overall" in run.stdout


def test_an_octo_model_with_proprio_and_minilm_drives_the_graph(tmp_path):
    # The octo-sim architecture at test size: MiniLM language, per-camera patches and a proprio
    # token that the policy node fills from /wx250s/joint_states.
    backend = build_random_octo(
        "tiny", seed=0, text_encoder="minilm", proprio_dim=7, window=1, max_horizon=1, patch_sizes=(32, 16)
    )
    checkpoint = save_octo_checkpoint(backend.model, backend.config, BRIDGE_ORIG_STATS, tmp_path / "ckpt")
    out = tmp_path / "out"
    _run(
        tmp_path,
        "demo",
        "--policy",
        "octo",
        "--checkpoint",
        str(checkpoint),
        "--episodes",
        "1",
        "--max-steps",
        "12",
        "--no-video",
        "--out",
        str(out),
        "--real-time-factor",
        "0.5",
    )
    bodies = [json.loads(m.data) for _, _, _, m in iter_messages(out / "bag", topics=["/vla/action"])]
    assert len(bodies) >= 5
    assert {b["policy"] for b in bodies} == {"octo"}
    assert {len(b["values"]) for b in bodies} == {4}  # 4-step chunks
    log = (out / "logs" / "policy.log").read_text()
    assert f"checkpoint {checkpoint}; privileged sim state not read" in log, log[-2000:]
    assert "observation.proprio" not in log  # every inference had the joint positions
