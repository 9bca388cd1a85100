"""Pass 1 of the dataset export: read a bag's non-image topics and align them into steps (pure).

A control step is one ``/vla/action`` message: the chunk's ``stamp_ns`` is the observation time the
policy acted on, and chunk row 0 is the action executed for the step that starts then. Each step
gets proprio (the positions of ``proprio_joints`` from the newest joint state at or before the
step), the instruction in force (the last ``/vla/instruction`` received before the action) and its
episode (from the ``/vla/episode`` start/end events; a bag without that topic is one episode).
The camera frames are given to the steps in pass 2 (:mod:`vla_data.dataset_write`).

Header stamps and the action's ``stamp_ns`` share one clock (sim time in the sim, wall time on the
robot); topics without a header (instruction, episode events) are placed by the bag's receive time.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from vla_common.action_message import ActionChunk, decode_action_chunk
from vla_common.robot import PROPRIO_JOINT_NAMES
from vla_data.bag_io import iter_messages

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
_CAMERA_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class ExportOptions:
    """Which topics to read and how to cut and store the samples."""

    camera_topics: Mapping[str, str] | None = None  # camera name -> topic; None: image topics under /camera/
    action_topic: str = "/vla/action"
    joint_states_topic: str = "/wx250s/joint_states"
    instruction_topic: str = "/vla/instruction"
    episode_topic: str = "/vla/episode"
    proprio_joints: tuple[str, ...] = PROPRIO_JOINT_NAMES  # the WidowX arm joints, then the driven finger
    max_age_s: float = 1.0  # a frame or joint state older than this at its step drops the step
    image_size: tuple[int, int] | None = None  # (height, width) to resize every frame to; None keeps it
    compress: bool = True  # np.savez_compressed (zlib) instead of np.savez

    def __post_init__(self) -> None:
        for name in self.camera_topics or {}:
            if not _CAMERA_NAME_RE.match(name):
                raise ValueError(f"camera name {name!r} must be letters, digits and '_' (an array name)")
        if not self.proprio_joints:
            raise ValueError("proprio_joints is empty; name at least one joint")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s {self.max_age_s} must be positive")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"image_size {self.image_size!r} must be (height, width), both at least 1")


@dataclass
class ExportReport:
    """What an export wrote: episode and sample counts and the steps it dropped, by reason."""

    output_dir: Path
    episodes: int = 0
    samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class Step:
    """One control step: the executed action and what the robot knew when the policy saw it."""

    stamp_ns: int
    action: np.ndarray
    proprio: np.ndarray
    proprio_stamp_ns: int
    instruction: str


@dataclass
class Episode:
    """The steps of one episode of one bag, with what its start and end events said."""

    source_bag: str
    info: dict[str, Any]  # source episode index, seed, success, ... from the events
    steps: list[Step] = field(default_factory=list)


@dataclass
class BagPlan:
    """A bag after pass 1: its cameras, its episodes with their steps, its one action space."""

    cameras: dict[str, tuple[str, str]]  # name -> (topic, msgtype)
    episodes: list[Episode]
    action_space: dict[str, Any]  # name, dims, step_dt_s, source_kind


@dataclass
class BagStreams:
    """The non-image topics of a bag, as read (joint states sorted by header stamp)."""

    actions: list[tuple[int, ActionChunk]]  # (receive ns, chunk)
    joint_ns: np.ndarray  # header stamps, sorted
    joint_positions: np.ndarray  # (states, proprio joints), in joint_ns order
    instruction_ns: list[int]  # receive times of the instructions
    instructions: list[str]
    events: list[tuple[int, dict]]  # (receive ns, episode event)


def topic_table(bag: Path) -> dict[str, tuple[str, int]]:
    """topic -> (msgtype, message count) from the bag's metadata."""
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"bag '{bag}' has no metadata.yaml (not a closed rosbag2 directory)")
    with AnyReader([bag]) as reader:
        table: dict[str, tuple[str, int]] = {}
        for connection in reader.connections:
            count = table.get(connection.topic, (connection.msgtype, 0))[1] + connection.msgcount
            table[connection.topic] = (connection.msgtype, count)
        return table


