"""``vla-stack replay BAG``: perception + policy (+ actuation) on a recorded bag, with a report.

The graph runs as supervised processes (the launcher's "replay" profile, on sim time); this process
plays the bag (:mod:`vla_data.bag_player_node`), records the graph's outputs with the
BagRecorderNode and writes ``report.json`` (action error against the bag's recorded /vla/action,
gripper agreement, latency, frames) and, when matplotlib is installed, ``actions.png``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vla_bringup.paths import params_file, repo_root
from vla_data.bag_playback import BagSource, PlayTopic, control_ticks, parse_remaps

RECORDED_OUTPUTS = (
    "/vla/action",
    "/wx250s/arm_controller/joint_trajectory",
    "/wx250s/gripper_controller/joint_trajectory",
    "/diagnostics",
)


@dataclass(frozen=True)
class ReplayOptions:
    bag: str
    rate: float = 1.0
    fast: bool = False
    remaps: tuple[str, ...] = ()
    policy: str = "scripted"
    checkpoint: str = ""
    with_actuation: bool = False
    out_dir: str | None = None
    seed: int | None = None
    control_hz: float = 5.0
    startup_timeout_s: float = 120.0
    action_timeout_s: float = 30.0
    extra_overrides: dict[str, dict[str, object]] = field(default_factory=dict)


def perception_overrides(topics: list[PlayTopic], control_hz: float) -> dict[str, object]:
    """Perception's camera transports set from the bag; a camera the bag does not feed is an error."""
    params = yaml.safe_load(params_file("perception").read_text())["perception"]["ros__parameters"]
    images = {t.target: t for t in topics if t.is_image}
    overrides: dict[str, object] = {"control_hz": control_hz}
    for camera in params["cameras"]:
        topic = params[camera]["topic"]
        played = images.get(topic)
        if played is None:
            raise ValueError(
                f"perception camera '{camera}' subscribes '{topic}', but the bag plays no image there; "
                f"bag image topics: {sorted(t.source for t in images.values())}; "
                f"use --remap BAG_TOPIC:={topic}"
            )
        compressed = played.msgtype.endswith("CompressedImage")
        overrides[f"{camera}.transport"] = "compressed" if compressed else "raw"
    return overrides


def _graph_ready(player, recorder, nodes: int) -> bool:
    counts = player.subscriber_counts()
    images_fed = all(n > 0 for t, n in counts.items() if player.is_image_target(t))
    return (
        images_fed
        and counts["/clock"] >= nodes
        and player.action_publishers() > 0
        and "/vla/action" in recorder.subscribed_topics()
    )


def run_replay(options: ReplayOptions, log: Callable[[str], None] = print) -> int:
    """Replay ``options.bag`` through the graph; returns an exit status (2: bad input)."""
    if options.rate <= 0:
        log(f"[replay] error: --rate {options.rate} must be positive")
        return 2
    try:
        source = BagSource(options.bag, parse_remaps(options.remaps))
        with source:
            messages = list(source.messages())
            reference = [text for _, text in source.reference_actions()]
        overrides = {
            "perception": perception_overrides(source.topics, options.control_hz),
            "policy": {
                "backend": options.policy,
                "checkpoint": options.checkpoint,
                "control_hz": options.control_hz,
                "use_privileged_state": any(t.target == "/sim/privileged_state" for t in source.topics),
            },
        }
    except ValueError as exc:
        log(f"[replay] error: {exc}")
        return 2
    for node, params in options.extra_overrides.items():
        overrides.setdefault(node, {}).update(params)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(options.out_dir) if options.out_dir else repo_root() / "out" / f"replay-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return _run_graph(options, source, messages, reference, overrides, out_dir, log)


def _run_graph(options, source, messages, reference, overrides, out_dir: Path, log) -> int:
    from vla_bringup.launcher import GraphLauncher
    from vla_bringup.profiles import profile
    from vla_bringup.ros_env import apply_loopback_profile
    from vla_data.replay_report import PlaybackStats, build_report, write_plot, write_report

    env = apply_loopback_profile(log_dir=str(out_dir / "ros_logs"))
    nodes = [n for n in profile("replay") if options.with_actuation or n.name != "actuation"]
    launcher = GraphLauncher(nodes, env, overrides=overrides, log_dir=out_dir / "logs")
    period_ns = int(round(1e9 / options.control_hz))
    ticks = control_ticks(messages[0].play_ns, messages[-1].play_ns, period_ns)
    mode = "fast" if options.fast else f"rate {options.rate:g}"
    log(
        f"[replay] {source.path}: {len(messages)} messages, {len(ticks)} control ticks, {mode}; out {out_dir}"
    )
    launcher.start()
    try:
        player, failure = _play(options, source, messages, ticks, period_ns, launcher, out_dir, len(nodes))
    finally:
        launcher.stop()
    stats = PlaybackStats(
        frames_published=player.stats.frames_published,
        frame_stamps=frozenset(player.stats.frame_stamps),
        ticks=player.stats.ticks,
        observation_stamps=tuple(player.stats.observation_stamps),
        action_latency_ms=tuple(player.stats.action_latency_ms),
        cameras=sum(t.is_image for t in source.topics),
    )
    report = build_report(
        player.action_texts, reference, stats, tolerance_ns=period_ns // 2, bag=str(source.path), mode=mode
    )
    report["output_bag"] = str(out_dir / "bag")
    bag_s = (ticks[-1] - ticks[0]) / 1e9 if len(ticks) > 1 else 0.0
    wall_s = getattr(player, "play_wall_s", 0.0)
    report["playback"] = {
        "bag_s": round(bag_s, 3),
        "wall_s": round(wall_s, 3),
        "speed_x": round(bag_s / wall_s, 2) if wall_s > 0 else None,
    }
    if failure:
        report["failure"] = failure
    write_report(out_dir / "report.json", report)
    plotted = write_plot(out_dir / "actions.png", player.action_texts, reference)
    _print_summary(report, out_dir, plotted, log)
    if failure:
        log(f"[replay] FAILED: {failure}")
        return 1
    return 0


