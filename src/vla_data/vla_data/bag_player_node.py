"""The bag player: republishes a bag's cameras, instruction and joint states and drives /clock.

Two ways to play (the plan comes from the pure :mod:`vla_data.bag_playback`):

* ``play_realtime(rate)``: the bag's own timing scaled by ``rate``; /clock advances with the wall
  clock (every ``clock_period_s``) and each message goes out when the clock passes its play time.
* ``play_stepped()`` (``--fast``): lockstep with the graph. The clock advances one control period at a
  time on an absolute grid. Before a step, every non-camera message up to the new clock value is
  published; then the clock; then, of the camera frames up to it, only the set perception will use:
  the newest synchronised set, predicted with perception's own synchroniser (vla_perception.sync)
  over every frame played so far. Perception publishes a set on the frame that completes it, so
  the observation is made at the tick's clock, as live; frames no set uses are never needed by
  perception and are not played (with two frames of a camera in flight it could complete an older
  set first). The player then waits for the tick's outcome: perception's observation and then the
  policy's /vla/action carrying that observation's stamp. Only then does the clock move on, so no
  camera set is skipped however slow inference is, and two replays feed the policy identical
  inputs. A tick without a new set waits only ``idle_tick_s``; one with a set that yields nothing
  ends after ``observation_timeout_s``.

  Start-up handshake: the first tick's latched messages (instruction, episode start) are
  published and acknowledged by every matched reader before the first /clock. The replay waits
  until every node that reads a played topic has matched the player (replay_node._graph_ready),
  so an acknowledgement means each node holds them and handles them before that clock's tick; it
  also means the reader's participant has matched the player's earlier-created publishers, the
  cameras (DDS announces a participant's endpoints in order), so the first camera set is not lost
  to a best-effort reader that has not matched yet. Without it, on a loaded machine, the
  instruction or the episode start could reach perception after the first camera set: that tick
  gave no observation and the replay was one action short. Later ticks are not acknowledged (an
  acknowledgement waits for a heartbeat, about 3 s).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.publisher import Publisher
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from vla_common.action_message import MAX_ACTION_BYTES
from vla_common.inbound import decode_episode_event, load_bounded_json, require_stamp_ns
from vla_common.ros.node_runtime import ns_to_stamp
from vla_common.ros.qos import EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_data.bag_playback import PlayMessage, PlayTopic, stamp_ns
from vla_perception.sync import ApproximateSync

DELIVERY_TIMEOUT_S = 5.0  # for every reader to acknowledge the first tick's latched messages
# What every node must hold before the first tick: the instruction and the episode start.
LATCHED_TARGETS = ("/vla/instruction", "/vla/episode")

ROS_TYPES: dict[str, type] = {
    "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage,
    "sensor_msgs/msg/JointState": JointState,
    "std_msgs/msg/String": String,
}


def to_ros_message(value: Any, ros_type: type) -> Any:
    """A rosbags message as an rclpy message of ``ros_type``, field by field.

    Fields the other distro lacks keep their defaults, so a Humble or Jazzy message fills a Kilted
    one of the same name.
    """
    msg = ros_type()
    for name, type_name in msg.get_fields_and_field_types().items():
        if not hasattr(value, name):
            continue
        item = getattr(value, name)
        current = getattr(msg, name)
        if hasattr(current, "get_fields_and_field_types"):
            setattr(msg, name, to_ros_message(item, type(current)))
        elif isinstance(item, np.ndarray):
            setattr(
                msg, name, item.tobytes() if "uint8" in type_name or "octet" in type_name else item.tolist()
            )
        else:
            setattr(msg, name, item)
    return msg


@dataclass
class PlayerStats:
    """Counters the replay report is built from."""

    frames_published: dict[str, int] = field(default_factory=dict)
    frame_stamps: set[int] = field(default_factory=set)
    ticks: int = 0
    observation_stamps: list[int] = field(default_factory=list)
    action_latency_ms: list[float] = field(default_factory=list)
    # What action_latency_ms measures, by name (replay_report.LATENCY_KINDS): lockstep times from the
    # tick's /clock to the action, real-time playback from the observation's frame stamp to the action.
    action_latency_kind: str = "tick_to_action"
    timeouts: int = 0


class BagPlayerNode(Node):
    """Publishes ``topics`` and /clock; listens to the graph's observations and actions."""

    def __init__(
        self,
        topics: Sequence[PlayTopic],
        observation_topic: str = "/vla/observation/primary",
        *,
        episode_seed: int | None = None,
        node_name: str = "bag_player",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self.stats = PlayerStats()
        self._episode_seed = episode_seed
        self._play_pubs: dict[str, Publisher] = {}
        self._ros_types: dict[str, type] = {}
        # Cameras first: DDS announces them before the latched topics, whose acknowledgement is the
        # start-up handshake (module docstring).
        for topic in sorted(topics, key=lambda t: not t.is_image):
            ros_type = ROS_TYPES[topic.msgtype]
            qos = {"/vla/instruction": LATCHED_QOS, "/vla/episode": EVENTS_QOS}.get(
                topic.target, RELIABLE_QOS
            )
            self._play_pubs[topic.target] = self.create_publisher(ros_type, topic.target, qos)
            self._ros_types[topic.target] = ros_type
        if "/vla/episode" not in self._play_pubs:
            self._play_pubs["/vla/episode"] = self.create_publisher(String, "/vla/episode", EVENTS_QOS)
        self.clock_pub = self.create_publisher(Clock, "/clock", RELIABLE_QOS)
        self._condition = threading.Condition()
        self._observations: list[int] = []
        self._actions: dict[int, float] = {}  # observation stamp -> wall time the action arrived
        self.action_texts: list[str] = []
        self._clock_ns = 0
        self.create_subscription(Image, observation_topic, self._on_observation, RELIABLE_QOS)
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS)

    # --- the graph's answers -------------------------------------------------------------------
    def _on_observation(self, msg: Image) -> None:
        with self._condition:
            self._observations.append(stamp_ns(msg.header.stamp))
            self._condition.notify_all()

    def _on_action(self, msg: String) -> None:
        try:
            body = load_bounded_json(msg.data, what="/vla/action", max_bytes=MAX_ACTION_BYTES)
            stamp = require_stamp_ns(body if isinstance(body, dict) else {}, "stamp_ns", "/vla/action")
        except ValueError as exc:
            self.get_logger().warning(f"ignoring a malformed /vla/action: {exc}")
            return
        with self._condition:
            self.action_texts.append(msg.data)
            self._actions[stamp] = time.monotonic()
            self._condition.notify_all()

    def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self._condition:
            return self._condition.wait_for(predicate, timeout=timeout_s)

    # --- publishing ----------------------------------------------------------------------------
    def publish_clock(self, clock_ns: int) -> None:
        self._clock_ns = clock_ns
        self.clock_pub.publish(Clock(clock=ns_to_stamp(clock_ns)))

    def publish_message(self, item: PlayMessage) -> None:
        target = item.topic.target
        msg = to_ros_message(item.message, self._ros_types[target])
        if target == "/vla/episode" and self._episode_seed is not None:
            msg.data = self._reseed(msg.data)
        self._play_pubs[target].publish(msg)
        if item.topic.is_image:
            self.stats.frames_published[target] = self.stats.frames_published.get(target, 0) + 1
            self.stats.frame_stamps.add(stamp_ns(item.message.header.stamp))

    def _reseed(self, text: str) -> str:
        """The bag's episode event with the replay's seed; a malformed one is played as it is."""
        try:
            event = decode_episode_event(text)
        except ValueError as exc:
            self.get_logger().warning(f"the bag's /vla/episode message is played unchanged: {exc}")
            return text
        body = dict(event.body)
        if event.event == "start":
            body["seed"] = int(self._episode_seed or 0) + int(body.get("episode") or 0)
        return json.dumps(body)

    def publish_episode_start(self, stamp: int) -> None:
        """A synthetic episode start (for bags without /vla/episode): resets the policy with the seed."""
        event = {"event": "start", "episode": 0, "seed": int(self._episode_seed or 0), "stamp_ns": int(stamp)}
        self._play_pubs["/vla/episode"].publish(String(data=json.dumps(event)))
        self.await_delivery(["/vla/episode"])

    def await_delivery(self, targets: Sequence[str], timeout_s: float = DELIVERY_TIMEOUT_S) -> bool:
        """Block until every matched reliable reader of ``targets`` acknowledged what was published.

        An acknowledgement means the sample is in the reader's queue, so a node handles it before the
        /clock published next (its executor takes ready messages before the timer that clock fires).
        Best-effort readers (cameras) are not waited for. False (and a warning) after ``timeout_s``.
        """
        timeout = Duration(nanoseconds=int(timeout_s * 1e9))
        late = [t for t in dict.fromkeys(targets) if not self._play_pubs[t].wait_for_all_acked(timeout)]
        if late:
            self.get_logger().warning(f"no acknowledgement from every reader of {late} within {timeout_s} s")
        return not late

    def subscriber_counts(self) -> dict[str, int]:
        counts = {topic: pub.get_subscription_count() for topic, pub in self._play_pubs.items()}
        counts["/clock"] = self.clock_pub.get_subscription_count()
        return counts

    def action_publishers(self) -> int:
        return self.count_publishers("/vla/action")

    # --- playing -------------------------------------------------------------------------------
    def play_stepped(
        self,
        messages: Sequence[PlayMessage],
        ticks: Sequence[int],
        *,
        observation_timeout_s: float = 0.5,
        action_timeout_s: float = 30.0,
        sync_slop_ns: int = 50_000_000,
        idle_tick_s: float = 0.01,
        min_set_gap_ns: int = 0,
        poll_failure: Callable[[], str | None] = lambda: None,
    ) -> float:
        """Lockstep playback (see the module docstring); returns the wall seconds from the first tick.

        ``min_set_gap_ns``: a camera set stamped less than this after the last one played is not
        played (the policy starts no inference on it: vla_policy.inference_schedule.replan_min_gap_s),
        so no tick waits for an action that cannot come."""
        index = 0
        cameras = sorted({m.topic.target for m in messages if m.topic.is_image})
        predictor = ApproximateSync(cameras, sync_slop_ns, queue_size=5) if cameras else None
        first_tick = time.monotonic()
        last_set_ns = -(2**62)
        for k, tick_ns in enumerate(ticks):
            published: list[str] = []
            while index < len(messages) and messages[index].play_ns <= tick_ns:
                item = messages[index]
                if item.topic.is_image:  # played below if it belongs to the tick's camera set
                    predictor.add(item.topic.target, stamp_ns(item.message.header.stamp), item)
                else:
                    self.publish_message(item)
                    published.append(item.topic.target)
                index += 1
            camera_set = predictor.pop_newest_set() if predictor is not None else None
            if camera_set is not None and camera_set.stamp_ns - last_set_ns < min_set_gap_ns:
                camera_set = None  # too close to the last set for the policy to replan on it
            if camera_set is not None:
                last_set_ns = camera_set.stamp_ns
            if k == 0:  # the start-up handshake (module docstring)
                self.await_delivery([t for t in published if t in LATCHED_TARGETS])
                first_tick = time.monotonic()
            with self._condition:
                seen = len(self._observations)
            started = time.monotonic()
            self.publish_clock(tick_ns)
            for _, frame in camera_set.frames.values() if camera_set is not None else ():
                self.publish_message(frame)  # after the clock: its last frame completes the set
            self.stats.ticks += 1
            if camera_set is None:
                time.sleep(idle_tick_s)  # no new synchronised set exists: perception will publish nothing
                continue
            if not self._wait(lambda s=seen: len(self._observations) > s, observation_timeout_s):
                continue
            with self._condition:
                stamp = self._observations[seen]
            self.stats.observation_stamps.append(stamp)
            if self._wait(lambda s=stamp: s in self._actions, action_timeout_s):
                self.stats.action_latency_ms.append((self._actions[stamp] - started) * 1e3)
            else:
                self.stats.timeouts += 1
                self.get_logger().warning(
                    f"no /vla/action for the observation at {stamp} ns within {action_timeout_s} s; going on"
                )
            failure = poll_failure()
            if failure:
                raise RuntimeError(failure)
        return time.monotonic() - first_tick

    def is_image_target(self, target: str) -> bool:
        return self._ros_types.get(target) in (Image, CompressedImage)

    def play_realtime(
        self,
        messages: Sequence[PlayMessage],
        start_ns: int,
        end_ns: int,
        *,
        rate: float = 1.0,
        control_hz: float,
        clock_period_s: float = 0.005,
        poll_failure: Callable[[], str | None] = lambda: None,
    ) -> None:
        """The bag's timing scaled by ``rate``; the clock follows the wall clock.

        ``control_hz`` is the graph's control rate (the one every launched node runs at): it turns the
        played span into the expected tick count of the report.
        """
        if rate <= 0:
            raise ValueError(f"rate {rate} must be positive")
        wall_start = time.monotonic()
        index = 0
        next_poll = wall_start
        while True:
            now = time.monotonic()
            clock_ns = start_ns + int((now - wall_start) * rate * 1e9)
            while index < len(messages) and messages[index].play_ns <= clock_ns:
                self.publish_message(messages[index])
                index += 1
            self.publish_clock(clock_ns)
            if clock_ns >= end_ns:
                break
            if now >= next_poll:
                next_poll = now + 0.2
                failure = poll_failure()
                if failure:
                    raise RuntimeError(failure)
            time.sleep(clock_period_s)
        with self._condition:
            observations = list(self._observations)
            self.stats.observation_stamps = observations
            arrivals = dict(self._actions)
        # Graph time from the observation's stamp to the action, in wall milliseconds.
        self.stats.ticks = int((end_ns - start_ns) * 1e-9 * control_hz)
        self.stats.action_latency_kind = "frame_to_action"
        self.stats.action_latency_ms = [
            ((arrivals[s] - wall_start) * rate * 1e9 + start_ns - s) * 1e-6 / rate
            for s in observations
            if s in arrivals
        ]