def require_topic(bag: Path, table: Mapping[str, tuple[str, int]], topic: str, what: str) -> None:
    if topic not in table:
        raise ValueError(f"bag '{bag}': {what} topic '{topic}' is missing; topics: {sorted(table)}")
    if table[topic][1] == 0:
        raise ValueError(f"bag '{bag}': {what} topic '{topic}' has no messages")


def find_cameras(
    bag: Path, table: Mapping[str, tuple[str, int]], options: ExportOptions
) -> dict[str, tuple[str, str]]:
    """Camera name -> (topic, msgtype): the named ones, or every image topic under /camera/."""
    if options.camera_topics:
        cameras = {}
        for name, topic in options.camera_topics.items():
            require_topic(bag, table, topic, f"camera '{name}'")
            if table[topic][0] not in IMAGE_TYPES:
                raise ValueError(f"bag '{bag}': camera '{name}' topic '{topic}' has type '{table[topic][0]}'")
            cameras[name] = (topic, table[topic][0])
        return cameras
    cameras = {}
    for topic, (msgtype, count) in sorted(table.items()):
        parts = topic.split("/")
        if msgtype not in IMAGE_TYPES or len(parts) < 3 or parts[1] != "camera" or count == 0:
            continue
        name = re.sub(r"\W", "_", parts[2])
        if name in cameras:
            raise ValueError(
                f"bag '{bag}': topics '{cameras[name][0]}' and '{topic}' both map to camera '{name}'; "
                "name the cameras explicitly (camera_topics / --camera NAME=TOPIC)"
            )
        cameras[name] = (topic, msgtype)
    if not cameras:
        images = sorted(t for t, (m, _) in table.items() if m in IMAGE_TYPES)
        raise ValueError(
            f"bag '{bag}': no camera topic (sensor_msgs Image or CompressedImage under /camera/) with "
            f"messages; image topics in the bag: {images}; name them with camera_topics / --camera"
        )
    return cameras


def header_ns(msg: Any, fallback_ns: int) -> int:
    """The message's header stamp in ns, or ``fallback_ns`` when it is unset (zero)."""
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return stamp_ns if stamp_ns > 0 else fallback_ns


def episode_intervals(
    bag: Path, events: list[tuple[int, dict]], has_episode_topic: bool
) -> list[tuple[int, float, dict[str, Any]]]:
    """(start receive time, end receive time, info) per episode, from start/end events."""
    if not has_episode_topic:
        return [(-1, float("inf"), {"source_episode": None, "complete": None})]
    intervals: list[tuple[int, float, dict[str, Any]]] = []
    current: tuple[int, dict[str, Any]] | None = None
    for bag_ns, event in events:
        kind = event.get("event")
        if kind == "start":
            if current is not None:  # a start without an end: the previous episode was cut short
                intervals.append((current[0], bag_ns, {**current[1], "complete": False}))
            info = {k: event.get(k) for k in ("seed", "family", "instruction")}
            info.update(source_episode=event.get("episode"), start_stamp_ns=event.get("stamp_ns"))
            current = (bag_ns, info)
        elif kind == "end" and current is not None:
            outcome = {k: event.get(k) for k in ("success", "steps", "duration_s")}
            intervals.append((current[0], bag_ns, {**current[1], **outcome, "complete": True}))
            current = None
    if current is not None:
        intervals.append((current[0], float("inf"), {**current[1], "complete": False}))
    if not intervals:
        raise ValueError(f"bag '{bag}': no episode start event on the episode topic")
    return intervals


