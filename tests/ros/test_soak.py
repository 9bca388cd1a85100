"""`vla-stack soak` end to end, briefly: the sim graph runs, every topic is fuzzed, the report is whole.

A few seconds of soak prove the plumbing (graph, fuzzer, monitor, memory, diagnostics, report), not
the acceptance bounds: those need the 30-minute benchmark of docs/reliability.md. So the exit
status is only checked against the report's own verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vla_bringup.ros_env import loopback_environment
from vla_eval.soak import FUZZ_TOPICS

pytestmark = pytest.mark.ros

NODES = {"sim", "perception", "policy", "actuation", "perception_jpeg"}
FIGURES = {
    "crashes",
    "position_or_speed_limit",
    "tool_step_beyond_bound",
    "previous_episode_commands",
    "max_rss_growth_pct",
    "unexpected_errors",
    "arm_commands_judged",
    "foreign_nodes_on_domain",
    "soak_minutes_completed",
}


def test_a_short_soak_runs_the_graph_fuzzes_every_kind_and_reports_every_figure(tmp_path):
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    report_path = tmp_path / "soak.json"
    cmd = [sys.executable, "-m", "vla_stack.cli", "soak", "--minutes", "0.1", "--warmup-s", "3"]
    cmd += ["--policy", "scripted", "--seed", "2", "--json", str(report_path), "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    output = run.stdout[-3000:] + run.stderr[-3000:]
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    assert (run.returncode == 0) == report["passed"], output
    assert "| crashes | 0 | 0 | yes |" in run.stdout, output

    assert report["crashes"] == [], report["crashes"]
    assert report["foreign_nodes"] == {}, report["foreign_nodes"]  # this worker's domain is its own
    assert set(report["acceptance"]) == FIGURES
    assert set(report["rss"]) == NODES
    assert all(r["after_warmup_mb"] > 20 and r["end_mb"] > 20 for r in report["rss"].values()), report["rss"]
    assert report["arm"]["commands"] > 10 and report["arm"]["commands_by_publisher"]["actuation"] > 10
    assert report["episodes"]["started"] >= 1
    assert set(report["unexpected_errors"]) >= {"perception", "policy", "actuation"}
    assert set(report["fuzz"]["published"]) == {kind for _, kind, _ in FUZZ_TOPICS}, report["fuzz"]
    # the fuzz reached the nodes: each rejects some of it, per kind
    rejected = {node: sum(counts.values()) for node, counts in report["rejections"].items()}
    assert all(rejected.get(node, 0) > 0 for node in ("perception", "policy", "actuation")), rejected
    jpeg = report["counters"]["perception_jpeg"]
    assert jpeg.get("frames.jpeg", 0) > 0, jpeg  # the compressed camera's node got the fuzzed JPEGs
    assert report["load"]["sim_time_per_wall_s"] > 0
    assert report["command"].startswith("vla-stack soak --minutes 0.1 --warmup-s 3 --policy scripted")
