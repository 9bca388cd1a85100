"""What the launcher starts runs on the loopback Fast DDS profile, and only binds loopback sockets."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from graph_helpers import start_graph, udp_bindings, wait_until

from vla_bringup.profiles import profile
from vla_bringup.ros_env import profile_path

pytestmark = pytest.mark.ros


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _loopback_or_multicast(ip: str) -> bool:
    if ip == "::1" or ip.startswith("127."):
        return True
    return ip[0].isdigit() and 224 <= int(ip.split(".")[0]) <= 239  # receiving a multicast group


def test_profile_file_is_loopback_only():
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(profile_path()).getroot()
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    assert participant.find(".//d:useBuiltinTransports", ns).text == "false"
    whitelists = [a.text for a in root.findall(".//d:interfaceWhiteList/d:address", ns)]
    assert whitelists == ["127.0.0.1"]
    peers = [a.text for a in root.findall(".//d:initialPeersList//d:address", ns)]
    assert peers == ["127.0.0.1"]


def test_launched_nodes_use_the_profile_and_bind_only_loopback(tmp_path):
    launcher = start_graph(list(profile("replay")), tmp_path)
    try:
        pids = [n.process.pid for n in launcher.running]
        # Each node has created its DDS participant once it holds UDP sockets.
        assert wait_until(lambda: all(len(udp_bindings(pid)) >= 3 for pid in pids) or launcher.poll(), 30.0)
        assert launcher.poll() is None, launcher.poll()
        for node in launcher.running:
            env = _environ(node.process.pid)
            assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile_path()), node.spec.name
            assert env["ROS_DOMAIN_ID"] == os.environ["ROS_DOMAIN_ID"]
            assert env["ROS_LOG_DIR"].startswith(str(tmp_path))
            bindings = udp_bindings(node.process.pid)
            offending = [(ip, port) for ip, port in bindings if not _loopback_or_multicast(ip)]
            assert not offending, f"{node.spec.name} bound non-loopback UDP sockets: {offending}"
    finally:
        codes = launcher.stop()
    assert all(code is not None for code in codes.values()), codes


def test_a_crashed_node_is_reported_with_its_log(tmp_path):
    launcher = start_graph(list(profile("replay")), tmp_path, {"policy": {"backend": "no_such_policy"}})
    try:
        assert wait_until(lambda: launcher.poll() is not None, 30.0)
        report = launcher.poll()
        assert "node 'policy' exited with code" in report
        assert "'no_such_policy' is unknown" in report  # the tail of its log says why
    finally:
        launcher.stop()


@pytest.mark.parametrize(
    ("signum", "argv", "nodes"),
    [
        ("SIGINT", ["launch", "replay"], 3),
        # As people type it: an integer for a double, a named policy as the policy's backend.
        (
            "SIGTERM",
            ["launch", "sim", "--set", "sim.real_time_factor=1", "--set", "policy.backend=octo-sim"],
            4,
        ),
    ],
)
def test_a_stop_signal_stops_every_node_of_vla_stack_launch(tmp_path, signum, argv, nodes):
    import signal
    import subprocess
    import sys
    import time

    from vla_bringup.ros_env import loopback_environment

    env = loopback_environment(log_dir=str(tmp_path / "ros"))
    cli = subprocess.Popen(
        [sys.executable, "-m", "vla_stack.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        children = lambda: [  # noqa: E731
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(cli.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert wait_until(lambda: len(children()) == nodes, 30.0), children()
        pids = children()
        assert wait_until(lambda: all(len(udp_bindings(pid)) >= 3 for pid in pids), 30.0)
        time.sleep(2.0)  # past parameter declaration: a refused parameter would have ended the graph
        assert cli.poll() is None, cli.communicate()[0].decode(errors="replace")[-3000:]
        if "policy.backend=octo-sim" in argv:
            policy = next(
                p for p in pids if "vla_policy.policy_node" in Path(f"/proc/{p}/cmdline").read_text()
            )
            command = Path(f"/proc/{policy}/cmdline").read_text()
            assert "backend:='octo'" in command and "models/octo-sim" in command, command
        cli.send_signal(getattr(signal, signum))
        assert cli.wait(timeout=30) == 0
        assert all(
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            for pid in pids
        )
    finally:
        if cli.poll() is None:
            cli.kill()


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_stops_vla_stack_demo_closes_its_bag_and_reports(tmp_path, signum):
    import json
    import signal
    import subprocess
    import sys
    import time

    from vla_bringup.ros_env import loopback_environment

    out, results = tmp_path / "run", tmp_path / "results.json"
    demo = subprocess.Popen(
        [sys.executable, "-m", "vla_stack.cli", "demo", "--policy", "scripted", "--episodes", "3"]
        + ["--max-steps", "40", "--no-video", "--out", str(out), "--json", str(results)],
        env=loopback_environment(log_dir=str(tmp_path / "ros")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The recorder's bag exists once the monitor runs; every node is started by then.
        assert wait_until(lambda: (out / "bag").exists() or demo.poll() is not None, 60.0)
        time.sleep(1.0)
        assert demo.poll() is None, demo.communicate()
        pids = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(demo.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(pids) == 4, pids  # sim, perception, policy, actuation
        demo.send_signal(getattr(signal, signum))
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 128 + getattr(signal, signum), stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert f"FAILED: interrupted by {signum}" in stderr
    assert (out / "bag" / "metadata.yaml").exists(), stdout + stderr[-3000:]
    assert "episodes" in json.loads(results.read_text())  # the result so far is written
    assert all(
        not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        for pid in pids
    )
