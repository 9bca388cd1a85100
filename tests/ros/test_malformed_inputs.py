"""Malformed messages on the sim graph's topics: perception and policy drop them, say why, go on.

The real sim, perception and policy run as processes over loopback DDS (no actuation: the policy's
actions are the proof of life). This test process publishes what issue 22's fault injector sent
(non-JSON and deeply nested JSON on /vla/episode, non-JSON on /sim/privileged_state, an Image whose
data does not match its size, a camera frame over the pixel limit, an over-long instruction, a
joint state of NaN) and checks that each was
counted under its own kind on /diagnostics and named in the node's log (the diagnostic status
holds only the latest problem, and the next good observation replaces it), that the last-resort
callback guard never fired (input alone cannot reach it), and that the processes still run and
the policy still publishes actions afterwards.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import spinning, start_graph, wait_until
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_bringup.profiles import PROFILES
from vla_common.inbound import MAX_IMAGE_PIXELS, MAX_INSTRUCTION_CHARS
from vla_common.robot import PROPRIO_JOINT_NAMES
from vla_common.ros.callback_guard import COUNTER_PREFIX
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS

pytestmark = pytest.mark.ros

NODES = [spec for spec in PROFILES["sim"] if spec.name in ("sim", "perception", "policy")]
OVERRIDES = {
    "sim": {"wait_for_publishers": ["/vla/action"]},  # no actuation in this graph
    "policy": {"backend": "scripted"},
}


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("malformed_input_probe")
        self.lock = threading.Lock()
        self.actions = 0
        self.counters: dict[str, dict[str, int]] = {}  # node -> counters from its latest diagnostics
        self.messages: dict[str, list[str]] = {}  # node -> every status message seen
        self.notes: dict[str, dict[str, str]] = {}  # node -> last_rejected.<kind>: its last reason
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.episode = self.create_publisher(String, "/vla/episode", EVENTS_QOS)
        self.privileged = self.create_publisher(String, "/sim/privileged_state", RELIABLE_QOS)
        self.observation = self.create_publisher(Image, "/vla/observation/primary", RELIABLE_QOS)
        self.instruction = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.joints = self.create_publisher(JointState, "/wx250s/joint_states", 10)
        # perception's camera 'primary' (config/perception.yaml)
        self.camera = self.create_publisher(Image, "/camera/third_person/image_raw", CAMERA_QOS)

    def _on_action(self, msg: String) -> None:
        with self.lock:
            self.actions += 1

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                node = status.name.removeprefix("vla_stack/")
                self.counters[node] = {
                    kv.key[6:]: int(kv.value) for kv in status.values if kv.key.startswith("count.")
                }
                self.messages.setdefault(node, []).append(status.message)
                self.notes[node] = {kv.key: kv.value for kv in status.values if kv.key.startswith("last_")}

    def action_count(self) -> int:
        with self.lock:
            return self.actions

    def counter(self, node: str, key: str) -> int:
        with self.lock:
            return self.counters.get(node, {}).get(key, 0)

    def reason(self, node: str, kind: str) -> str:
        with self.lock:
            return self.notes.get(node, {}).get(f"last_rejected.{kind}", "")

    def said(self, node: str, text: str) -> bool:
        with self.lock:
            return any(text in message for message in self.messages.get(node, []))

    def guard_counts(self, node: str) -> dict[str, int]:
        with self.lock:
            return {k: v for k, v in self.counters.get(node, {}).items() if k.startswith(COUNTER_PREFIX)}


@pytest.fixture()
def graph(tmp_path: Path):
    launcher = start_graph(NODES, tmp_path, OVERRIDES)
    try:
        with spinning(Probe) as probe:
            yield probe, launcher
    finally:
        launcher.stop()


def _bad_image(height: int = 224, width: int = 224) -> Image:
    msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=bytes(100))
    msg.header.stamp.sec = 2_000_000_000  # newer than any episode start: not dropped as old
    return msg


def test_malformed_messages_are_dropped_counted_and_named_and_the_graph_goes_on(graph, tmp_path):
    probe, launcher = graph
    assert wait_until(lambda: probe.action_count() >= 3 or launcher.poll() is not None, 90.0), (
        "the policy published no actions before the faults"
    )
    assert launcher.poll() is None, launcher.poll()

    probe.episode.publish(String(data="this is not JSON"))
    probe.episode.publish(String(data='{"event": ' + "[" * 100_000 + "]" * 100_000 + "}"))
    # A seed no generator takes (Octo's manual_seed raised on it after validation passed, in the soak).
    probe.episode.publish(String(data='{"event": "start", "seed": ' + str(10**40) + "}"))
    probe.privileged.publish(String(data="{truncated"))
    probe.observation.publish(_bad_image())
    oversized = _bad_image(height=MAX_IMAGE_PIXELS // 2000 + 1, width=2000)  # refused by its size alone
    # Best-effort frames published before DDS matched perception's camera reader are lost: since
    # perception publishes on the completing frame, the first actions can come before that match.
    assert wait_until(lambda: probe.camera.get_subscription_count() > 0, 30.0), "perception never matched"
    for _ in range(3):  # best-effort camera QoS: one of them arrives
        probe.camera.publish(oversized)
    probe.instruction.publish(String(data="x" * (MAX_INSTRUCTION_CHARS + 1)))
    probe.joints.publish(JointState(name=list(PROPRIO_JOINT_NAMES), position=[float("nan")] * 7))

    def all_counted() -> bool:
        if probe.counter("perception", "rejected.frame.primary") < 1:
            probe.camera.publish(oversized)  # best effort: a 7 MB frame can be lost under load; again
        return (
            probe.counter("perception", "rejected.episode") >= 3
            and probe.counter("policy", "rejected.episode") >= 3
            and probe.counter("policy", "rejected.privileged_state") >= 1
            and probe.counter("policy", "rejected.image.primary") >= 1
            and probe.counter("perception", "rejected.frame.primary") >= 1
            and probe.counter("perception", "rejected.instruction") >= 1
            and probe.counter("policy", "rejected.instruction") >= 1
            and probe.counter("policy", "rejected.joints") >= 1
        )

    assert wait_until(lambda: all_counted() or launcher.poll() is not None, 20.0, poll_s=0.25), probe.counters
    assert launcher.poll() is None, launcher.poll()

    # Each reason, named, in the node's log.
    def logged(node: str, text: str) -> bool:
        return text in (tmp_path / "logs" / f"{node}.log").read_text(errors="replace")

    assert wait_until(lambda: logged("perception", "dropped episode: episode event: not JSON"), 3.0)
    assert logged("policy", "dropped episode: episode event: not JSON")
    assert logged("perception", f"dropped frame.primary: camera 'primary': 2000x{oversized.height} = ")
    assert logged("policy", "dropped privileged_state: privileged state: not JSON")
    assert logged(
        "policy", "dropped image.primary: observation 'primary': data has 100 bytes, fewer than step 672"
    )
    # The last reason per kind on /diagnostics, whatever the status message says now.
    # (the last of the bad episode events: a seed out of range, the range named)
    seed_reason = f"episode event: field 'seed' is {10**40}; expected an integer in [0, 2**63)"
    assert probe.reason("policy", "episode") == seed_reason, probe.notes
    assert probe.reason("policy", "privileged_state").startswith("privileged state: not JSON"), probe.notes
    assert "data has 100 bytes, fewer than step 672" in probe.reason("policy", "image.primary"), probe.notes
    assert probe.reason("policy", "joints").startswith("joint state: a position is not a finite number")
    assert f"{MAX_INSTRUCTION_CHARS + 1} characters" in probe.reason("policy", "instruction"), probe.notes
    # Validation caught all of it: the last-resort guards were never reached.
    assert probe.guard_counts("perception") == {} and probe.guard_counts("policy") == {}
    assert probe.guard_counts("sim") == {} and "sim" in probe.counters, probe.counters
    assert probe.counters.get("perception") and probe.counters.get("policy")  # diagnostics were read

    # Still working: fresh actions after the faults, every process alive.
    after = probe.action_count()
    assert wait_until(lambda: probe.action_count() >= after + 3, 15.0), "no actions after the faults"
    assert launcher.poll() is None, launcher.poll()
