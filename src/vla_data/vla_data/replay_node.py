"""The in-process ROS side of ``vla-stack replay``: the bag player and a recorder on one executor.

:mod:`vla_data.replay` launches the graph and writes the report; this module (the one that imports
rclpy) waits until the graph has subscribed to every played topic, plays the bag into it, lockstep
or at a rate (:class:`vla_data.bag_playback.PlaySettings`), and records what the graph publishes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.logging import LoggingSeverity
from rclpy.node import Node

from vla_data.bag_playback import PlayMessage, PlaySettings, PlayTopic
from vla_data.bag_player_node import BagPlayerNode
from vla_data.bag_recorder_node import BagRecorderNode
from vla_data.replay_report import PlaybackStats
from vla_data.stop_signals import Interrupted, StopSignals
from vla_policy.inference_schedule import replan_min_gap_s

RECORDED_OUTPUTS = (
    "/vla/action",
    "/wx250s/arm_controller/joint_trajectory",
    "/wx250s/gripper_controller/joint_trajectory",
    "/diagnostics",
)
DRAIN_S = 0.5  # after the last tick, for the last action and diagnostics to reach the recorder


@dataclass(frozen=True)
class PlayOutcome:
    """What the graph answered: its actions, the player's counters and why it stopped early, if it did."""

    action_texts: tuple[str, ...]
    stats: PlaybackStats
    wall_s: float  # wall time of the playback itself; 0 when the graph never came up
    failure: str | None


class _BackgroundExecutor:
    """A private rclpy context whose executor spins on a daemon thread until :meth:`close`."""

    def __init__(self) -> None:
        self.context = Context()
        # args=[]: never this process's sys.argv. The replay's --remap rules are applied by the
        # player itself; rcl reading them again would warn and remap the player's own publishers.
        rclpy.init(args=[], context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._spinning = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="replay-executor", daemon=True)

    def start(self, *nodes: Node) -> None:
        for node in nodes:
            self.executor.add_node(node)
        self._spinning.set()
        self._thread.start()

    def _spin(self) -> None:
        while self._spinning.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self, *nodes_to_destroy: Node | None) -> None:
        """Stop spinning, destroy ``nodes_to_destroy`` (a recorder closes its bag), shut rclpy down."""
        self._spinning.clear()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for node in nodes_to_destroy:
            if node is not None:
                node.destroy_node()
        self.executor.shutdown()
        rclpy.try_shutdown(context=self.context)


def play_through_graph(
    topics: Sequence[PlayTopic],
    messages: Sequence[PlayMessage],
    ticks: Sequence[int],
    settings: PlaySettings,
    *,
    bag_dir: Path,
    nodes: int,
    readers: Mapping[str, int],
    poll_failure: Callable[[], str | None],
    stop: StopSignals | None = None,
) -> PlayOutcome:
    """Play ``messages`` into a running graph of ``nodes`` nodes, recording its outputs into ``bag_dir``.

    ``readers`` says how many of the graph's nodes read each played topic; the playback starts
    only when every one of them has matched the player (see :func:`_graph_ready`).

    ``poll_failure`` reports a node that died (the launcher's poll); the playback stops on it. A stop
    signal (``stop``) ends the waiting and the playback as a failure; the recorder is closed (its
    bag finished with metadata.yaml) whatever happens.
    """
    stop = stop or StopSignals()
    session = _BackgroundExecutor()
    player = recorder = None
    wall_s, failure = 0.0, None
    try:
        player = BagPlayerNode(topics, episode_seed=settings.seed, context=session.context)
        recorder = BagRecorderNode(bag_dir, topics=RECORDED_OUTPUTS, context=session.context)
        recorder.get_logger().set_level(LoggingSeverity.WARN)
        session.start(player, recorder)
        start_ns = ticks[0] - settings.period_ns
        with stop.armed():
            failure = _wait_for_graph(
                player, recorder, start_ns, settings.startup_timeout_s, nodes, readers, poll_failure
            )
            if failure is None:
                wall_s, failure = _play(player, topics, messages, ticks, start_ns, settings, poll_failure)
    except Interrupted as exc:
        failure = str(exc)
    finally:
        session.close(recorder)
    return PlayOutcome(tuple(player.action_texts), _stats(player, topics), wall_s, failure)


