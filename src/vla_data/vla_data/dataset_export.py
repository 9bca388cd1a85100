"""Recorded rosbag2 bags -> a training dataset, one sample per control step (pure: no rclpy).

Two passes per bag: :mod:`vla_data.dataset_align` reads the actions, joint states, instructions and
episode events and aligns them into steps; :mod:`vla_data.dataset_write` streams the cameras, gives
each step its frames and writes the episode files. This module checks that the bags agree, runs
both passes, writes ``meta.json`` and is the ``vla-stack export`` command. The on-disk format
(one ``.npz`` per episode plus ``meta.json``) is described in docs/dataset_format.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vla_common.robot import PROPRIO_JOINT_NAMES
from vla_data.dataset_align import BagPlan, ExportOptions, ExportReport, plan_bag
from vla_data.dataset_write import DatasetWriter, export_frames

__all__ = [
    "DEFAULT_PROPRIO_JOINTS",
    "FORMAT",
    "ExportOptions",
    "ExportReport",
    "add_export_parser",
    "export_bags",
]

FORMAT = "vla_stack/npz_episodes/v1"
DEFAULT_PROPRIO_JOINTS = PROPRIO_JOINT_NAMES  # ExportOptions.proprio_joints' default


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
    plans = _plan_bags(bag_paths, options, report)
    out.mkdir(parents=True, exist_ok=True)
    writer = DatasetWriter(out, options)
    for bag, plan in zip(bag_paths, plans, strict=True):
        export_frames(bag, plan, writer, report)
    meta = dataset_meta(plans[0], writer, options, report)
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return report


def _plan_bags(bag_paths: Sequence[Path], options: ExportOptions, report: ExportReport) -> list[BagPlan]:
    """Pass 1 over every bag before anything is written; the bags must share cameras and action space."""
    plans = []
    for bag in bag_paths:
        plans.append(plan_bag(bag, options, report))
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
    return plans


def dataset_meta(
    plan: BagPlan, writer: DatasetWriter, options: ExportOptions, report: ExportReport
) -> dict[str, Any]:
    """The content of meta.json (``plan``: any bag's, they agree)."""
    space = plan.action_space
    return {
        "format": FORMAT,
        "fps": round(1.0 / space["step_dt_s"], 6),
        "cameras": sorted(plan.cameras),
        "camera_topics": {c: plan.cameras[c][0] for c in sorted(plan.cameras)},
        "image_shapes": {c: list(s) for c, s in sorted(writer.image_shapes.items())},
        "action_space": space,
        "proprio_dims": list(options.proprio_joints),
        "total_samples": report.samples,
        "dropped_steps": dict(sorted(report.dropped.items())),
        "episodes": writer.episodes,
    }


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
