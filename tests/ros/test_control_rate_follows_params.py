"""The graph replica and the node graph agree on timing because they read the same params files.

A copy of config/ with control.yaml's control_hz at 10 (VLA_STACK_CONFIG_DIR points at it):
(a) the deployment and the replica's Timing read a 0.1 s control step;
(b) the real graph (the pip launcher's sim profile, scripted policy, one short episode) publishes
    an observation every 0.1 s of sim time, actions stepped at 0.1 s, and the actuation executes
    them (the arm moves; no chunk refused for its step_dt_s); the sim counts its steps at 10 Hz.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from graph_helpers import spinning, start_graph
from params_copy import set_control_hz
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_bringup.deployment import load_deployment
from vla_bringup.paths import config_dir
from vla_bringup.profiles import profile
from vla_common.action_message import decode_action_chunk
from vla_common.ros.qos import EVENTS_QOS, RELIABLE_QOS
from vla_eval.graph_replica import Timing

pytestmark = pytest.mark.ros

CONTROL_HZ = 10.0
STEP_S = 1.0 / CONTROL_HZ
MAX_STEPS = 25  # 2.5 s of sim time at 10 Hz: enough for the arm to move, short for the test


def _config_at_10_hz(directory: Path) -> Path:
    copy = directory / "config"
    shutil.copytree(config_dir(), copy)
    set_control_hz(copy, CONTROL_HZ)
    return copy


@pytest.fixture
def config_at_10_hz(config_copy) -> Path:
    set_control_hz(config_copy, CONTROL_HZ)
    return config_copy


def test_the_replica_reads_the_changed_period(config_at_10_hz):
    assert load_deployment().step_dt_s == pytest.approx(STEP_S)
    timing = Timing()
    assert timing.step_dt_s == pytest.approx(STEP_S) and timing.policy_period_s == pytest.approx(STEP_S)


class Listener(Node):
    """Records observation stamps, action messages, arm commands and episode events."""

    def __init__(self) -> None:
        super().__init__("control_rate_listener")
        self.lock = threading.Lock()
        self.observation_stamps_s: list[float] = []
        self.actions: list[str] = []
        self.arm: list[np.ndarray] = []
        self.events: list[dict] = []
        self.create_subscription(Image, "/vla/observation/primary", self._on_observation, RELIABLE_QOS)
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS)
        self.create_subscription(
            JointTrajectory, "/wx250s/arm_controller/joint_trajectory", self._on_arm, 100
        )
        self.create_subscription(String, "/vla/episode", self._on_event, EVENTS_QOS)

    def _on_observation(self, msg: Image) -> None:
        with self.lock:
            self.observation_stamps_s.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def _on_action(self, msg: String) -> None:
        with self.lock:
            self.actions.append(msg.data)

    def _on_arm(self, msg: JointTrajectory) -> None:
        with self.lock:
            self.arm.append(np.array(msg.points[0].positions))

    def _on_event(self, msg: String) -> None:
        with self.lock:
            self.events.append(json.loads(msg.data))

    def episode_end(self) -> dict | None:
        with self.lock:
            return next((e for e in self.events if e.get("event") == "end"), None)


@dataclass
class GraphRun:
    """What one short episode of the graph at 10 Hz published."""

    observation_stamps_s: list[float]
    actions: list
    arm: np.ndarray
    end: dict
    actuation_log: str


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory) -> GraphRun:
    """The sim profile through the pip launcher, on a config copy at 10 Hz, for one short episode."""
    tmp_path = tmp_path_factory.mktemp("graph_at_10_hz")
    overrides = {
        "sim": {"episodes": 1, "seed": 0, "max_steps": MAX_STEPS},
        "policy": {"backend": "scripted", "use_privileged_state": True},
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("VLA_STACK_CONFIG_DIR", str(_config_at_10_hz(tmp_path)))
        launcher = start_graph(list(profile("sim")), tmp_path, overrides)
    try:
        with spinning(Listener) as listener:
            end = _wait_for_episode_end(listener, launcher)
    finally:
        launcher.stop()
    return GraphRun(
        sorted(set(listener.observation_stamps_s)),
        [decode_action_chunk(text) for text in listener.actions],
        np.array(listener.arm),
        end,
        (tmp_path / "logs" / "actuation.log").read_text(errors="replace"),
    )


def _wait_for_episode_end(listener: Listener, launcher, timeout_s: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.poll()
        end = listener.episode_end()
        if end is not None:
            return end
        time.sleep(0.1)
    raise AssertionError(f"no episode end within {timeout_s} s; events {listener.events}")


def test_observations_and_episode_steps_follow_the_changed_rate(graph_run):
    # Perception: one observation per 0.1 s control tick of sim time (0.2 s at the shipped 5 Hz).
    stamps = graph_run.observation_stamps_s
    assert len(stamps) >= 10, stamps
    assert np.median(np.diff(stamps)) == pytest.approx(STEP_S, abs=0.02), np.diff(stamps)
    # Sim: its steps are 0.1 s control ticks, and the -p max_steps override holds.
    end = graph_run.end
    if not end["success"]:
        assert end["steps"] == MAX_STEPS and end["duration_s"] == pytest.approx(MAX_STEPS * STEP_S, abs=0.15)
    else:
        assert end["steps"] * STEP_S <= end["duration_s"] + STEP_S, end


def test_actions_step_at_the_changed_rate_and_actuation_runs_them(graph_run):
    assert graph_run.actions, "no action on /vla/action"
    steps = [a.space.step_dt_s for a in graph_run.actions]
    assert {round(s, 6) for s in steps} == {STEP_S}, steps
    # Actuation: none refused, and the arm was driven (not just held).
    log = graph_run.actuation_log
    assert "differs from this node's control period" not in log, log[-2000:]
    assert len(graph_run.arm) > 10 and np.ptp(graph_run.arm, axis=0).max() > 0.02, len(graph_run.arm)