def _play(options, source, messages, ticks, period_ns, launcher, out_dir: Path, nodes: int):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.logging import LoggingSeverity

    from vla_data.bag_player_node import BagPlayerNode
    from vla_data.bag_recorder_node import BagRecorderNode

    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    player = recorder = None
    failure: str | None = None
    spinning = threading.Event()
    spinning.set()

    def spin() -> None:
        while spinning.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, name="replay-executor", daemon=True)
    try:
        player = BagPlayerNode(source.topics, episode_seed=options.seed, context=context)
        recorder = BagRecorderNode(out_dir / "bag", topics=RECORDED_OUTPUTS, context=context)
        recorder.get_logger().set_level(LoggingSeverity.WARN)
        executor.add_node(player)
        executor.add_node(recorder)
        spinner.start()
        start_ns = ticks[0] - period_ns
        deadline = time.monotonic() + options.startup_timeout_s
        while not _graph_ready(player, recorder, nodes):
            failure = launcher.poll() or (
                f"the graph was not up within {options.startup_timeout_s:.0f} s: {player.subscriber_counts()}"
                if time.monotonic() > deadline
                else None
            )
            if failure:
                return player, failure
            player.publish_clock(start_ns)
            time.sleep(0.1)
        player.publish_clock(start_ns)
        if not any(t.target == "/vla/episode" for t in source.topics):
            player.publish_episode_start(start_ns)
        play_start = time.monotonic()
        try:
            if options.fast:
                player.play_stepped(
                    messages, ticks, action_timeout_s=options.action_timeout_s, poll_failure=launcher.poll
                )
            else:
                player.play_realtime(
                    messages,
                    start_ns,
                    ticks[-1],
                    rate=options.rate,
                    control_hz=options.control_hz,
                    poll_failure=launcher.poll,
                )
        except RuntimeError as exc:
            failure = str(exc)
        player.play_wall_s = time.monotonic() - play_start
        time.sleep(0.5)  # the last action and diagnostics reach the recorder
        return player, failure
    finally:
        spinning.clear()
        if spinner.is_alive():
            spinner.join(timeout=5)
        if recorder is not None:
            recorder.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def _print_summary(report: dict, out_dir: Path, plotted: bool, log: Callable[[str], None]) -> None:
    frames = report["frames"]
    log(
        f"[replay] ticks {frames['control_ticks']}, observations {frames['observations']}, "
        f"actions {report['actions']['predicted']} (recorded {report['actions']['recorded']}), "
        f"ticks without observation {frames['ticks_without_observation']}"
    )
    error = report.get("action_error")
    if isinstance(error, dict) and error.get("pairs"):
        mae = ", ".join(f"{k} {v:.4f}" for k, v in error["mae"].items())
        log(f"[replay] MAE per dim: {mae}; gripper agreement {error.get('gripper_agreement', 'n/a')}")
    playback = report.get("playback", {})
    if playback.get("speed_x"):
        log(
            f"[replay] played {playback['bag_s']:.1f} s of bag in {playback['wall_s']:.1f} s "
            f"({playback['speed_x']:.1f}x real time)"
        )
    log(f"[replay] report: {out_dir / 'report.json'}")
    log(f"[replay] plot:   {out_dir / 'actions.png'}" if plotted else "[replay] no plot: matplotlib missing")


def cmd_replay(args: argparse.Namespace) -> int:
    options = ReplayOptions(
        bag=args.bag,
        rate=args.rate,
        fast=args.fast,
        remaps=tuple(args.remap),
        policy=args.policy,
        checkpoint=args.checkpoint,
        with_actuation=args.with_actuation,
        out_dir=args.out,
        seed=args.seed,
        action_timeout_s=args.step_timeout,
    )
    return run_replay(
        options, log=lambda line: print(line, file=sys.stderr if "error" in line else sys.stdout)
    )


def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``replay`` to the ``vla-stack`` sub-commands (call from cli.build_parser)."""
    replay = subparsers.add_parser("replay", help="run perception + policy on a recorded bag and report")
    replay.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3; Humble, Jazzy or Kilted)")
    timing = replay.add_mutually_exclusive_group()
    timing.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    timing.add_argument(
        "--fast", action="store_true", help="lockstep: as fast as the graph answers, never skipping a tick"
    )
    replay.add_argument(
        "--remap", action="append", default=[], metavar="OLD:=NEW", help="play bag topic OLD on NEW"
    )
    replay.add_argument("--policy", default="scripted", help="policy backend (see vla-stack backends)")
    replay.add_argument("--checkpoint", default="", help="checkpoint directory for a model backend")
    replay.add_argument(
        "--with-actuation",
        action="store_true",
        help="run the actuation node too (its 50 Hz servo needs --rate, not --fast)",
    )
    replay.add_argument("-o", "--out", default=None, help="output folder (default out/replay-<time>)")
    replay.add_argument("--seed", type=int, default=None, help="seed of the policy's episode resets")
    replay.add_argument(
        "--step-timeout", type=float, default=30.0, help="--fast: seconds to wait for an action per tick"
    )
    replay.set_defaults(func=cmd_replay)
    return replay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vla-stack")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
