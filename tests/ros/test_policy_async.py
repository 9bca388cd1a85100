"""The policy node's asynchronous inference over DDS: newest observation, refill trigger, RTC prefix.

The policy node alone, with a counting backend (probe_backends: chunk k holds k mm in x) padded to
0.3 s per inference (``inject_latency_s``: 1.5 control periods) and 4-step chunks, a chunk's whole
length open loop (max_open_loop_s 0.8 s), and ``replan_steps`` high enough that only the refill
trigger can start an inference after the first. The test publishes an observation set every 0.1 s
and reads /vla/action and /diagnostics:

- newest observation: observations arriving while the model runs are replaced, never queued
  (``observations_replaced`` counts them) and each chunk carries a newer stamp than the last;
- refill: after the first chunk, inferences start only by the refill trigger, early enough that
  each chunk arrives while the previous one still has steps (its stamp is less than the previous
  chunk's length later);
- real-time chunking's prefix constraint: the rows of a chunk that the arm runs from the committed
  chunk while it is computed (at least the first: it arrives 1.5 periods after its frame) equal the
  committed chunk's rows for the same control steps; its last row is the backend's own.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import spinning, wait_until
from probe_backends import COUNT_STEP_M
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_bringup.launcher import GraphLauncher
from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment
from vla_common.action_message import decode_action_chunk
from vla_common.ros.qos import LATCHED_QOS, RELIABLE_QOS

pytestmark = pytest.mark.ros

STEP_S = 0.2  # control.yaml's control period
HORIZON = 4
LATENCY_S = 0.3  # 1.5 control periods
OBSERVATION_PERIOD_S = 0.1  # the sim's camera rate
OVERRIDES = {
    "policy": {
        "backend": "probe_backends:make_counting_backend",
        "cameras": ["primary"],
        "use_privileged_state": False,
        "chunk_horizon": HORIZON,
        "inject_latency_s": LATENCY_S,
        "max_open_loop_s": HORIZON * STEP_S,
        "replan_steps": 100,
        "realtime_chunking": True,
    }
}


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("policy_async_probe")
        self.lock = threading.Lock()
        self.chunks: list[tuple[int, np.ndarray]] = []  # (stamp ns, rows) in arrival order
        self.values: dict[str, str] = {}
        self.camera = self.create_publisher(Image, "/vla/observation/primary", RELIABLE_QOS)
        self.instruction = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_action(self, msg: String) -> None:
        chunk = decode_action_chunk(msg.data)
        with self.lock:
            self.chunks.append((chunk.stamp_ns, chunk.values.copy()))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "vla_stack/policy":
                with self.lock:
                    self.values = {kv.key: kv.value for kv in status.values}

    def publish_observation(self) -> None:
        msg = Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(8 * 8 * 3))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.camera.publish(msg)

    def counter(self, key: str) -> int:
        with self.lock:
            return int(self.values.get(f"count.{key}", 0))


@pytest.fixture()
def policy(tmp_path: Path):
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros_logs"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    spec = NodeSpec("policy", "vla_policy.policy_node", ("policy",))
    launcher = GraphLauncher([spec], env, overrides=OVERRIDES, log_dir=tmp_path / "logs")
    launcher.start()
    try:
        with spinning(Probe) as probe:
            probe.instruction.publish(String(data="pick up the cube"))
            stop = threading.Event()

            def camera() -> None:
                while not stop.wait(OBSERVATION_PERIOD_S):
                    probe.publish_observation()

            feeder = threading.Thread(target=camera)
            feeder.start()
            try:
                yield probe, launcher
            finally:
                stop.set()
                feeder.join()
    finally:
        launcher.stop()


def test_newest_observation_refill_and_realtime_prefix(policy):
    probe, launcher = policy
    assert wait_until(lambda: len(probe.chunks) >= 7 or launcher.poll() is not None, 60.0), "no actions"
    assert launcher.poll() is None, launcher.poll()
    with probe.lock:
        chunks = list(probe.chunks)
    stamps = [stamp for stamp, _ in chunks]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), stamps
    # Refill: each chunk's frame comes before the previous chunk's steps run out (4 x 0.2 s).
    gaps_s = np.diff(stamps) * 1e-9
    assert np.all(gaps_s < HORIZON * STEP_S), gaps_s
    assert np.all(gaps_s > LATENCY_S - OBSERVATION_PERIOD_S), gaps_s  # one inference at a time
    # Real-time chunking: the new chunk's first row is the committed chunk's row for that step;
    # its last row is the backend's own (counts grow by one per inference).
    for (stamp0, rows0), (stamp1, rows1) in zip(chunks[1:], chunks[2:], strict=False):
        offset = int(np.floor((stamp1 - stamp0) * 1e-9 / STEP_S + 0.5))
        assert 0 <= offset < HORIZON, offset
        np.testing.assert_allclose(rows1[0], rows0[offset], atol=1e-9)
        assert rows1[-1, 0] == pytest.approx(rows0[-1, 0] + COUNT_STEP_M, abs=1e-9)
    # Diagnostics: observations replaced while the model ran; inferences started by the refill.
    assert wait_until(lambda: probe.counter("inference_trigger.refill") >= 3, 10.0), probe.values
    assert probe.counter("observations_replaced") >= 3, probe.values
    assert probe.counter("inference_trigger.replan") == 0, probe.values