def _graph_ready(
    player: BagPlayerNode, recorder: BagRecorderNode, nodes: int, readers: Mapping[str, int]
) -> bool:
    """Every node listens: each played topic has matched its ``readers`` (at least one per camera).

    Counting only "some reader" per topic let the first tick race discovery: the latched instruction
    or the episode start reached perception after the first camera set, so that set gave no
    observation (one action short of the golden replay, on a loaded machine). With every reader
    matched, the player's acknowledged delivery (publish_tick) holds for each of them.
    """
    counts = player.subscriber_counts()
    images_fed = all(n > 0 for t, n in counts.items() if player.is_image_target(t))
    readers_matched = all(counts[t] >= n for t, n in readers.items() if t in counts)
    return (
        images_fed
        and readers_matched
        and counts["/clock"] >= nodes
        and player.action_publishers() > 0
        and "/vla/action" in recorder.subscribed_topics()
    )


def _wait_for_graph(
    player: BagPlayerNode,
    recorder: BagRecorderNode,
    start_ns: int,
    timeout_s: float,
    nodes: int,
    readers: Mapping[str, int],
    poll_failure: Callable[[], str | None],
) -> str | None:
    """Hold the clock at ``start_ns`` until every node listens; a failure message otherwise."""
    deadline = time.monotonic() + timeout_s
    while not _graph_ready(player, recorder, nodes, readers):
        failure = poll_failure()
        if failure:
            return failure
        if time.monotonic() > deadline:
            return f"the graph was not up within {timeout_s:.0f} s: {player.subscriber_counts()}"
        player.publish_clock(start_ns)
        time.sleep(0.1)
    return None


def _play(
    player: BagPlayerNode,
    topics: Sequence[PlayTopic],
    messages: Sequence[PlayMessage],
    ticks: Sequence[int],
    start_ns: int,
    settings: PlaySettings,
    poll_failure: Callable[[], str | None],
) -> tuple[float, str | None]:
    """Play the bag; returns (wall seconds of the playback, failure or None)."""
    player.publish_clock(start_ns)
    if not any(t.target == "/vla/episode" for t in topics):
        player.publish_episode_start(start_ns)
    failure = wall_s = None
    play_start = time.monotonic()
    try:
        if settings.fast:  # timed from its first tick: the start-up handshake is not playback
            wall_s = player.play_stepped(
                messages,
                ticks,
                action_timeout_s=settings.action_timeout_s,
                min_set_gap_ns=int(replan_min_gap_s(1.0 / settings.control_hz) * 1e9),
                poll_failure=poll_failure,
            )
        else:
            player.play_realtime(
                messages,
                start_ns,
                ticks[-1],
                rate=settings.rate,
                control_hz=settings.control_hz,
                poll_failure=poll_failure,
            )
    except RuntimeError as exc:
        failure = str(exc)
    if wall_s is None:
        wall_s = time.monotonic() - play_start
    time.sleep(DRAIN_S)
    return wall_s, failure


def _stats(player: BagPlayerNode, topics: Sequence[PlayTopic]) -> PlaybackStats:
    return PlaybackStats(
        frames_published=player.stats.frames_published,
        frame_stamps=frozenset(player.stats.frame_stamps),
        ticks=player.stats.ticks,
        observation_stamps=tuple(player.stats.observation_stamps),
        action_latency_ms=tuple(player.stats.action_latency_ms),
        cameras=sum(t.is_image for t in topics),
        action_latency_kind=player.stats.action_latency_kind,
    )
