"""Helpers for tests that run the real nodes as processes over DDS."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vla_bringup.launcher import GraphLauncher
from vla_bringup.profiles import NodeSpec
from vla_bringup.ros_env import loopback_environment


def start_graph(nodes: list[NodeSpec], tmp_path: Path, overrides: dict | None = None) -> GraphLauncher:
    """Start nodes as processes with the loopback profile and this test worker's domain."""
    env = loopback_environment(domain_id=int(os.environ["ROS_DOMAIN_ID"]), log_dir=str(tmp_path / "ros_logs"))
    launcher = GraphLauncher(nodes, env, overrides=overrides or {}, log_dir=tmp_path / "logs")
    launcher.start()
    return launcher


@contextlib.contextmanager
def spinning(node_factory) -> Iterator:
    """rclpy initialised, ``node_factory()``'s node spun on a background thread while the block runs;
    afterwards the thread stops, the node is destroyed and rclpy shut down."""
    import rclpy  # lazy: only the ROS tests that spin a probe need it

    rclpy.init()
    node = node_factory()
    stop = threading.Event()
    spinner = threading.Thread(
        target=lambda: [rclpy.spin_once(node, timeout_sec=0.05) for _ in iter(stop.is_set, True)]
    )
    spinner.start()
    try:
        yield node
    finally:
        stop.set()
        spinner.join()
        node.destroy_node()
        rclpy.try_shutdown()


@contextlib.contextmanager
def perception_with_probe(tmp_path: Path, overrides: dict, probe_factory) -> Iterator:
    """The perception node alone (``overrides`` for it) and ``probe_factory()``'s node spinning, which
    must have an ``instruction`` publisher: the instruction is published before the block runs.
    Yields (probe, launcher)."""
    from std_msgs.msg import String  # lazy: only the ROS tests that spin a probe need it

    spec = NodeSpec("perception", "vla_perception.perception_node", ("perception",))
    launcher = start_graph([spec], tmp_path, overrides)
    try:
        with spinning(probe_factory) as node:
            node.instruction.publish(String(data="pick up the cube"))
            yield node, launcher
    finally:
        launcher.stop()


def udp_bindings(pid: int) -> list[tuple[str, int]]:
    """Local (ip, port) of every UDP socket the process holds, from /proc (IPv4 only)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if fields[9] not in inodes:
                continue
            ip_hex, port_hex = fields[1].split(":")
            if table == "udp":
                ip = ".".join(str(int(ip_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "::1" if ip_hex == "00000000000000000000000001000000" else f"v6:{ip_hex}"
            out.append((ip, int(port_hex, 16)))
    return out


def wait_until(predicate, timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def assert_joint_speed_within(stamps_s, joints, limit_rad_s, slack_s: float = 0.04) -> None:
    """Streamed targets never move faster than the limit, judged from their stamps.

    Between any two targets (neighbours, and 10 apart) the change is at most limit x (elapsed +
    slack): the slack absorbs scheduling jitter of the 50 Hz servo timer (a late tick publishes the
    waypoint that is due, so stamps are not exactly 20 ms apart).
    """
    import numpy as np

    stamps = np.asarray(stamps_s, dtype=float)
    joints = np.asarray(joints, dtype=float)
    for gap in (1, 10):
        if len(stamps) <= gap:
            continue
        change = np.abs(joints[gap:] - joints[:-gap])
        allowed = np.asarray(limit_rad_s) * ((stamps[gap:] - stamps[:-gap])[:, None] + slack_s)
        worst = int(np.argmax((change - allowed).max(axis=1)))
        assert np.all(change <= allowed + 1e-9), (
            f"targets {worst}->{worst + gap}: change {change[worst]} "
            f"in {stamps[worst + gap] - stamps[worst]:.3f} s"
        )
