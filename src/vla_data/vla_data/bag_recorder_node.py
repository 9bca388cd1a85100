"""A rosbag2 recorder node for the pip install (no rosbag2_py): raw CDR bytes straight into a BagWriter.

Subscriptions take ``raw=True`` so nothing is deserialised on the write path. Each topic's QoS is
adapted to what its publishers offer, the way ``ros2 bag record`` does it: reliable only when every
publisher is reliable, transient-local only when every publisher is (so a latched instruction
published before the recorder started is still caught), keep-last ``depth``. When a publisher with
weaker QoS appears later, the subscription is re-created with the weaker QoS so it still matches.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.subscription import MessageInfo, Subscription
from rclpy.topic_endpoint_info import TopicEndpointInfo
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from vla_bringup.ros_env import apply_loopback_profile
from vla_data.bag_io import ThreadedBagWriter

# Every node publishes these; they only bloat a recording of the robot's data.
DEFAULT_EXCLUDED_TOPICS = ("/rosout", "/parameter_events")


def _import_message_class(msgtype: str) -> type | None:
    """The rclpy message class for ``pkg/msg/Name``, or None when its package is not installed."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError):
        return None


def _duration(nanoseconds: int) -> QosTime:
    sec, nsec = divmod(int(nanoseconds), 1_000_000_000)
    return QosTime(sec, nsec)


def to_bag_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as the rosbags Qos stored in the bag's offered_qos_profiles."""
    return Qos(
        history=QosHistory[profile.history.name],
        depth=profile.depth,
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=_duration(profile.deadline.nanoseconds),
        lifespan=_duration(profile.lifespan.nanoseconds),
        liveliness=QosLiveliness[profile.liveliness.name],
        liveliness_lease_duration=_duration(profile.liveliness_lease_duration.nanoseconds),
        avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions,
    )


def adapted_qos(publishers: Sequence[TopicEndpointInfo], depth: int) -> QoSProfile:
    """The strongest subscription QoS that every one of ``publishers`` is compatible with."""
    all_reliable = bool(publishers) and all(
        p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers
    )
    all_latched = bool(publishers) and all(
        p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers
    )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if all_latched else DurabilityPolicy.VOLATILE,
    )


def _is_weaker(new: QoSProfile, old: QoSProfile) -> bool:
    """Whether ``new`` asks for less than ``old`` (so publishers ``old`` would miss can match)."""
    return (new.reliability, new.durability) != (old.reliability, old.durability) and (
        new.reliability == ReliabilityPolicy.BEST_EFFORT or new.durability == DurabilityPolicy.VOLATILE
    )


