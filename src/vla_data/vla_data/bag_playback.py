"""What a bag replay publishes, and when (pure: rosbags and numpy, no rclpy).

A replay plays a bag's camera images (sensor_msgs/Image, CompressedImage), the latched instruction,
the joint states and, when present, the sim's privileged state and episode events. Graph outputs in
the bag (/vla/action, /vla/observation/*, trajectories, /diagnostics) are not played: they are what
the replayed graph produces again, and /vla/action is the reference the report compares against.

Time: the graph runs on the /clock the player publishes, so every message gets a *play time* in the
time base of its header stamps. Bags recorded by ``ros2 bag record`` on a robot log wall time and
stamp with wall time; a bag recorded from the sim logs wall time but stamps with sim time (which
runs faster than the wall). When the bag has /clock, log time is mapped to clock time by linear
interpolation over the recorded clock messages; otherwise by the median offset between the camera
stamps and their log times. A stamped message is never played before its own stamp, so perception
never sees a frame from the future.

Bags from Humble, Jazzy and Kilted (MCAP or sqlite3) are read with rosbags' AnyReader; definitions
embedded in the bag win, and the typestore of the bag's distro fills in for bags without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.typesys import Stores, get_typestore

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STRING_TYPE = "std_msgs/msg/String"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"

# Non-image topics the player republishes when the bag has them, with the type each must have.
PLAYED_TOPICS: dict[str, str] = {
    "/vla/instruction": STRING_TYPE,
    "/wx250s/joint_states": JOINT_STATE_TYPE,
    "/sim/privileged_state": STRING_TYPE,
    "/vla/episode": STRING_TYPE,
}
# Images the graph itself publishes: replaying them would collide with perception's output.
OUTPUT_IMAGE_PREFIX = "/vla/observation/"
PLAYABLE_TYPES = (*IMAGE_TYPES, STRING_TYPE, JOINT_STATE_TYPE)

# rosbag2 writes `ros_distro` into metadata.yaml from Jazzy on; older bags are told apart by version.
DISTRO_STORES: dict[str, Stores] = {
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PlayTopic:
    """One topic the player republishes: read from ``source``, published on ``target``."""

    source: str
    target: str
    msgtype: str

    @property
    def is_image(self) -> bool:
        return self.msgtype in IMAGE_TYPES


@dataclass(frozen=True)
class PlayMessage:
    """One message to publish at ``play_ns`` (graph clock); ``message`` is a rosbags dataclass."""

    topic: PlayTopic
    log_ns: int
    play_ns: int
    message: Any


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    """``["OLD:=NEW", ...]`` -> {OLD: NEW}; both must be absolute topic names."""
    remaps: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition(":=")
        if not sep or not old.startswith("/") or not new.startswith("/") or " " in item:
            raise ValueError(f"remap '{item}': expected /OLD:=/NEW, e.g. /cam/color:=/camera/wrist/image_raw")
        if old in remaps and remaps[old] != new:
            raise ValueError(f"remap '{item}': topic '{old}' is remapped twice")
        remaps[old] = new
    return remaps


def guess_store(bag: PathLike) -> Stores:
    """The typestore of the distro that wrote ``bag``: metadata's ros_distro, else its version."""
    metadata = _read_metadata(Path(bag))
    distro = str(metadata.get("ros_distro", "")).lower()
    if distro in DISTRO_STORES:
        return DISTRO_STORES[distro]
    version = int(metadata.get("version", 9))
    # Humble writes version 5, Iron 6-8 without a distro name; later ones name themselves.
    return Stores.ROS2_HUMBLE if version <= 5 else Stores.ROS2_KILTED


