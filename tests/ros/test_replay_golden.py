"""Regression: the committed sim bag replayed through the graph gives the golden actions.

tests/data/sim_episode_bag is a 12-step episode recorded from the sim (`vla-stack demo --episodes 1
--max-steps 12 --seed 0 --set sim.camera_width=128 --set sim.camera_height=96`, filtered to the
input topics and the recorded actions). Refresh the golden file after an intended change with
`pytest tests/ros/test_replay_golden.py --update-golden`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_bringup.ros_env import loopback_environment
from vla_data.bag_io import iter_messages

pytestmark = pytest.mark.ros

DATA = Path(__file__).resolve().parents[1] / "data"
BAG = DATA / "sim_episode_bag"
GOLDEN = DATA / "sim_episode_golden.json"
TOLERANCE = 1e-6


def _replayed_actions(tmp_path: Path) -> list[dict]:
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "vla_stack.cli",
        "replay",
        str(BAG),
        "--fast",
        "--seed",
        "0",
        "-o",
        str(out),
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    bodies = [json.loads(m.data) for _, _, _, m in iter_messages(out / "bag", topics=["/vla/action"])]
    return [
        {"stamp_ns": b["stamp_ns"], "values": b["values"]}
        for b in sorted(bodies, key=lambda b: b["stamp_ns"])
    ]


def test_committed_bag_replays_to_the_golden_actions(tmp_path, request):
    actions = _replayed_actions(tmp_path)
    assert len(actions) >= 6, f"only {len(actions)} actions from the replay"
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(json.dumps({"bag": BAG.name, "policy": "scripted", "actions": actions}, indent=1))
        pytest.skip(f"golden outputs rewritten: {GOLDEN}")
    golden = json.loads(GOLDEN.read_text())["actions"]
    assert [a["stamp_ns"] for a in actions] == [g["stamp_ns"] for g in golden]
    for got, want in zip(actions, golden, strict=True):
        np.testing.assert_allclose(
            got["values"], want["values"], atol=TOLERANCE, err_msg=str(got["stamp_ns"])
        )