class BagRecorderNode(Node):
    """Records ``topics`` (or every topic, found every ``discovery_period_s``) into a rosbag2 bag.

    A topic is subscribed once it has a publisher; topics with several types, or a type that is not
    installed or not in the typestore, are skipped with one warning. Messages are stamped with their
    receive time: the DDS reception time, or the node's ROS clock (/clock) when use_sim_time is set.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        storage: str = "mcap",
        topics: Sequence[str] | None = None,
        *,
        exclude_topics: Sequence[str] = DEFAULT_EXCLUDED_TOPICS,
        depth: int = 100,
        discovery_period_s: float = 0.5,
        node_name: str = "bag_recorder",
        **node_kwargs: Any,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth {depth} must be at least 1")
        if discovery_period_s <= 0:
            raise ValueError(f"discovery_period_s {discovery_period_s} must be positive")
        super().__init__(node_name, **node_kwargs)
        self._writer = ThreadedBagWriter(output, storage=storage)
        self._requested = None if topics is None else frozenset(topics)
        self._excluded = frozenset(exclude_topics)
        self._depth = depth
        self._recorded: dict[str, tuple[Subscription, QoSProfile]] = {}
        self._skipped: set[str] = set()
        # Orders close() against callbacks running on other executor threads.
        self._lock = threading.Lock()
        self._closed = False
        self._discovery_timer = self.create_timer(discovery_period_s, self.discover)
        self.discover()

    @property
    def output(self) -> str:
        """The bag directory being written."""
        return str(self._writer.path)

    def subscribed_topics(self) -> list[str]:
        """Topics currently being recorded."""
        return sorted(self._recorded)

    def counts(self) -> dict[str, int]:
        """Messages written to disk so far, per topic."""
        return self._writer.counts()

    def discover(self) -> None:
        """Subscribe to new matching topics; weaken a subscription's QoS when a publisher needs it."""
        if self._closed:
            return
        for topic, types in self.get_topic_names_and_types():
            if topic in self._skipped or topic in self._excluded:
                continue
            if self._requested is not None and topic not in self._requested:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue  # subscribers only (or our own subscription): wait for a publisher
            qos = adapted_qos(publishers, self._depth)
            current = self._recorded.get(topic)
            if current is None:
                self._subscribe(topic, types, publishers, qos)
            elif _is_weaker(qos, current[1]):
                self.get_logger().info(f"topic '{topic}': a new publisher needs weaker QoS; resubscribing")
                self.destroy_subscription(current[0])
                self._recorded[topic] = (self._create_raw_subscription(topic, types[0], qos), qos)

    def _subscribe(
        self, topic: str, types: list[str], publishers: list[TopicEndpointInfo], qos: QoSProfile
    ) -> None:
        if len(types) != 1:
            self._skip(topic, f"it has several types {types}")
            return
        msgtype = types[0]
        if _import_message_class(msgtype) is None:
            self._skip(topic, f"message type '{msgtype}' is not installed")
            return
        try:
            self._writer.add_topic(topic, msgtype, [to_bag_qos(p.qos_profile) for p in publishers])
        except ValueError as error:
            self._skip(topic, str(error))
            return
        self._recorded[topic] = (self._create_raw_subscription(topic, msgtype, qos), qos)
        self.get_logger().info(
            f"recording '{topic}' ({msgtype}, {qos.reliability.name.lower()}, {qos.durability.name.lower()})"
        )

    def _create_raw_subscription(self, topic: str, msgtype: str, qos: QoSProfile) -> Subscription:
        callback: Callable[[bytes, MessageInfo], None] = functools.partial(self._on_message, topic)
        return self.create_subscription(_import_message_class(msgtype), topic, callback, qos, raw=True)

    def _skip(self, topic: str, reason: str) -> None:
        self._skipped.add(topic)
        self.get_logger().warning(f"not recording topic '{topic}': {reason}")

    def _on_message(self, topic: str, cdr_bytes: bytes, info: MessageInfo) -> None:
        clock = self.get_clock()
        if clock.ros_time_is_active:
            stamp_ns = clock.now().nanoseconds
        else:
            stamp_ns = info["received_timestamp"] or time.time_ns()
        with self._lock:
            if not self._closed:
                self._writer.write(topic, stamp_ns, cdr_bytes)

    def close(self) -> dict[str, int]:
        """Stop recording and finish the bag (index + metadata.yaml). Idempotent; returns the counts."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._discovery_timer.cancel()
            return self._writer.close()

    def destroy_node(self) -> None:
        """Close the bag, then destroy the node."""
        self.close()
        super().destroy_node()


def record(
    topics: Sequence[str] | None,
    output: str | os.PathLike[str],
    storage: str = "mcap",
    duration_s: float | None = None,
    **recorder_kwargs: Any,
) -> dict[str, int]:
    """Record ``topics`` (None: all) into ``output`` until SIGINT/SIGTERM or ``duration_s``.

    Runs on the project's loopback DDS profile and always closes the bag; returns counts per topic.
    """
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s {duration_s} must be positive")
    apply_loopback_profile()
    stop = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous: dict[int, Any] = {}
    if in_main_thread:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    executor = SingleThreadedExecutor(context=context)
    node: BagRecorderNode | None = None
    try:
        node = BagRecorderNode(output, storage, topics, context=context, **recorder_kwargs)
        executor.add_node(node)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and context.ok():
            if deadline is not None and time.monotonic() >= deadline:
                break
            executor.spin_once(timeout_sec=0.1)
        return node.close()
    finally:
        if node is not None:
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vla_data.bag_recorder_node [-o BAG] [-s mcap|sqlite3] [-d SECONDS] [TOPIC ...]``."""
    parser = argparse.ArgumentParser(description="Record ROS 2 topics into a rosbag2 bag (all by default).")
    parser.add_argument("topics", nargs="*", help="topics to record; none means every topic")
    parser.add_argument("-o", "--output", default=time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S"))
    parser.add_argument("-s", "--storage", default="mcap", choices=["mcap", "sqlite3"])
    parser.add_argument("-d", "--duration", type=float, default=None, help="seconds to record")
    args = parser.parse_args(argv)
    counts = record(args.topics or None, args.output, args.storage, args.duration)
    for topic, count in sorted(counts.items()):
        print(f"{topic}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
