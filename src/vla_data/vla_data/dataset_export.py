"""Recorded rosbag2 bags -> a training dataset, one sample per control step (pure: no rclpy).

A control step is one ``/vla/action`` message: the chunk's ``stamp_ns`` is the observation time the
policy acted on, and chunk row 0 is the action executed for the step that starts then. For each
step the exporter takes

- per camera, the newest frame whose header stamp is at or before the step (the frame the policy
  saw, since the observation stamp is the newest stamp of its synchronised camera set),
- proprio: the positions of ``proprio_joints`` from the newest joint state at or before the step,
- the instruction in force (the last ``/vla/instruction`` received before the action),
- the episode from the ``/vla/episode`` start/end events (a bag without that topic is one episode).

Header stamps and the action's ``stamp_ns`` share one clock (sim time in the sim, wall time on the
robot); topics without a header (instruction, episode events) are placed by the bag's receive time.
The on-disk format (one ``.npz`` per episode plus ``meta.json``) is described in docs/dataset_format.md.
Camera streams are read one frame at a time and each episode is written as soon as it is complete,
so memory holds one episode, not one bag.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReader

from vla_common.action_message import ActionChunk, decode_action_chunk
from vla_data.bag_io import iter_messages
from vla_perception.image_codec import compressed_to_array, decoded_encoding, image_to_array, to_rgb8

FORMAT = "vla_stack/npz_episodes/v1"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
# The WidowX 250 6DOF arm joints and the finger the gripper command drives (metres).
DEFAULT_PROPRIO_JOINTS = (
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
    "left_finger",
)
_CAMERA_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_STALE = "stale"  # marks a step whose newest frame is older than max_age_s


@dataclass(frozen=True)
class ExportOptions:
    """Which topics to read and how to cut and store the samples."""

    camera_topics: Mapping[str, str] | None = None  # camera name -> topic; None: image topics under /camera/
    action_topic: str = "/vla/action"
    joint_states_topic: str = "/wx250s/joint_states"
    instruction_topic: str = "/vla/instruction"
    episode_topic: str = "/vla/episode"
    proprio_joints: tuple[str, ...] = DEFAULT_PROPRIO_JOINTS
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
    """What :func:`export_bags` wrote: episode and sample counts and the steps it dropped, by reason."""

    output_dir: Path
    episodes: int = 0
    samples: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Step:
    stamp_ns: int
    action: np.ndarray
    proprio: np.ndarray
    proprio_stamp_ns: int
    instruction: str


@dataclass
class _Episode:
    source_bag: str
    info: dict[str, Any]  # source episode index, seed, success, ... from the events
    steps: list[_Step] = field(default_factory=list)


@dataclass
class _BagPlan:
    cameras: dict[str, tuple[str, str]]  # name -> (topic, msgtype)
    episodes: list[_Episode]
    action_space: dict[str, Any]  # name, dims, step_dt_s, source_kind


def _topic_table(bag: Path) -> dict[str, tuple[str, int]]:
    """topic -> (msgtype, message count) from the bag's metadata."""
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"bag '{bag}' has no metadata.yaml (not a closed rosbag2 directory)")
    with AnyReader([bag]) as reader:
        table: dict[str, tuple[str, int]] = {}
        for connection in reader.connections:
            count = table.get(connection.topic, (connection.msgtype, 0))[1] + connection.msgcount
            table[connection.topic] = (connection.msgtype, count)
        return table


def _require_topic(bag: Path, table: Mapping[str, tuple[str, int]], topic: str, what: str) -> None:
    if topic not in table:
        raise ValueError(f"bag '{bag}': {what} topic '{topic}' is missing; topics: {sorted(table)}")
    if table[topic][1] == 0:
        raise ValueError(f"bag '{bag}': {what} topic '{topic}' has no messages")


def _find_cameras(
    bag: Path, table: Mapping[str, tuple[str, int]], options: ExportOptions
) -> dict[str, tuple[str, str]]:
    if options.camera_topics:
        cameras = {}
        for name, topic in options.camera_topics.items():
            _require_topic(bag, table, topic, f"camera '{name}'")
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


def _header_ns(msg: Any, fallback_ns: int) -> int:
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return stamp_ns if stamp_ns > 0 else fallback_ns