def read_streams(bag: Path, options: ExportOptions, table: Mapping[str, tuple[str, int]]) -> BagStreams:
    """Actions, joint states (as proprio), instructions and episode events of ``bag``."""
    wanted = [options.action_topic, options.joint_states_topic]
    wanted += [t for t in (options.instruction_topic, options.episode_topic) if t in table]
    streams = BagStreams([], np.empty(0, np.int64), np.empty((0, len(options.proprio_joints))), [], [], [])
    joint_stamps: list[int] = []
    joint_positions: list[np.ndarray] = []
    for topic, _, bag_ns, msg in iter_messages(bag, wanted):
        if topic == options.action_topic:
            try:
                streams.actions.append((bag_ns, decode_action_chunk(msg.data)))
            except ValueError as error:
                raise ValueError(f"bag '{bag}': {topic} message at {bag_ns} ns: {error}") from None
        elif topic == options.joint_states_topic:
            joint_stamps.append(header_ns(msg, bag_ns))
            joint_positions.append(_proprio(bag, topic, msg, options.proprio_joints))
        elif topic == options.instruction_topic:
            streams.instruction_ns.append(bag_ns)
            streams.instructions.append(str(msg.data))
        else:
            try:
                event = json.loads(msg.data)
            except json.JSONDecodeError:
                continue  # not an event this exporter understands
            if isinstance(event, dict):
                streams.events.append((bag_ns, event))
    order = np.argsort(np.asarray(joint_stamps, dtype=np.int64), kind="stable")
    streams.joint_ns = np.asarray(joint_stamps, dtype=np.int64)[order]
    streams.joint_positions = np.stack(joint_positions)[order]
    return streams


def _proprio(bag: Path, topic: str, msg: Any, joints: Sequence[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [j for j in joints if j not in index]
    if missing:
        raise ValueError(f"bag '{bag}': {topic} lacks joints {missing}; it has {list(msg.name)}")
    return np.asarray(msg.position, dtype=np.float64)[[index[j] for j in joints]]


def plan_bag(bag: Path, options: ExportOptions, report: ExportReport) -> BagPlan:
    """Pass 1: everything but the images. Decides the steps and fills in action, proprio, instruction."""
    table = topic_table(bag)
    require_topic(bag, table, options.action_topic, "action")
    require_topic(bag, table, options.joint_states_topic, "joint states")
    cameras = find_cameras(bag, table, options)
    streams = read_streams(bag, options, table)
    intervals = episode_intervals(bag, streams.events, options.episode_topic in table)
    episodes = [Episode(str(bag), info) for _, _, info in intervals]
    space = action_space_of(bag, streams.actions)
    max_age_ns = int(options.max_age_s * 1e9)
    for bag_ns, chunk in streams.actions:
        slot = next((i for i, (start, end, _) in enumerate(intervals) if start <= bag_ns < end), None)
        if slot is None:
            report.dropped["action outside an episode"] += 1
            continue
        step = _align_step(bag_ns, chunk, episodes[slot], streams, max_age_ns)
        if isinstance(step, str):
            report.dropped[step] += 1
        else:
            episodes[slot].steps.append(step)
    return BagPlan(cameras, [e for e in episodes if e.steps], space)


def _align_step(
    bag_ns: int, chunk: ActionChunk, episode: Episode, streams: BagStreams, max_age_ns: int
) -> Step | str:
    """The step of the action received at ``bag_ns``, or why it is dropped."""
    stamp_ns = chunk.stamp_ns or bag_ns
    start_stamp = episode.info.get("start_stamp_ns")
    if isinstance(start_stamp, int) and stamp_ns < start_stamp:
        return "observation from before the episode start"
    j = int(np.searchsorted(streams.joint_ns, stamp_ns, side="right")) - 1
    if j < 0:
        return "no joint state at or before the step"
    if stamp_ns - streams.joint_ns[j] > max_age_ns:
        return "joint state older than max_age_s"
    k = int(np.searchsorted(streams.instruction_ns, bag_ns, side="right")) - 1
    instruction = streams.instructions[k] if k >= 0 else (episode.info.get("instruction") or "")
    return Step(stamp_ns, chunk.values[0], streams.joint_positions[j], int(streams.joint_ns[j]), instruction)


def action_space_of(bag: Path, actions: Sequence[tuple[int, ActionChunk]]) -> dict[str, Any]:
    """The one action space of every chunk in the bag; a second one is a ValueError."""
    space: dict[str, Any] = {}
    for bag_ns, chunk in actions:
        this = {
            "name": chunk.space.name,
            "dims": list(chunk.space.dim_names),
            "step_dt_s": chunk.space.step_dt_s,
            "source_kind": chunk.space.kind,
        }
        if space and this != space:
            raise ValueError(f"bag '{bag}': action at {bag_ns} ns has space {this}, earlier ones {space}")
        space = this
    return space
