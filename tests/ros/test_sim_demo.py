"""`vla-stack demo` end to end: the MuJoCo sim and the three nodes as processes over loopback DDS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import imageio
import pytest

from vla_bringup.ros_env import loopback_environment
from vla_data.bag_io import read_counts

pytestmark = pytest.mark.ros

STAGES = {
    "image_decode",
    "sync",
    "preprocess",
    "inference",
    "action_decode",
    "ik",
    "publish",
    "frame_to_action",
}


@pytest.mark.parametrize("action_kind", ["continuous", "discrete"])
def test_demo_succeeds_and_writes_results_video_and_bag(tmp_path, action_kind):
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    result_path = tmp_path / "demo.json"
    cmd = [
        sys.executable,
        "-m",
        "vla_stack.cli",
        "demo",
        "--policy",
        "scripted",
        "--episodes",
        "2",
        "--seed",
        "3",
        "--action-kind",
        action_kind,
        "--json",
        str(result_path),
        "--out",
        str(tmp_path / "out"),
    ]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(result_path.read_text())
    assert [e["seed"] for e in result["episodes"]] == [3, 4]
    assert all(e["success"] for e in result["episodes"]), result["episodes"]
    assert result["success_rate"] == 1.0
    assert all(isinstance(e["steps"], int) and 0 < e["steps"] <= 80 for e in result["episodes"])
    assert STAGES <= set(result["latency_ms"]), result["latency_ms"]
    assert all(v["p50"] <= v["p99"] for v in result["latency_ms"].values())
    # Sim time from the frame to its action: after the frame, within the observation age limit.
    assert 0 < result["latency_ms"]["frame_to_action"]["p50"] < 500, result["latency_ms"]
    assert "success: 2/2" in run.stdout

    frames = imageio.get_reader(tmp_path / "out" / "third_person.mp4").count_frames()
    assert frames > 20
    counts = read_counts(tmp_path / "out" / "bag")
    for topic in (
        "/camera/third_person/image_raw",
        "/vla/action",
        "/wx250s/joint_states",
        "/wx250s/arm_controller/joint_trajectory",
        "/vla/instruction",
        "/clock",
    ):
        assert counts.get(topic, 0) > 0, (topic, counts)
