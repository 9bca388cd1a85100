"""The perception node alone over DDS, fed faulty camera frames by this test (issue 22, safety.md 8-10).

Camera 'primary' is raw, 'wrist' compressed (JPEG) and subscribed reliable. A probe publishes fresh
frames of both at 20 Hz, then, one fault at a time: stamps 30 s in the future, zero stamps, stamps
2 s old, a frozen primary camera (the same bytes, fresh stamps), a JPEG with its middle third
overwritten (OpenCV decodes it without an error), a 3000x3000 raw frame and a 3000x3000 JPEG, the
wrist camera dropping out, and a best-effort publisher on the reliable wrist topic. For each it
checks over DDS that the cause is counted and named in /diagnostics, that no observation is
published from the bad frames, and that observations come back within one control period (plus
a wide margin for a loaded machine) once the frames are good again. Before any of it, a publisher
of the wrong message type on a camera topic is named as the reason that camera is silent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from graph_helpers import perception_with_probe, wait_until
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from vla_common.ros.qos import CAMERA_QOS, LATCHED_QOS, RELIABLE_QOS

pytestmark = pytest.mark.ros

S = 1_000_000_000
PRIMARY, WRIST = "/camera/test/primary", "/camera/test/wrist"
OVERRIDES = {
    "perception": {
        "primary.topic": PRIMARY,
        "wrist.topic": WRIST,
        "wrist.transport": "compressed",
        "wrist.reliability": "reliable",
        "primary.height": 32,
        "primary.width": 32,
        "wrist.height": 32,
        "wrist.width": 32,
    }
}
CONTROL_PERIOD_S = 0.2  # control_hz 5 (config/control.yaml)
RECOVERY_S = CONTROL_PERIOD_S + 1.3  # one control period, and a wide margin for a loaded machine
FROZEN_AFTER_S = 1.0  # frozen_after_s in config/perception.yaml
RATE_HZ = 20.0
RELIABLE_CAMERA_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


class Probe(Node):
    def __init__(self) -> None:
        super().__init__("perception_fault_probe")
        self.lock = threading.Lock()
        self.observations: list[tuple[float, int]] = []  # (receipt wall s, stamp ns)
        self.counters: dict[str, int] = {}
        self.messages: list[str] = []
        self.rng = np.random.default_rng(0)
        self.primary = self.create_publisher(Image, PRIMARY, CAMERA_QOS)
        self.wrist = self.create_publisher(CompressedImage, WRIST, RELIABLE_CAMERA_QOS)
        self.instruction = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.create_subscription(Image, "/vla/observation/primary", self._on_observation, RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)

    def _on_observation(self, msg: Image) -> None:
        with self.lock:
            self.observations.append((time.time(), msg.header.stamp.sec * S + msg.header.stamp.nanosec))

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == "vla_stack/perception":
                with self.lock:
                    self.counters = {
                        kv.key[6:]: int(kv.value) for kv in status.values if kv.key.startswith("count.")
                    }
                    self.messages.append(status.message)

    def count(self, key: str) -> int:
        with self.lock:
            return self.counters.get(key, 0)

    def said(self, text: str) -> bool:
        with self.lock:
            return any(text in message for message in self.messages)

    def stamps_between(self, low_ns: int, high_ns: int) -> list[int]:
        with self.lock:
            return [stamp for _, stamp in self.observations if low_ns <= stamp <= high_ns]

    def first_received_from(self, stamp_ns: int) -> float | None:
        """Wall time the first observation stamped at or after ``stamp_ns`` arrived."""
        with self.lock:
            return next((t for t, stamp in self.observations if stamp >= stamp_ns), None)

    # --- frames -------------------------------------------------------------------------------
    def pixels(self, height: int = 48, width: int = 64) -> np.ndarray:
        return self.rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    def raw(self, stamp_ns: int, pixels: np.ndarray | None = None) -> Image:
        pixels = self.pixels() if pixels is None else pixels
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="rgb8", step=pixels.shape[1] * 3)
        msg.data = pixels.tobytes()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
        return msg

    def jpeg(self, stamp_ns: int, data: bytes | None = None) -> CompressedImage:
        msg = CompressedImage(format="bgr8; jpeg compressed bgr8")
        msg.data = cv2.imencode(".jpg", self.pixels())[1].tobytes() if data is None else data
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, S)
        return msg

    def pump(self, seconds: float, primary=None, wrist=None) -> tuple[int, int]:
        """Publish both cameras at 20 Hz for ``seconds``; ``primary``/``wrist`` map a stamp to the
        message to send (None: a good frame, False: send nothing). Returns the window's stamps."""
        start = time.time_ns()
        while time.time_ns() < start + seconds * S:
            now = time.time_ns()
            if primary is not False:
                self.primary.publish(primary(now) if primary else self.raw(now))
            if wrist is not False:
                self.wrist.publish(wrist(now) if wrist else self.jpeg(now))
            time.sleep(1.0 / RATE_HZ)
        return start, time.time_ns()


@pytest.fixture()
def probe(tmp_path: Path):
    with perception_with_probe(tmp_path, OVERRIDES, Probe) as (node, launcher):
        yield node, launcher


def middle_zeroed(data: bytes) -> bytes:
    a, b = len(data) // 3, 2 * len(data) // 3
    return data[:a] + bytes(b - a) + data[b:]