def _episode_intervals(
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


def _plan_bag(bag: Path, options: ExportOptions, report: ExportReport) -> _BagPlan:
    """Pass 1: everything but the images. Decides the steps and fills in action, proprio, instruction."""
    table = _topic_table(bag)
    _require_topic(bag, table, options.action_topic, "action")
    _require_topic(bag, table, options.joint_states_topic, "joint states")
    cameras = _find_cameras(bag, table, options)
    wanted = [options.action_topic, options.joint_states_topic]
    wanted += [t for t in (options.instruction_topic, options.episode_topic) if t in table]

    actions: list[tuple[int, ActionChunk]] = []
    joint_stamps: list[int] = []
    joint_positions: list[np.ndarray] = []
    instructions: list[tuple[int, str]] = []
    events: list[tuple[int, dict]] = []
    for topic, _, bag_ns, msg in iter_messages(bag, wanted):
        if topic == options.action_topic:
            try:
                actions.append((bag_ns, decode_action_chunk(msg.data)))
            except ValueError as error:
                raise ValueError(f"bag '{bag}': {topic} message at {bag_ns} ns: {error}") from None
        elif topic == options.joint_states_topic:
            index = {name: i for i, name in enumerate(msg.name)}
            missing = [j for j in options.proprio_joints if j not in index]
            if missing:
                raise ValueError(f"bag '{bag}': {topic} lacks joints {missing}; it has {list(msg.name)}")
            positions = np.asarray(msg.position, dtype=np.float64)
            joint_stamps.append(_header_ns(msg, bag_ns))
            joint_positions.append(positions[[index[j] for j in options.proprio_joints]])
        elif topic == options.instruction_topic:
            instructions.append((bag_ns, str(msg.data)))
        else:
            try:
                event = json.loads(msg.data)
            except json.JSONDecodeError:
                continue  # not an event this exporter understands
            if isinstance(event, dict):
                events.append((bag_ns, event))

    order = np.argsort(np.asarray(joint_stamps, dtype=np.int64), kind="stable")
    joint_ns = np.asarray(joint_stamps, dtype=np.int64)[order]
    joint_pos = np.stack(joint_positions)[order]
    max_age_ns = int(options.max_age_s * 1e9)
    intervals = _episode_intervals(bag, events, options.episode_topic in table)
    episodes = [_Episode(str(bag), info) for _, _, info in intervals]
    instruction_ns = [t for t, _ in instructions]
    space = _action_space(bag, actions)
    for bag_ns, chunk in actions:
        slot = next((i for i, (start, end, _) in enumerate(intervals) if start <= bag_ns < end), None)
        if slot is None:
            report.dropped["action outside an episode"] += 1
            continue
        episode = episodes[slot]
        stamp_ns = chunk.stamp_ns or bag_ns
        start_stamp = episode.info.get("start_stamp_ns")
        if isinstance(start_stamp, int) and stamp_ns < start_stamp:
            report.dropped["observation from before the episode start"] += 1
            continue
        j = int(np.searchsorted(joint_ns, stamp_ns, side="right")) - 1
        if j < 0:
            report.dropped["no joint state at or before the step"] += 1
            continue
        if stamp_ns - joint_ns[j] > max_age_ns:
            report.dropped["joint state older than max_age_s"] += 1
            continue
        k = int(np.searchsorted(instruction_ns, bag_ns, side="right")) - 1
        instruction = instructions[k][1] if k >= 0 else (episode.info.get("instruction") or "")
        episode.steps.append(_Step(stamp_ns, chunk.values[0], joint_pos[j], int(joint_ns[j]), instruction))
    return _BagPlan(cameras, [e for e in episodes if e.steps], space)


def _action_space(bag: Path, actions: Sequence[tuple[int, ActionChunk]]) -> dict[str, Any]:
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


def _frame_to_rgb(msg: Any, msgtype: str, camera: str, size: tuple[int, int] | None) -> np.ndarray:
    if msgtype == "sensor_msgs/msg/CompressedImage":
        array = compressed_to_array(msg.format, msg.data, camera=camera)
        rgb = to_rgb8(array, decoded_encoding(array, msg.format))
    else:
        rgb = to_rgb8(image_to_array(msg, camera=camera, copy=False), msg.encoding)
    if size is not None and rgb.shape[:2] != tuple(size):
        return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.array(rgb)  # own the pixels: they may be a view of the bag's read buffer


class _DatasetWriter:
    """Writes episode files and remembers what meta.json needs."""

    def __init__(self, output_dir: Path, options: ExportOptions) -> None:
        self.output_dir = output_dir
        self.options = options
        self.image_shapes: dict[str, tuple[int, ...]] = {}
        self.episodes: list[dict[str, Any]] = []

    def write(self, episode: _Episode, frames: dict[str, list], report: ExportReport) -> None:
        keep = []
        for i in range(len(episode.steps)):
            missing = [c for c, f in frames.items() if f[i] is None]
            stale = [c for c, f in frames.items() if f[i] is _STALE]
            if missing or stale:
                report.dropped[
                    f"camera '{(missing or stale)[0]}': "
                    + ("no frame at or before the step" if missing else "frame older than max_age_s")
                ] += 1
            else:
                keep.append(i)
        if not keep:
            return
        steps = [episode.steps[i] for i in keep]
        first_ns = steps[0].stamp_ns
        arrays: dict[str, np.ndarray] = {
            "timestamps": np.array([(s.stamp_ns - first_ns) / 1e9 for s in steps], dtype=np.float64),
            "stamp_ns": np.array([s.stamp_ns for s in steps], dtype=np.int64),
            "proprio": np.stack([s.proprio for s in steps]).astype(np.float32),
            "proprio_stamp_ns": np.array([s.proprio_stamp_ns for s in steps], dtype=np.int64),
            "action": np.stack([s.action for s in steps]).astype(np.float32),
            "instruction": np.array([s.instruction for s in steps], dtype=np.str_),
        }
        for camera, camera_frames in frames.items():
            images = np.stack([camera_frames[i][1] for i in keep])
            known = self.image_shapes.setdefault(camera, images.shape[1:])
            if images.shape[1:] != known:
                raise ValueError(
                    f"bag '{episode.source_bag}': camera '{camera}' frames are {list(images.shape[1:])}, "
                    f"earlier ones {list(known)}; pass image_size (--image-size HxW) to resize them all"
                )
            arrays[f"images_{camera}"] = images
            arrays[f"image_stamp_ns_{camera}"] = np.array([camera_frames[i][0] for i in keep], np.int64)
        index = len(self.episodes)
        name = f"episode_{index:06d}.npz"
        (np.savez_compressed if self.options.compress else np.savez)(self.output_dir / name, **arrays)
        self.episodes.append(
            {
                "episode_index": index,
                "file": name,
                "length": len(steps),
                "instruction": steps[0].instruction,
                "source_bag": episode.source_bag,
                **{k: v for k, v in episode.info.items() if k not in ("instruction", "start_stamp_ns")},
            }
        )
        report.episodes += 1
        report.samples += len(steps)


def _export_frames(bag: Path, plan: _BagPlan, writer: _DatasetWriter, report: ExportReport) -> None:
    """Pass 2: stream the camera topics, give each step its newest frame at or before it, write episodes."""
    steps = [(e, i, s.stamp_ns) for e, ep in enumerate(plan.episodes) for i, s in enumerate(ep.steps)]
    order = sorted(range(len(steps)), key=lambda n: steps[n][2])
    stamps = [steps[n][2] for n in order]
    last_rank = [-1] * len(plan.episodes)  # the highest sorted position among each episode's steps
    for rank, n in enumerate(order):
        last_rank[steps[n][0]] = max(last_rank[steps[n][0]], rank)
    frames = {c: [[None] * len(ep.steps) for ep in plan.episodes] for c in plan.cameras}
    pointer = dict.fromkeys(plan.cameras, 0)  # per camera: sorted steps given a frame so far
    # Per camera: the newest frame at or before its next step, as (stamp_ns, message, sequence number),
    # and the decoded pixels of the last frame handed out, keyed by its sequence number.
    best: dict[str, tuple[int, Any, int] | None] = dict.fromkeys(plan.cameras)
    decoded: dict[str, tuple[int, np.ndarray] | None] = dict.fromkeys(plan.cameras)
    max_age_ns = int(writer.options.max_age_s * 1e9)
    written = 0
    by_topic = {topic: name for name, (topic, _) in plan.cameras.items()}

    def assign(camera: str) -> None:
        e, i, stamp_ns = steps[order[pointer[camera]]]
        pointer[camera] += 1
        candidate = best[camera]
        if candidate is None:
            return  # stays None: no frame at or before the step
        if stamp_ns - candidate[0] > max_age_ns:
            frames[camera][e][i] = _STALE
            return
        if decoded[camera] is None or decoded[camera][0] != candidate[2]:
            pixels = _frame_to_rgb(candidate[1], plan.cameras[camera][1], camera, writer.options.image_size)
            decoded[camera] = (candidate[2], pixels)
        frames[camera][e][i] = (candidate[0], decoded[camera][1])

    def flush(final: bool) -> None:
        nonlocal written
        done = len(stamps) if final else min(pointer.values())
        while written < len(plan.episodes) and last_rank[written] < done:
            writer.write(plan.episodes[written], {c: frames[c][written] for c in frames}, report)
            for camera in frames:
                frames[camera][written] = []  # free the pixels
            written += 1

    for sequence, (topic, _, bag_ns, msg) in enumerate(iter_messages(bag, list(by_topic))):
        camera = by_topic[topic]
        stamp_ns = _header_ns(msg, bag_ns)
        while pointer[camera] < len(stamps) and stamp_ns > stamps[pointer[camera]]:
            assign(camera)
        if pointer[camera] < len(stamps) and (best[camera] is None or stamp_ns >= best[camera][0]):
            best[camera] = (stamp_ns, msg, sequence)
        flush(final=False)
    for camera in plan.cameras:
        while pointer[camera] < len(stamps):
            assign(camera)
    flush(final=True)


def export_bags(
    bags: Iterable[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    options: ExportOptions | None = None,
) -> ExportReport:
    """Export ``bags`` (rosbag2 directories) into ``output_dir`` (new or empty) as one dataset.

    Episodes are numbered across the bags in the order given. Every bag must have the same cameras
    and action space. Raises ValueError naming the bag and the topic when a camera, action or joint
    state topic is missing. ``meta.json`` is written last, so a dataset without it is incomplete.
    """
    options = options or ExportOptions()
    bag_paths = [Path(b) for b in bags]
    if not bag_paths:
        raise ValueError("no bags given")
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"output '{out}' exists and is not an empty folder; the export never overwrites"
        )
    report = ExportReport(out)
    plans = []
    for bag in bag_paths:  # every bag is checked before anything is written
        plans.append(_plan_bag(bag, options, report))
        if sorted(plans[-1].cameras) != sorted(plans[0].cameras):
            raise ValueError(
                f"bag '{bag}': cameras {sorted(plans[-1].cameras)} differ from "
                f"{sorted(plans[0].cameras)} in bag '{bag_paths[0]}'"
            )
        if plans[-1].action_space != plans[0].action_space:
            raise ValueError(
                f"bag '{bag}': action space {plans[-1].action_space} differs from "
                f"{plans[0].action_space} in bag '{bag_paths[0]}'"
            )
    space = plans[0].action_space
    out.mkdir(parents=True, exist_ok=True)
    writer = _DatasetWriter(out, options)
    for bag, plan in zip(bag_paths, plans, strict=True):
        _export_frames(bag, plan, writer, report)
    meta = {
        "format": FORMAT,
        "fps": round(1.0 / space["step_dt_s"], 6),
        "cameras": sorted(plans[0].cameras),
        "camera_topics": {c: plans[0].cameras[c][0] for c in sorted(plans[0].cameras)},
        "image_shapes": {c: list(s) for c, s in sorted(writer.image_shapes.items())},
        "action_space": space,
        "proprio_dims": list(options.proprio_joints),
        "total_samples": report.samples,
        "dropped_steps": dict(sorted(report.dropped.items())),
        "episodes": writer.episodes,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report


def _camera_arg(text: str) -> tuple[str, str]:
    name, sep, topic = text.partition("=")
    if not sep or not name or not topic.startswith("/"):
        raise argparse.ArgumentTypeError(
            f"'{text}': expected NAME=/TOPIC, e.g. wrist=/camera/wrist/image_raw"
        )
    return name, topic


def _size_arg(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or min(int(height), int(width)) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': expected HEIGHTxWIDTH, e.g. 224x224")
    return int(height), int(width)


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``vla-stack export``."""
    options = ExportOptions(
        camera_topics=dict(args.camera) or None,
        action_topic=args.action_topic,
        joint_states_topic=args.joint_states_topic,
        max_age_s=args.max_age,
        image_size=args.image_size,
        compress=not args.no_compress,
    )
    try:
        report = export_bags(args.bags, args.output, options)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"[export] error: {error}", file=sys.stderr)
        return 2
    print(f"[export] {report.episodes} episodes, {report.samples} samples -> {report.output_dir}")
    for reason, count in sorted(report.dropped.items()):
        print(f"[export] dropped {count} steps: {reason}")
    return 0 if report.samples else 1


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``export BAG... -o DATASET`` to an argparse subparsers object (as from add_subparsers)."""
    parser = subparsers.add_parser(
        "export", help="turn recorded bags into a training dataset (docs/dataset_format.md)"
    )
    parser.add_argument("bags", nargs="+", metavar="BAG", help="rosbag2 directories, in episode order")
    parser.add_argument("-o", "--output", required=True, metavar="DATASET", help="new or empty folder")
    parser.add_argument(
        "--camera",
        action="append",
        type=_camera_arg,
        default=[],
        metavar="NAME=TOPIC",
        help="a camera to export (repeat); default: every image topic under /camera/",
    )
    parser.add_argument("--action-topic", default=ExportOptions.action_topic)
    parser.add_argument("--joint-states-topic", default=ExportOptions.joint_states_topic)
    parser.add_argument(
        "--max-age",
        type=float,
        default=ExportOptions.max_age_s,
        metavar="S",
        help="drop a step whose newest frame or joint state is older than this (seconds)",
    )
    parser.add_argument("--image-size", type=_size_arg, default=None, metavar="HxW", help="resize frames")
    parser.add_argument("--no-compress", action="store_true", help="write .npz without zlib (faster)")
    parser.set_defaults(func=cmd_export)
    return parser
