"""An official-layout Octo release end to end: `vla-stack convert octo` -> `vla-stack inspect` ->
`vla-stack demo --policy octo --checkpoint OUT`, each as the user runs it (issue 23's acceptance).

The release is the synthetic one (vla_policy.backends.octo.synthetic_release: the official files,
orbax checkpoint included, of a tiny random Octo 1.5; crosscheck/octo_release checks its layout
against upstream) with a locally built T5 tokenizer standing in for the hub's "t5-base".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vla_bringup.ros_env import loopback_environment
from vla_data.bag_io import iter_messages
from vla_policy.backends.octo.synthetic_release import write_synthetic_release, write_t5_tokenizer
from vla_stack.cli import main

pytestmark = pytest.mark.ros


def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_stack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_convert_inspect_and_demo_an_official_layout_release(tmp_path, capsys):
    release, _ = write_synthetic_release(tmp_path / "octo-synthetic-1.5", seed=0)
    tokenizer = write_t5_tokenizer(tmp_path / "t5-base")
    out = tmp_path / "octo-converted"

    # convert and inspect through the command's entry point in this process (the console script calls
    # main); the demo as its own process, since it starts the node graph
    argv = [
        "convert",
        "octo",
        str(release),
        str(out),
        "--tokenizer",
        str(tokenizer),
        "--dataset",
        "bridge_dataset",
    ]
    assert main(argv) == 0
    converted = capsys.readouterr().out
    assert "repeated task tokens True, statistics 'bridge_dataset'" in converted

    assert main(["inspect", str(out)]) == 0
    inspected = capsys.readouterr().out
    assert "repeated task tokens: yes" in inspected
    assert "primary: model 64x64 <- /camera/third_person/image_raw" in inspected
    assert "perception 256x256 (resize, antialias), resized by the backend" in inspected
    assert inspected.rstrip().endswith("inspect: no mismatch")

    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros"))
    cmd = ["demo", "--policy", "octo", "--checkpoint", str(out), "--episodes", "1", "--max-steps", "12"]
    cmd += ["--execution-mode", "temporal_ensembling", "--no-video", "--out", str(tmp_path / "demo")]
    cmd += ["--json", str(tmp_path / "demo.json"), "--real-time-factor", "0.5"]
    demo = _cli(*cmd, env=env, timeout=300)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert json.loads((tmp_path / "demo.json").read_text())["episodes"][0]["steps"] > 0
    actions = [
        json.loads(m.data) for _, _, _, m in iter_messages(tmp_path / "demo" / "bag", topics=["/vla/action"])
    ]
    assert len(actions) >= 3 and {a["policy"] for a in actions} == {"octo"}
    assert {len(a["values"]) for a in actions} == {4}
