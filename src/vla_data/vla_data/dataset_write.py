"""Pass 2 of the dataset export: the camera frames of each step, and the episode files (pure).

Camera streams are read one frame at a time; each step gets, per camera, the newest frame whose
header stamp is at or before the step (the frame the policy saw, since the observation stamp is the
newest stamp of its synchronised camera set). Each episode is written as soon as every step of it
has its frames, so memory holds one episode, not one bag. The on-disk format (one ``.npz`` per
episode plus ``meta.json``) is described in docs/dataset_format.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vla_data.bag_io import iter_messages
from vla_data.dataset_align import BagPlan, Episode, ExportOptions, ExportReport, header_ns
from vla_perception.image_codec import compressed_to_array, decoded_encoding, image_to_array, to_rgb8

STALE = "stale"  # marks a step whose newest frame is older than max_age_s


def frame_to_rgb(msg: Any, msgtype: str, camera: str, size: tuple[int, int] | None) -> np.ndarray:
    """A bag's Image or CompressedImage as an owned uint8 RGB array, resized to ``size`` if given."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        array = compressed_to_array(msg.format, msg.data, camera=camera)
        rgb = to_rgb8(array, decoded_encoding(array, msg.format))
    else:
        rgb = to_rgb8(image_to_array(msg, camera=camera, copy=False), msg.encoding)
    if size is not None and rgb.shape[:2] != tuple(size):
        return cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return np.array(rgb)  # own the pixels: they may be a view of the bag's read buffer


class DatasetWriter:
    """Writes episode files and remembers what meta.json needs."""

    def __init__(self, output_dir: Path, options: ExportOptions) -> None:
        self.output_dir = output_dir
        self.options = options
        self.image_shapes: dict[str, tuple[int, ...]] = {}
        self.episodes: list[dict[str, Any]] = []

    def write(self, episode: Episode, frames: dict[str, list], report: ExportReport) -> None:
        """Write ``episode`` with its steps that have every camera's frame; count the others."""
        keep = _complete_steps(len(episode.steps), frames, report)
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
            arrays.update(self._camera_arrays(episode, camera, [camera_frames[i] for i in keep]))
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

    def _camera_arrays(self, episode: Episode, camera: str, frames: list) -> dict[str, np.ndarray]:
        images = np.stack([pixels for _, pixels in frames])
        known = self.image_shapes.setdefault(camera, images.shape[1:])
        if images.shape[1:] != known:
            raise ValueError(
                f"bag '{episode.source_bag}': camera '{camera}' frames are {list(images.shape[1:])}, "
                f"earlier ones {list(known)}; pass image_size (--image-size HxW) to resize them all"
            )
        stamps = np.array([stamp_ns for stamp_ns, _ in frames], np.int64)
        return {f"images_{camera}": images, f"image_stamp_ns_{camera}": stamps}


def _complete_steps(count: int, frames: dict[str, list], report: ExportReport) -> list[int]:
    """Indices of the steps every camera has a fresh frame for; the others are counted as dropped."""
    keep = []
    for i in range(count):
        missing = [c for c, f in frames.items() if f[i] is None]
        stale = [c for c, f in frames.items() if f[i] is STALE]
        if missing or stale:
            report.dropped[
                f"camera '{(missing or stale)[0]}': "
                + ("no frame at or before the step" if missing else "frame older than max_age_s")
            ] += 1
        else:
            keep.append(i)
    return keep


class _FrameAssigner:
    """Gives each step of a bag, per camera, its newest frame at or before it, as frames stream in.

    Steps are visited in stamp order (across episodes); an episode is written once every camera has
    passed its last step.
    """

    def __init__(self, plan: BagPlan, writer: DatasetWriter, report: ExportReport) -> None:
        self.plan, self.writer, self.report = plan, writer, report
        self.steps = [
            (e, i, s.stamp_ns) for e, ep in enumerate(plan.episodes) for i, s in enumerate(ep.steps)
        ]
        self.order = sorted(range(len(self.steps)), key=lambda n: self.steps[n][2])
        self.stamps = [self.steps[n][2] for n in self.order]
        self.last_rank = [-1] * len(plan.episodes)  # the highest sorted position among each episode's steps
        for rank, n in enumerate(self.order):
            self.last_rank[self.steps[n][0]] = max(self.last_rank[self.steps[n][0]], rank)
        self.frames = {c: [[None] * len(ep.steps) for ep in plan.episodes] for c in plan.cameras}
        self.pointer = dict.fromkeys(plan.cameras, 0)  # per camera: sorted steps given a frame so far
        # Per camera: the newest frame at or before its next step, as (stamp_ns, message, sequence
        # number), and the decoded pixels of the last frame handed out, keyed by its sequence number.
        self.best: dict[str, tuple[int, Any, int] | None] = dict.fromkeys(plan.cameras)
        self.decoded: dict[str, tuple[int, np.ndarray] | None] = dict.fromkeys(plan.cameras)
        self.max_age_ns = int(writer.options.max_age_s * 1e9)
        self.written = 0

    def add(self, camera: str, stamp_ns: int, msg: Any, sequence: int) -> None:
        """One frame of ``camera``, in bag order."""
        while self.pointer[camera] < len(self.stamps) and stamp_ns > self.stamps[self.pointer[camera]]:
            self._assign(camera)
        best = self.best[camera]
        if self.pointer[camera] < len(self.stamps) and (best is None or stamp_ns >= best[0]):
            self.best[camera] = (stamp_ns, msg, sequence)
        self._flush(final=False)

    def finish(self) -> None:
        """The bag has no more frames: the remaining steps get the last ones; write the rest."""
        for camera in self.plan.cameras:
            while self.pointer[camera] < len(self.stamps):
                self._assign(camera)
        self._flush(final=True)

    def _assign(self, camera: str) -> None:
        e, i, stamp_ns = self.steps[self.order[self.pointer[camera]]]
        self.pointer[camera] += 1
        candidate = self.best[camera]
        if candidate is None:
            return  # stays None: no frame at or before the step
        if stamp_ns - candidate[0] > self.max_age_ns:
            self.frames[camera][e][i] = STALE
            return
        decoded = self.decoded[camera]
        if decoded is None or decoded[0] != candidate[2]:
            msgtype = self.plan.cameras[camera][1]
            decoded = (
                candidate[2],
                frame_to_rgb(candidate[1], msgtype, camera, self.writer.options.image_size),
            )
            self.decoded[camera] = decoded
        self.frames[camera][e][i] = (candidate[0], decoded[1])

    def _flush(self, final: bool) -> None:
        done = len(self.stamps) if final else min(self.pointer.values())
        while self.written < len(self.plan.episodes) and self.last_rank[self.written] < done:
            episode_frames = {c: self.frames[c][self.written] for c in self.frames}
            self.writer.write(self.plan.episodes[self.written], episode_frames, self.report)
            for camera in self.frames:
                self.frames[camera][self.written] = []  # free the pixels
            self.written += 1


def export_frames(bag: Path, plan: BagPlan, writer: DatasetWriter, report: ExportReport) -> None:
    """Pass 2: stream the camera topics, give each step its newest frame at or before it, write episodes."""
    assigner = _FrameAssigner(plan, writer, report)
    by_topic = {topic: name for name, (topic, _) in plan.cameras.items()}
    for sequence, (topic, _, bag_ns, msg) in enumerate(iter_messages(bag, list(by_topic))):
        assigner.add(by_topic[topic], header_ns(msg, bag_ns), msg, sequence)
    assigner.finish()
