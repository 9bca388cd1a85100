"""`ros2 param set` on the running nodes over DDS: read-only refused, run-time ones take effect.

Perception and the policy run beside the fake camera/driver process; the sim runs alone. (The
actuation's parameters are in test_actuation_faults.py, beside its other faults.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import spinning, start_graph, wait_until
from parameter_client import ParameterClient
from rclpy.node import Node

from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment

pytestmark = pytest.mark.ros

CAMERAS = {
    "primary.topic": "/test/cam_a/image_raw",
    "wrist.topic": "/test/cam_b/image_raw/compressed",
    "wrist.transport": "compressed",
}


class Watcher(Node):
    """Keeps each node's latest diagnostics counters."""

    def __init__(self) -> None:
        super().__init__("parameter_watcher")
        self.counters: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            counts = {kv.key[6:]: int(kv.value) for kv in status.values if kv.key.startswith("count.")}
            with self.lock:
                self.counters[status.name.rsplit("/", 1)[-1]] = counts

    def count(self, node: str, prefix: str) -> int:
        with self.lock:
            return sum(v for k, v in self.counters.get(node, {}).items() if k.startswith(prefix))


@pytest.fixture()
def watcher():
    with spinning(Watcher) as node:
        yield node


@pytest.fixture()
def perception_and_policy(tmp_path: Path, watcher):
    env = loopback_environment(log_dir=str(tmp_path / "fake"))
    fake = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_robot_process.py"))], env=env)
    launcher = start_graph(
        [
            NodeSpec("perception", "vla_perception.perception_node", ("perception",)),
            NodeSpec("policy", "vla_policy.policy_node", ("policy",)),
        ],
        tmp_path,
        {"perception": CAMERAS, "policy": {"backend": "scripted"}},
    )
    try:
        yield watcher, launcher
    finally:
        launcher.stop()
        fake.terminate()
        fake.wait(10)


def test_perception_and_policy_parameters(perception_and_policy):
    watcher, launcher = perception_and_policy
    perception = ParameterClient(watcher, "perception")
    policy = ParameterClient(watcher, "policy")
    for client, name, value in ((perception, "cameras", ["primary"]), (policy, "backend", "octo")):
        refused = client.set(name, value)
        assert not refused.successful and "read-only" in refused.reason and name in refused.reason
    assert policy.get("backend") == "scripted"
    # Healthy first: observations flow, and the policy infers on them.
    assert wait_until(lambda: watcher.count("policy", "actions") >= 3, 60.0), watcher.counters

    # 10 ms: about every frame of a 10 Hz camera is older than that at a 5 Hz tick.
    refused = watcher.count("perception", "refused.")
    assert perception.set("max_image_age_s", 0.01).successful
    assert perception.get("max_image_age_s") == 0.01
    assert wait_until(lambda: watcher.count("perception", "refused.") >= refused + 2, 10.0), watcher.counters
    assert perception.set("max_image_age_s", 0.5).successful

    out_of_range = policy.set("max_observation_age_s", 20.0)
    assert not out_of_range.successful and "max_observation_age_s" in out_of_range.reason
    assert policy.get("max_observation_age_s") == 0.5
    stale = watcher.count("policy", "stale_observation")
    assert policy.set("max_observation_age_s", 0.01).successful
    assert wait_until(lambda: watcher.count("policy", "stale_observation") >= stale + 2, 10.0), (
        watcher.counters
    )
    assert launcher.poll() is None, launcher.poll()


def test_sim_parameters(tmp_path: Path, watcher):
    launcher = start_graph(
        [NodeSpec("sim", "vla_sim.sim_node", ("sim",), {"use_sim_time": True})],
        tmp_path,
        # An integer where a double is declared, as `--set sim.real_time_factor=1` writes it.
        {"sim": {"episodes": 1, "wait_for_graph_s": 0.0, "settle_wall_s": 0.0, "real_time_factor": 1}},
    )
    try:
        sim = ParameterClient(watcher, "sim")
        started = sim.get("real_time_factor")
        assert started == 1.0 and isinstance(started, float), started
        assert sim.set("real_time_factor", 2).successful  # `ros2 param set /sim real_time_factor 2`
        assert (value := sim.get("real_time_factor")) == 2.0 and isinstance(value, float), value
        out_of_range = sim.set("real_time_factor", 101)
        assert not out_of_range.successful
        assert "real_time_factor" in out_of_range.reason and "100" in out_of_range.reason, out_of_range
        refused = sim.set("control_hz", 10.0)
        assert not refused.successful and "read-only" in refused.reason
        assert sim.set("real_time_factor", 0.0).successful  # as fast as possible from the next tick
        assert sim.get("real_time_factor") == 0.0
        assert not sim.set("camera_noise_sigma", -1.0).successful
        assert sim.get("camera_noise_sigma") == 2.0
        assert launcher.poll() is None, launcher.poll()
    finally:
        launcher.stop()