def test_bad_camera_frames_are_named_never_used_and_recovered_from(probe, tmp_path):
    node, launcher = probe
    # safety.md case 9 at start: a camera topic whose publisher sends another type is silent; named.
    context = rclpy.Context()  # a participant of its own: DDS allows one type per topic in each
    rclpy.init(context=context)
    other = rclpy.create_node("wrong_type_camera", context=context)
    other.create_publisher(CompressedImage, PRIMARY, CAMERA_QOS)
    silent = (
        "cameras without frames: camera 'primary' on /camera/test/primary: publisher 'wrong_type_camera' "
        "sends sensor_msgs/msg/CompressedImage, but primary.transport expects sensor_msgs/msg/Image"
    )
    try:
        assert wait_until(lambda: node.said(silent) or launcher.poll() is not None, 60.0), node.messages[-3:]
    finally:
        other.destroy_node()
        rclpy.try_shutdown(context=context)
    deadline = time.monotonic() + 60
    while node.first_received_from(0) is None and time.monotonic() < deadline and launcher.poll() is None:
        node.pump(0.5)
    assert node.first_received_from(0) is not None, f"no observation before the faults: {node.messages[-3:]}"

    def fault(
        name: str, counter: str, text: str, grace_s: float = 0.1, seconds: float = 2.0, **frames
    ) -> None:
        before = node.count(counter)
        start, end = node.pump(seconds, **frames)
        deadline = time.monotonic() + RECOVERY_S + 2.0  # good frames again; diagnostics (1 Hz) catch up
        while time.monotonic() < deadline and not (
            node.count(counter) > before and node.said(text) and node.first_received_from(end) is not None
        ):
            node.pump(0.25)
        assert node.count(counter) > before, f"{name}: {counter} not counted: {node.counters}"
        assert node.said(text), f"{name}: no status said {text!r}: {node.messages[-5:]}"
        used = node.stamps_between(start + int(grace_s * S), end)
        assert not used, f"{name}: {len(used)} observations from the bad frames"
        later = time.time_ns() + S
        assert not node.stamps_between(later, later + 60 * S), f"{name}: an observation from the future"
        recovered = node.first_received_from(end)
        back_s = None if recovered is None else recovered - end / S
        assert back_s is not None and back_s < RECOVERY_S, (
            f"{name}: observations back {back_s} s after the fault"
        )

    # Issue 22: 36.6 s without observations after 1 s of stamps 30 s ahead.
    fault(
        "future stamps",
        "refused.future_stamp.primary",
        "s in the future (limit max_future_s=0.500); is the camera's clock in sync?",
        primary=lambda now: node.raw(now + 30 * S),
    )
    fault(
        "zero stamps",
        "refused.zero_stamp.primary",
        "camera 'primary': zero stamp",
        primary=lambda now: node.raw(0),
    )
    fault(
        "old stamps",
        "refused.old_stamp.wrist",
        "camera 'wrist': frame older than the bound: 2.0",
        wrist=lambda now: node.jpeg(now - 2 * S),
    )
    frozen = node.pixels()  # the same bytes with fresh stamps: caught after frozen_after_s, not 7.9 s
    fault(
        "frozen camera",
        "refused.frozen.primary",
        "camera 'primary': frozen: content unchanged for ",
        grace_s=FROZEN_AFTER_S + CONTROL_PERIOD_S + 0.1,
        seconds=2.5,
        primary=lambda now: node.raw(now, frozen),
    )
    good_jpeg = cv2.imencode(".jpg", cv2.resize(node.pixels(), (320, 240)))[1].tobytes()
    fault(
        "corrupt JPEG",
        "refused.corrupt.wrist",
        "camera 'wrist': corrupt JPEG",
        wrist=lambda now: node.jpeg(now, middle_zeroed(good_jpeg)),
    )
    huge = Image(height=3000, width=3000, encoding="rgb8", step=9000, data=bytes(64))  # refused by its size
    fault(
        "huge raw frame",
        "refused.too_large.primary",
        "camera 'primary': 3000x3000 = 9000000 pixels, more than the limit of 2304000 (max_pixels)",
        primary=lambda now: (huge.header.stamp.__setattr__("sec", now // S), huge)[1],
    )
    huge_jpeg = cv2.imencode(".jpg", np.zeros((3000, 3000, 3), np.uint8))[1].tobytes()
    fault(
        "huge JPEG",
        "refused.too_large.wrist",
        "header declares: 3000x3000 = 9000000 pixels",
        wrist=lambda now: node.jpeg(now, huge_jpeg),
    )
    # safety.md case 10: one camera drops out: no synchronised set, the watchdog names it.
    fault("wrist drops out", "no_sync", "no synchronised camera set: camera 'wrist' lags", wrist=False)

    # safety.md case 9: a best-effort publisher on the reliable wrist topic cannot match: reported.
    best_effort = node.create_publisher(CompressedImage, WRIST, CAMERA_QOS)
    qos_text = "camera 'wrist' on /camera/test/wrist: incompatible QoS with a publisher (policy RELIABILITY"
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (node.count("qos_incompatible.wrist") and node.said(qos_text)):
        node.pump(0.25)
    assert node.count("qos_incompatible.wrist") >= 1, node.counters
    assert node.said(qos_text), node.messages[-3:]
    node.destroy_publisher(best_effort)

    assert {k: v for k, v in node.counters.items() if k.startswith("unexpected_error")} == {}
    assert launcher.poll() is None, launcher.poll()
    log = (tmp_path / "logs" / "perception.log").read_text(errors="replace")
    assert "dropped frame.primary: camera 'primary': stamp 29.9" in log or "stamp 30.0" in log
