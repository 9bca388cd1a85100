import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vla_bringup.launcher import GraphLauncher, format_param, node_command
from vla_bringup.profiles import PROFILES, profile
from vla_bringup.ros_env import loopback_environment, profile_path
from vla_eval.bench_report import write_section
from vla_stack.cli import _parse_set


def test_format_param_matches_ros_yaml_parsing():
    assert format_param(True) == "true"
    assert format_param(3) == "3" and format_param(0.5) == "0.5"
    assert format_param("it's") == "'it''s'"
    assert format_param([0.1, -0.2]) == "[0.1,-0.2]"


def test_node_command_uses_params_files_and_overrides():
    spec = profile("sim")[0]
    cmd = node_command(spec, {"seed": 7})
    assert cmd[:3] == [sys.executable, "-m", "vla_sim.sim_node"]
    files = [Path(cmd[i + 1]).name for i, a in enumerate(cmd) if a == "--params-file"]
    # control.yaml ('/**') after the node's own file, so that the -p overrides (which rcl also files
    # under '/**') are applied after the node's section: see profiles.CONTROL_PARAMS
    assert files == ["sim.yaml", "control.yaml"]
    # the sim node is the clock (it steps on wall time and publishes /clock): wall time itself
    assert "seed:=7" in cmd and "use_sim_time:=false" in cmd and "__node:=sim" in cmd


def test_every_profile_names_existing_modules_and_params():
    for name, nodes in PROFILES.items():
        for spec in nodes:
            assert importlib.util.find_spec(spec.module) is not None, (name, spec.module)
            node_command(spec)  # raises if a params file is missing
            assert spec.params[-1] == "control", (name, spec.name, spec.params)


def test_unknown_profile_and_override_are_errors():
    with pytest.raises(ValueError, match="'moon'.*available"):
        profile("moon")
    with pytest.raises(ValueError, match="unknown node"):
        GraphLauncher(profile("sim"), {}, overrides={"planner": {"x": 1}})


def test_loopback_environment():
    env = loopback_environment({}, domain_id=12, log_dir="/tmp/x")
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile_path())
    assert env["ROS_DOMAIN_ID"] == "12" and env["ROS_LOG_DIR"] == "/tmp/x"
    with pytest.raises(ValueError, match="ROS_DOMAIN_ID"):
        loopback_environment({}, domain_id=300)


def test_parse_set():
    assert _parse_set(["policy.backend=scripted", "sim.seed=3"]) == {
        "policy": {"backend": "scripted"},
        "sim": {"seed": 3},
    }
    with pytest.raises(SystemExit, match="NODE.PARAM=VALUE"):
        _parse_set(["seed=3"])


def test_write_section_replaces_in_place(tmp_path):
    path = tmp_path / "b.md"
    write_section("x", "one", path)
    write_section("y", "two", path)
    write_section("x", "three", path)
    text = path.read_text()
    assert "three" in text and "one" not in text and text.index("three") < text.index("two")


def test_nodes_stop_when_the_launcher_is_killed(tmp_path):
    """A launcher killed without stop() (SIGKILL, a test timeout) leaves no node running."""
    package = tmp_path / "fake_nodes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sleeper.py").write_text("import time\nwhile True:\n    time.sleep(0.1)\n")
    script = (
        "import sys\n"
        "from vla_bringup.launcher import GraphLauncher\n"
        "from vla_bringup.profiles import NodeSpec\n"
        f"env = {{'PYTHONPATH': {str(tmp_path)!r}}}\n"
        "specs = [NodeSpec(n, 'fake_nodes.sleeper', ()) for n in ('a', 'b')]\n"
        "launcher = GraphLauncher(specs, env)\n"
        "launcher.start()\n"
        "print(' '.join(str(n.process.pid) for n in launcher.running), flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    node_pids: list[int] = []
    try:
        node_pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(node_pids) == 2 and all(_alive(pid) for pid in node_pids)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(_alive(pid) for pid in node_pids):
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in node_pids), "nodes outlived their launcher"
    finally:
        parent.kill()
        for pid in node_pids:  # leave nothing behind when the assertion fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for its (dead) parent's reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