def _read_metadata(bag: Path) -> dict[str, Any]:
    path = bag / "metadata.yaml"
    if not path.is_file():
        raise ValueError(f"bag '{bag}': no metadata.yaml (not a closed rosbag2 directory)")
    try:
        body = yaml.safe_load(path.read_text())
        return dict(body["rosbag2_bagfile_information"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bag '{bag}': metadata.yaml is not rosbag2 metadata ({exc})") from exc


def _storage_files(bag: Path) -> str:
    files = sorted(p.name for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    return ", ".join(files) or "no storage file"


class BagSource:
    """An opened bag: which topics to play and the time map, with errors that name the file.

    Use as a context manager; :meth:`messages` yields the played messages in play-time order.
    """

    def __init__(
        self,
        path: PathLike,
        remaps: Mapping[str, str] | None = None,
        store: Stores | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"bag '{self.path}' does not exist or is not a rosbag2 directory")
        self.store = store or guess_store(self.path)
        self.remaps = dict(remaps or {})
        try:
            self._reader = AnyReader([self.path], default_typestore=get_typestore(self.store))
            self._reader.open()
        except Exception as exc:  # rosbags raises several types for damaged files
            raise ValueError(
                f"bag '{self.path}' ({_storage_files(self.path)}) cannot be opened: {exc}"
            ) from exc
        try:
            self.topics = self._select_topics(self._reader.connections)
            self.time_map = self._build_time_map()
        except BaseException:
            self._reader.close()
            raise

    def _select_topics(self, connections: Sequence[Connection]) -> list[PlayTopic]:
        types: dict[str, str] = {}
        for connection in connections:
            types.setdefault(connection.topic, connection.msgtype)
        unknown = sorted(set(self.remaps) - set(types))
        if unknown:
            raise ValueError(f"bag '{self.path}': remapped topic(s) {unknown} are not in the bag")
        topics: list[PlayTopic] = []
        for topic, msgtype in sorted(types.items()):
            wanted_type = PLAYED_TOPICS.get(topic)
            is_camera = msgtype in IMAGE_TYPES and not topic.startswith(OUTPUT_IMAGE_PREFIX)
            if topic in self.remaps and msgtype not in PLAYABLE_TYPES:
                raise ValueError(
                    f"bag '{self.path}': topic '{topic}' has unknown message type '{msgtype}': the "
                    f"player cannot publish it; playable types: {', '.join(PLAYABLE_TYPES)}"
                )
            if wanted_type is not None and msgtype != wanted_type:
                raise ValueError(
                    f"bag '{self.path}': topic '{topic}' has message type '{msgtype}'; "
                    f"expected '{wanted_type}'"
                )
            if is_camera or wanted_type is not None or topic in self.remaps:
                self._check_known(topic, msgtype)
                topics.append(PlayTopic(topic, self.remaps.get(topic, topic), msgtype))
        if not any(t.is_image for t in topics):
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(types.items())) or "none"
            raise ValueError(
                f"bag '{self.path}' has no camera topic (sensor_msgs/msg/Image or CompressedImage) "
                f"to play; its topics: {listing}"
            )
        targets = [t.target for t in topics]
        clashes = sorted({t for t in targets if targets.count(t) > 1})
        if clashes:
            raise ValueError(f"bag '{self.path}': several topics would be played on {clashes}; fix --remap")
        return topics

    def _check_known(self, topic: str, msgtype: str) -> None:
        if msgtype not in self._reader.typestore.fielddefs:
            raise ValueError(
                f"bag '{self.path}': topic '{topic}' has unknown message type '{msgtype}' (not defined "
                f"in the bag nor in the {self.store.name} typestore)"
            )

    def _connections(self, topics: Sequence[str]) -> list[Connection]:
        return [c for c in self._reader.connections if c.topic in set(topics)]

    def _read(self, connections: Sequence[Connection]) -> Iterator[tuple[Connection, int, Any]]:
        if not connections:
            return
        try:
            for connection, log_ns, raw in self._reader.messages(connections=connections):
                yield connection, log_ns, self._reader.deserialize(raw, connection.msgtype)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(
                f"bag '{self.path}' ({_storage_files(self.path)}) is damaged or truncated: {exc}"
            ) from exc

    def _build_time_map(self) -> TimeMap:
        clock = self._connections([c.topic for c in self._reader.connections if c.msgtype == CLOCK_TYPE])
        pairs = [(log_ns, stamp_ns(msg.clock)) for _, log_ns, msg in self._read(clock)]
        if len(pairs) >= 2:
            return TimeMap.from_clock(pairs)
        images = self._connections([t.source for t in self.topics if t.is_image])
        offsets = []
        for _, log_ns, msg in self._read(images):
            stamp = stamp_ns(msg.header.stamp)
            if stamp:
                offsets.append(stamp - log_ns)
            if len(offsets) >= 200:
                break
        return TimeMap.from_offset(int(np.median(offsets)) if offsets else 0)

    def messages(self) -> Iterator[PlayMessage]:
        """The played messages in play-time order (stable for equal times)."""
        by_source = {t.source: t for t in self.topics}
        pending: list[PlayMessage] = []
        for connection, log_ns, msg in self._read(self._connections(list(by_source))):
            play_ns = self.time_map(log_ns)
            header = getattr(msg, "header", None)
            if header is not None:
                play_ns = max(play_ns, stamp_ns(header.stamp))
            pending.append(PlayMessage(by_source[connection.topic], log_ns, play_ns, msg))
        # Stamps can push a message past later ones; a stable sort keeps the bag's order otherwise.
        yield from sorted(pending, key=lambda m: m.play_ns)

    def reference_actions(self) -> list[tuple[int, str]]:
        """The bag's recorded /vla/action messages as (log time mapped to play time, JSON text)."""
        actions = self._connections(["/vla/action"])
        return [
            (self.time_map(log_ns), str(msg.data))
            for c, log_ns, msg in self._read(actions)
            if c.msgtype == STRING_TYPE
        ]

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> BagSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def stamp_ns(stamp: Any) -> int:
    """A builtin_interfaces/Time (rosbags or rclpy) in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True)
class TimeMap:
    """Bag log time -> graph clock time: piecewise linear over recorded /clock, or a fixed offset."""

    log_ns: tuple[int, ...] = ()
    clock_ns: tuple[int, ...] = ()
    offset_ns: int = 0

    @classmethod
    def from_clock(cls, pairs: Sequence[tuple[int, int]]) -> TimeMap:
        pairs = sorted(pairs)
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    @classmethod
    def from_offset(cls, offset_ns: int) -> TimeMap:
        return cls(offset_ns=offset_ns)

    def __call__(self, log_ns: int) -> int:
        if not self.log_ns:
            return int(log_ns + self.offset_ns)
        if log_ns <= self.log_ns[0]:
            return int(self.clock_ns[0] - (self.log_ns[0] - log_ns))
        if log_ns >= self.log_ns[-1]:
            return int(self.clock_ns[-1] + (log_ns - self.log_ns[-1]))
        return int(round(float(np.interp(log_ns, self.log_ns, self.clock_ns))))


def control_ticks(first_ns: int, last_ns: int, period_ns: int) -> list[int]:
    """Clock values one control period apart on the absolute grid, covering [first_ns, last_ns].

    Stepping the clock by exactly one period fires a sim-time timer of that period exactly once per
    step, whatever its phase; the grid is absolute so that two replays of a bag step identically.
    """
    if period_ns <= 0:
        raise ValueError(f"control period {period_ns} ns must be positive")
    start = (first_ns // period_ns) * period_ns
    count = -(-(last_ns - start) // period_ns) + 1
    return [start + k * period_ns for k in range(max(count, 1) + 1)]


@dataclass(frozen=True)
class PlaySettings:
    """How a replay plays its bag into the graph (the node that does it imports rclpy; this does not)."""

    control_hz: float  # the graph's control rate: the tick grid of --fast and the expected tick count
    fast: bool = False  # lockstep (one control period per graph answer) instead of the bag's own timing
    rate: float = 1.0  # playback speed factor when not fast
    seed: int | None = None  # base seed of the policy's episode resets; None keeps the bag's
    startup_timeout_s: float = 120.0  # for the graph to subscribe to every played topic
    action_timeout_s: float = 30.0  # --fast: for the policy's action after each observation

    def __post_init__(self) -> None:
        if not self.control_hz > 0:
            raise ValueError(f"control_hz {self.control_hz} must be positive")
        if not self.rate > 0:
            raise ValueError(f"rate {self.rate} must be positive")

    @property
    def period_ns(self) -> int:
        return int(round(1e9 / self.control_hz))
