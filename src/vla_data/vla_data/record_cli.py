"""``vla-stack record``: record topics into a rosbag2 bag, like ``ros2 bag record`` on the pip install.

A thin command over :func:`vla_data.bag_recorder_node.record`: loopback DDS profile, MCAP or
sqlite3, until Ctrl-C / SIGTERM or ``--duration``; the bag is always closed (index and
``metadata.yaml`` written) before the command exits. rclpy is imported only when the command runs,
so building the parser stays cheap and ROS-free.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STORAGE_CHOICES = ("mcap", "sqlite3")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"duration {text} must be positive")
    return value


def _absolute_topic(topic: str) -> str:
    """ROS resolves a relative name against the root namespace for this recorder (node ns '/')."""
    topic = topic.strip()
    if not topic or topic == "/":
        raise argparse.ArgumentTypeError(f"'{topic}' is not a topic name")
    return topic if topic.startswith("/") else f"/{topic}"


def cmd_record(args: argparse.Namespace) -> int:
    """Run ``vla-stack record``; prints the message count per topic when it stops."""
    output = Path(args.output)
    if output.exists():
        print(
            f"[record] error: bag path '{output}' exists already; rosbag2 never overwrites", file=sys.stderr
        )
        return 2
    from vla_data.bag_recorder_node import record  # lazy: imports rclpy; the parser stays ROS-free

    topics = args.topics or None
    what = ", ".join(topics) if topics else "every topic"
    print(f"[record] recording {what} into '{output}' ({args.storage}); Ctrl-C stops", flush=True)
    try:
        counts = record(topics, output, args.storage, args.duration)
    except KeyboardInterrupt:  # only before record() installed its own handler; the bag is closed
        return 130
    for topic, count in sorted(counts.items()):
        print(f"{topic}: {count}")
    print(f"[record] {sum(counts.values())} messages in '{output}'", flush=True)
    return 0


def add_record_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``record [TOPICS...] -o BAG [--storage mcap|sqlite3] [--duration S]`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "record", help="record topics into a rosbag2 bag (all topics by default) until Ctrl-C"
    )
    parser.add_argument(
        "topics", nargs="*", type=_absolute_topic, metavar="TOPIC", help="topics to record; none: all"
    )
    parser.add_argument("-o", "--output", required=True, metavar="BAG", help="bag folder to create")
    parser.add_argument("-s", "--storage", default="mcap", choices=STORAGE_CHOICES)
    parser.add_argument(
        "-d", "--duration", type=_positive_seconds, default=None, metavar="S", help="stop after S seconds"
    )
    parser.set_defaults(func=cmd_record)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vla_data.record_cli record ...``: the same command before cli.py offers it."""
    parser = argparse.ArgumentParser(prog="vla-stack")
    add_record_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
