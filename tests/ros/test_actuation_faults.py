"""The actuation node over DDS under bad input: it rejects, holds, reports, and never crashes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import start_graph, wait_until
from parameter_client import ParameterClient
from rclpy.node import Node
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_actuation.kinematics import JOINT_VELOCITY_LIMIT_RAD_S, forward_kinematics
from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment
from vla_common.action_message import encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_common.ros.qos import RELIABLE_QOS

pytestmark = pytest.mark.ros


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("fault_probe")
        self.arm: list[np.ndarray] = []
        self.counters: dict[str, int] = {}
        self.message = ""  # the last problem actuation reported on /diagnostics
        self.lock = threading.Lock()
        self.actions = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self.create_subscription(
            JointTrajectory, "/wx250s/arm_controller/joint_trajectory", self._on_arm, 100
        )
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_arm(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.arm.append(np.array(msg.points[0].positions))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "vla_stack/actuation":
                with self.lock:
                    self.message = status.message
                    self.counters = {
                        kv.key[6:]: int(kv.value) for kv in status.values if kv.key.startswith("count.")
                    }

    def send(self, values, age_s: float = 0.0, space: ActionSpace | None = None) -> None:
        stamp = self.get_clock().now().nanoseconds - int(age_s * 1e9)
        chunk = encode_action_chunk(stamp, space or ActionSpace(), np.atleast_2d(values))
        self.actions.publish(String(data=chunk))

    def diagnostics(self) -> tuple[dict[str, int], str]:
        with self.lock:
            return dict(self.counters), self.message

    def commands(self) -> int:
        with self.lock:
            return len(self.arm)


@pytest.fixture()
def probe(tmp_path: Path):
    env = loopback_environment(log_dir=str(tmp_path / "fake"))
    fake = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fake_robot_process.py"))], env=env)
    launcher = start_graph(
        [NodeSpec("actuation", "vla_actuation.actuation_node", ("actuation",))],
        tmp_path,
        {"actuation": {"execution_mode": "single_step"}},
    )
    rclpy.init()
    node = Probe()
    stop = threading.Event()
    spinner = threading.Thread(
        target=lambda: [rclpy.spin_once(node, timeout_sec=0.05) for _ in iter(stop.is_set, True)]
    )
    spinner.start()
    deadline = time.monotonic() + 30
    while node.count_subscribers("/vla/action") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # joint states reach the node
    try:
        yield node, launcher
    finally:
        stop.set()
        spinner.join()
        node.destroy_node()
        rclpy.try_shutdown()
        launcher.stop()
        fake.terminate()
        fake.wait(10)


def _quiet_after(node: Probe, send, wait_s: float = 0.6) -> bool:
    before = node.commands()
    send()
    time.sleep(wait_s)
    return node.commands() == before


def test_bad_actions_are_rejected_and_the_arm_holds(probe):
    node, launcher = probe
    assert _quiet_after(node, lambda: node.actions.publish(String(data="{not json")))
    assert _quiet_after(node, lambda: node.send([np.nan, 0, 0, 0, 0, 0, 1]))
    assert _quiet_after(node, lambda: node.send([np.inf, 0, 0, 0, 0, 0, 1]))
    assert _quiet_after(node, lambda: node.send([0.01, 0, 0, 0, 0, 0, 1], age_s=2.0))  # stale
    wrong = json.loads(encode_action_chunk(1, ActionSpace(), np.zeros((1, 7))))
    wrong["dims"] = wrong["dims"][:6]
    assert _quiet_after(node, lambda: node.actions.publish(String(data=json.dumps(wrong))))
    assert launcher.poll() is None, launcher.poll()
    time.sleep(1.2)  # one diagnostics period
    with node.lock:
        counters = dict(node.counters)
    assert counters.get("rejected_actions", 0) >= 2 and counters.get("stale_actions", 0) >= 1, counters
    assert counters.get("violation.nan", 0) + counters.get("violation.inf", 0) >= 2, counters
    # A good action still moves the arm afterwards.
    assert not _quiet_after(node, lambda: node.send([0.02, 0, 0, 0, 0, 0, 1]))


def test_huge_delta_is_clipped_per_step(probe):
    node, _ = probe
    start_count = node.commands()
    node.send([0.5, 0.0, 0.0, 0, 0, 0, 1])  # 10x the 0.05 m bound
    time.sleep(0.8)
    with node.lock:
        streamed = node.arm[max(0, start_count - 1) :]
    assert len(streamed) >= 5
    first, last = forward_kinematics(streamed[0])[:3, 3], forward_kinematics(streamed[-1])[:3, 3]
    assert np.linalg.norm(last - first) <= 0.05 + 0.005  # one clipped step
    # One 0.2 s step, spread over the servo stream: never more than the speed limit allows.
    assert np.abs(streamed[-1] - streamed[0]).max() <= JOINT_VELOCITY_LIMIT_RAD_S.max() * (0.2 + 0.04)


def _tool_travel_m(node: Probe, send) -> float:
    """How far the tool moves (streamed targets, by FK) after ``send``."""
    start_count = node.commands()
    send()
    time.sleep(0.8)
    with node.lock:
        streamed = node.arm[max(0, start_count - 1) :]
    assert len(streamed) >= 5
    return float(
        np.linalg.norm(forward_kinematics(streamed[-1])[:3, 3] - forward_kinematics(streamed[0])[:3, 3])
    )


def test_chunk_timed_for_another_rate_is_refused(probe):
    node, launcher = probe
    fast = ActionSpace(step_dt_s=0.1)  # a 10 Hz policy talking to a 5 Hz actuation
    assert _quiet_after(node, lambda: node.send([0.02, 0, 0, 0, 0, 0, 1], space=fast))
    assert _quiet_after(node, lambda: node.send(np.full((4, 7), 0.01), space=fast))
    assert wait_until(lambda: node.diagnostics()[0].get("step_dt_mismatch", 0) >= 2, 5.0), node.diagnostics()
    _, message = node.diagnostics()
    assert "step_dt_s 0.1 s differs from this node's control period 0.2 s (control_hz 5)" in message, message
    assert launcher.poll() is None, launcher.poll()
    assert not _quiet_after(node, lambda: node.send([0.02, 0, 0, 0, 0, 0, 1]))  # 5 Hz chunks still run


def test_parameters_at_run_time(probe):
    node, launcher = probe
    params = ParameterClient(node, "actuation")
    refused = params.set("control_hz", 10.0)
    assert not refused.successful and "read-only" in refused.reason and "control_hz" in refused.reason
    assert params.get("control_hz") == 5.0

    assert params.set("max_translation_step_m", 0.02).successful
    huge = lambda: node.send([0.5, 0.0, 0.0, 0, 0, 0, 1])  # noqa: E731 - 25x the new bound
    assert 0.01 < _tool_travel_m(node, huge) <= 0.02 + 0.003  # the next chunk obeys the new clip

    # A box whose low x lies above its high x: the whole set is refused, naming it.
    bad = params.set_atomically(max_translation_step_m=0.04, workspace_low_m=[0.5, -0.2, -0.01])
    assert not bad.successful and "workspace_low_m" in bad.reason and "0.5" in bad.reason, bad.reason
    assert params.get("max_translation_step_m") == 0.02
    assert params.get("workspace_low_m") == [0.10, -0.20, -0.01]
    assert _tool_travel_m(node, huge) <= 0.02 + 0.003  # the old clip is still in force
    assert launcher.poll() is None, launcher.poll()
