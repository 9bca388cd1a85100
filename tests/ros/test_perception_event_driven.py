"""Perception publishes a synchronised set on the frame that completes it, not on a control tick.

The perception node alone over DDS, its control rate set to 0.2 Hz: a tick-driven node would
publish at most one observation per 5 s period, and only from frames younger than
max_image_age_s (0.5 s) at the tick. This test publishes the primary frame of a known stamp,
checks that no observation comes while the wrist frame of that stamp is missing, then publishes
the wrist frame and expects the observation under that stamp well within the control period (a
mechanism check: the bound is a fifth of the period, not a speed). Frames arrive serialized (a raw
subscription): a cut-short serialized Image is refused as malformed and named in /diagnostics.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import perception_with_probe, wait_until
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_common.ros.qos import LATCHED_QOS, RELIABLE_QOS

pytestmark = pytest.mark.ros

S = 1_000_000_000
PRIMARY, WRIST = "/camera/event_test/primary", "/camera/event_test/wrist"
CONTROL_HZ = 0.2  # a 5 s control period: a tick-driven node could not answer within ARRIVAL_BOUND_S
CONTROL_PERIOD_S = 1.0 / CONTROL_HZ
ARRIVAL_BOUND_S = CONTROL_PERIOD_S / 5  # "well within one control period" of the completing frame
INCOMPLETE_WAIT_S = 0.3  # how long the set stays incomplete (below max_image_age_s 0.5)
OVERRIDES = {
    "perception": {
        "control_hz": CONTROL_HZ,
        "primary.topic": PRIMARY,
        "wrist.topic": WRIST,
        "primary.reliability": "reliable",
        "wrist.reliability": "reliable",
        "primary.height": 32,
        "primary.width": 32,
        "wrist.height": 32,
        "wrist.width": 32,
    }
}
RELIABLE_CAMERA_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("perception_event_probe")
        self.lock = threading.Lock()
        self.received: dict[int, float] = {}  # observation stamp ns -> receipt monotonic s
        self.statuses: list[tuple[dict[str, str], str]] = []  # perception's (values, message)
        self.rng = np.random.default_rng(0)
        self.cameras = {
            "primary": self.create_publisher(Image, PRIMARY, RELIABLE_CAMERA_QOS),
            "wrist": self.create_publisher(Image, WRIST, RELIABLE_CAMERA_QOS),
        }
        self.instruction = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.create_subscription(Image, "/vla/observation/wrist", self._on_observation, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.statuses += [
                ({kv.key: kv.value for kv in status.values}, status.message)
                for status in msg.status
                if status.name == "vla_stack/perception"
            ]

    def said(self, key: str, text: str) -> bool:
        """A perception status counted ``key`` and its message or a note contains ``text``."""
        with self.lock:
            return any(
                key in values and any(text in said for said in (message, *values.values()))
                for values, message in self.statuses
            )

    def _on_observation(self, msg: Image) -> None:
        with self.lock:
            self.received[msg.header.stamp.sec * S + msg.header.stamp.nanosec] = time.monotonic()

    def image(self, stamp_ns: int) -> Image:
        pixels = self.rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3, data=pixels.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
        return msg

    def publish(self, camera: str, stamp_ns: int) -> None:
        self.cameras[camera].publish(self.image(stamp_ns))

    def arrival(self, stamp_ns: int) -> float | None:
        with self.lock:
            return self.received.get(stamp_ns)


@pytest.fixture()
def probe(tmp_path: Path):
    with perception_with_probe(tmp_path, OVERRIDES, Probe) as (node, launcher):
        yield node, launcher


def test_a_set_is_published_on_the_frame_that_completes_it(probe):
    node, launcher = probe
    # Discovery and the latched instruction first: pairs of frames until one observation comes back.
    deadline = time.monotonic() + 60
    warmed_up = False
    while not warmed_up and time.monotonic() < deadline and launcher.poll() is None:
        stamp = time.time_ns()
        node.publish("primary", stamp)
        node.publish("wrist", stamp)
        warmed_up = wait_until(lambda s=stamp: node.arrival(s) is not None, 0.5)
    assert warmed_up, f"no observation within 60 s (perception exit code {launcher.poll()})"

    delays = []
    for _ in range(3):
        stamp = time.time_ns()
        node.publish("primary", stamp)
        time.sleep(INCOMPLETE_WAIT_S)
        assert node.arrival(stamp) is None, "an observation before its set was complete"
        completed = time.monotonic()
        node.publish("wrist", stamp)
        assert wait_until(lambda s=stamp: node.arrival(s) is not None, CONTROL_PERIOD_S), (
            f"no observation for stamp {stamp} within a control period of its completing frame"
        )
        delays.append(node.arrival(stamp) - completed)
    assert max(delays) < ARRIVAL_BOUND_S, f"observations {delays} s after their completing frame"
    assert launcher.poll() is None


def test_a_cut_short_serialized_frame_is_refused_as_malformed(probe):
    node, launcher = probe
    cut_short = serialize_message(node.image(time.time_ns()))[:-100]
    text = "bytes are not a serialized sensor_msgs/msg/Image"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not node.said("count.refused.malformed.primary", text):
        node.cameras["primary"].publish(cut_short)  # rclpy publishes bytes as they are
        time.sleep(0.2)
    assert node.said("count.refused.malformed.primary", text), node.statuses[-2:]
    assert launcher.poll() is None
