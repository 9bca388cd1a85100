"""Shared node plumbing: diagnostics, stamps and main() (parameters: node_parameters.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from vla_common.latency import StageTimer

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class StageDiagnostics:
    """Publishes a node's stage latencies, counters, notes and last problem on /diagnostics at 1 Hz.

    Counters go out as ``count.<key>``; notes (e.g. ``last_rejected.<kind>``: the last reason a
    message of that kind was dropped) under their own key, so a reason stays readable after another
    problem has replaced the status message.
    """

    def __init__(self, node: Node, timer: StageTimer, period_s: float = 1.0) -> None:
        self._node = node
        self._timer = timer
        self.counters: dict[str, int] = {}
        self.notes: dict[str, str] = {}
        self.problem: tuple[int, str] = (OK, "ok")
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        node.create_timer(period_s, self.publish)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def note(self, key: str, text: str) -> None:
        """Publish ``text`` under ``key`` (the newest text per key)."""
        self.notes[key] = text

    def report(self, level: int, message: str, log: bool = True) -> None:
        """Set the current status; a changed WARN/ERROR is also logged once (``log=False``: the
        caller logs it itself, e.g. throttled)."""
        if log and (level, message) != self.problem and level != OK:
            (self._node.get_logger().warn if level == WARN else self._node.get_logger().error)(message)
        self.problem = (level, message)

    def publish(self) -> None:
        status = DiagnosticStatus(
            level=self.problem[0],
            name=f"vla_stack/{self._node.get_name()}",
            message=self.problem[1],
            hardware_id="vla_stack",
        )
        status.values = [KeyValue(key="latency_ms", value=json.dumps(self._timer.summary()))]
        status.values += [KeyValue(key=f"count.{k}", value=str(v)) for k, v in sorted(self.counters.items())]
        status.values += [KeyValue(key=k, value=v) for k, v in sorted(self.notes.items())]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(array)


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None, threads: int = 1) -> int:
    """Init, spin a node, always shut down; the console entry of each node.

    ``threads=1`` spins a SingleThreadedExecutor: rclpy's MultiThreadedExecutor costs a lot of CPU
    per callback, so only a node that must run a slow callback beside the others (the policy's
    inference) asks for more.
    """
    rclpy.init(args=list(args) if args is not None else sys.argv)
    node = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))
