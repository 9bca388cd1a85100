"""BagRecorderNode over real DDS: publishers and recorder in separate rclpy contexts (two participants)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_bringup.ros_env import loopback_environment
from vla_data.bag_io import iter_messages, read_counts
from vla_data.bag_recorder_node import BagRecorderNode, adapted_qos

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


class SpinningContext:
    """An initialised rclpy context whose executor spins in a background thread."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # the context was shut down under us
                if self.context.ok():
                    raise

    def shutdown(self) -> None:
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


@pytest.fixture
def spinning() -> Iterator[Callable[[], SpinningContext]]:
    """Factory of spinning contexts, all shut down after the test."""
    made: list[SpinningContext] = []

    def make() -> SpinningContext:
        made.append(SpinningContext())
        return made[-1]

    yield make
    for ctx in reversed(made):
        ctx.shutdown()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def make_image(index: int) -> Image:
    msg = Image(height=240, width=320, encoding="rgb8", step=320 * 3)
    msg.header.frame_id = "scene"
    msg.header.stamp.sec = index
    msg.data = np.full((240, 320, 3), index, np.uint8).tobytes()
    return msg


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_records_every_topic_with_matching_qos(tmp_path: Path, spinning, storage: str) -> None:
    publisher_side = spinning()
    pub_node = Node("bag_test_publisher", context=publisher_side.context)
    latched = pub_node.create_publisher(String, "/instruction", LATCHED)
    images = pub_node.create_publisher(Image, "/camera/image", qos_profile_sensor_data)
    chatter = pub_node.create_publisher(String, "/chatter", RELIABLE)
    latched.publish(String(data="pick up the cube"))  # before the recorder exists

    recorder_side = spinning()
    start_ns = time.time_ns()
    recorder = BagRecorderNode(str(tmp_path / "bag"), storage, context=recorder_side.context)
    recorder_side.executor.add_node(recorder)
    wanted = ["/camera/image", "/chatter", "/instruction"]
    wait_for(lambda: recorder.subscribed_topics() == wanted, 10, f"subscriptions to {wanted}")
    wait_for(lambda: images.get_subscription_count() and chatter.get_subscription_count(), 10, "matching")

    for i in range(50):
        images.publish(make_image(i))
        if i < 20:
            chatter.publish(String(data=f"hello {i}"))
        time.sleep(1 / 30)
    expected = {"/camera/image": 50, "/chatter": 20, "/instruction": 1}
    wait_for(lambda: recorder.counts() == expected, 10, f"counts {expected}, have {recorder.counts()}")
    assert recorder.close() == expected
    end_ns = time.time_ns()

    assert read_counts(tmp_path / "bag") == expected
    received: dict[str, list] = {topic: [] for topic in expected}
    for topic, msgtype, stamp_ns, msg in iter_messages(tmp_path / "bag"):
        assert start_ns <= stamp_ns <= end_ns, f"{topic}: receive time {stamp_ns} outside the test"
        received[topic].append((msgtype, msg))
    assert [(t, m.data) for t, m in received["/instruction"]] == [("std_msgs/msg/String", "pick up the cube")]
    assert [m.data for _, m in received["/chatter"]] == [f"hello {i}" for i in range(20)]
    for i, (msgtype, msg) in enumerate(received["/camera/image"]):
        assert msgtype == "sensor_msgs/msg/Image"
        assert (msg.header.stamp.sec, msg.header.frame_id, msg.height, msg.width) == (i, "scene", 240, 320)
        assert msg.data.shape == (240 * 320 * 3,) and (msg.data == i).all()


def test_records_only_requested_topics_and_weakens_qos(tmp_path: Path, spinning) -> None:
    publisher_side = spinning()
    pub_node = Node("bag_test_publisher2", context=publisher_side.context)
    reliable = pub_node.create_publisher(String, "/chatter", RELIABLE)
    pub_node.create_publisher(String, "/ignored", RELIABLE)

    recorder_side = spinning()
    recorder = BagRecorderNode(
        str(tmp_path / "bag"), topics=["/chatter"], discovery_period_s=0.1, context=recorder_side.context
    )
    recorder_side.executor.add_node(recorder)
    wait_for(lambda: recorder.subscribed_topics() == ["/chatter"], 10, "subscription to /chatter")
    wait_for(lambda: reliable.get_subscription_count() == 1, 10, "matching the reliable publisher")
    # A best-effort publisher joins: a reliable subscription cannot match it, so the recorder re-subscribes.
    best_effort = pub_node.create_publisher(String, "/chatter", qos_profile_sensor_data)
    wait_for(lambda: best_effort.get_subscription_count() == 1, 10, "matching the best-effort publisher")
    wait_for(lambda: reliable.get_subscription_count() == 1, 10, "still matching the reliable publisher")
    reliable.publish(String(data="from reliable"))
    best_effort.publish(String(data="from best effort"))
    wait_for(lambda: recorder.counts() == {"/chatter": 2}, 10, f"2 messages, have {recorder.counts()}")
    recorder.close()
    assert sorted(m.data for *_, m in iter_messages(tmp_path / "bag")) == [
        "from best effort",
        "from reliable",
    ]


def test_adapted_qos_follows_ros2_bag() -> None:
    class Info:
        def __init__(self, qos: QoSProfile) -> None:
            self.qos_profile = qos

    assert adapted_qos([Info(LATCHED)], 100).durability == DurabilityPolicy.TRANSIENT_LOCAL
    mixed = adapted_qos([Info(LATCHED), Info(qos_profile_sensor_data)], 100)
    assert (mixed.reliability, mixed.durability, mixed.depth) == (
        ReliabilityPolicy.BEST_EFFORT,
        DurabilityPolicy.VOLATILE,
        100,
    )
    assert adapted_qos([Info(RELIABLE)], 7).reliability == ReliabilityPolicy.RELIABLE


def test_cli_closes_the_bag_on_sigint(tmp_path: Path, spinning) -> None:
    publisher_side = spinning()
    pub_node = Node("bag_test_publisher3", context=publisher_side.context)
    latched = pub_node.create_publisher(String, "/instruction", LATCHED)
    latched.publish(String(data="wave"))

    bag = tmp_path / "bag"
    env = loopback_environment()  # same domain as this process (set by conftest)
    cli = [sys.executable, "-m", "vla_data.bag_recorder_node", "-o", str(bag), "/instruction"]
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: latched.get_subscription_count() == 1, 20, "the CLI recorder to subscribe")
        time.sleep(0.5)  # let the latched sample arrive
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "/instruction: 1" in output
    assert [m.data for *_, m in iter_messages(bag)] == ["wave"]
