"""The demo's monitor node takes what another publisher puts on its topics without ending the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_eval.demo_monitor_node import DemoMonitorNode

pytestmark = pytest.mark.ros


@pytest.fixture
def monitor():
    rclpy.init(args=[])
    frames: list[np.ndarray] = []
    node = DemoMonitorNode("/camera/third_person/image_raw", frames.append)
    try:
        yield node, frames
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _diagnostics(name: str, latency: str) -> DiagnosticArray:
    return DiagnosticArray(
        status=[DiagnosticStatus(name=name, values=[KeyValue(key="latency_ms", value=latency)])]
    )


def test_bad_messages_are_counted_and_good_ones_still_used(monitor):
    node, frames = monitor
    for text in ("{not json", "[1, 2]", json.dumps({"event": 3}), "[" * 5000):
        node._on_event(String(data=text))
    node._on_event(String(data=json.dumps({"event": "done", "stamp_ns": 5})))
    assert node.dropped["episode"] == 4
    assert node.done and node.events == [{"event": "done", "stamp_ns": 5}]

    node._on_diagnostics(_diagnostics("vla_stack/policy", "{oops"))
    node._on_diagnostics(_diagnostics("vla_stack/policy", json.dumps({"inference": {"p50": 1.0}})))
    assert node.dropped["diagnostics"] == 1
    assert node.latency == {"policy": {"inference": {"p50": 1.0}}}

    short = Image(height=4, width=4, step=12, encoding="rgb8", data=bytes(10))
    node._on_image(short)
    node._on_image(Image(height=2, width=2, step=6, encoding="rgb8", data=bytes(range(12))))
    assert node.dropped["video_frame"] == 1
    assert len(frames) == 1 and frames[0].shape == (2, 2, 3)
