"""``vla-stack replay BAG``: perception + policy (+ actuation) on a recorded bag, with a report.

The graph runs as supervised processes (the launcher's "replay" profile, on sim time); this process
plays the bag and records the graph's outputs (:mod:`vla_data.replay_node`) and writes
``report.json`` (action error against the bag's recorded /vla/action, gripper agreement, latency,
frames) and, when matplotlib is installed, ``actions.png``.

Every launched node runs at one control rate, the replay's tick grid included: config/control.yaml's
``control_hz`` unless ``ReplayOptions.control_hz`` sets another for all of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vla_bringup.deployment import load_deployment, node_parameters
from vla_bringup.launcher import GraphLauncher
from vla_bringup.paths import repo_root
from vla_bringup.policies import PolicySpec, policy_parameters, resolve_policy
from vla_bringup.profiles import NodeSpec, profile
from vla_bringup.ros_env import apply_loopback_profile
from vla_data.bag_playback import BagSource, PlayMessage, PlaySettings, PlayTopic, control_ticks, parse_remaps
from vla_data.replay_report import build_report, write_plot, write_report
from vla_data.stop_signals import Interrupted, StopSignals

if TYPE_CHECKING:
    from vla_data.replay_node import PlayOutcome


@dataclass(frozen=True)
class ReplayOptions:
    """What ``vla-stack replay`` was asked: the bag, how to play it, which policy, where to write."""

    bag: str
    rate: float = 1.0
    fast: bool = False
    remaps: tuple[str, ...] = ()
    policy: str = "scripted"
    checkpoint: str = ""
    with_actuation: bool = False
    out_dir: str | None = None
    seed: int | None = None
    control_hz: float | None = None  # None: config/control.yaml's; else set on every launched node
    startup_timeout_s: float = 120.0
    action_timeout_s: float = 30.0
    extra_overrides: dict[str, dict[str, object]] = field(default_factory=dict)


def replay_nodes(with_actuation: bool) -> tuple[NodeSpec, ...]:
    """The launcher's replay profile, without actuation unless asked for."""
    return tuple(n for n in profile("replay") if with_actuation or n.name != "actuation")


def camera_transports(topics: Sequence[PlayTopic]) -> dict[str, str]:
    """Perception's camera transports set from the bag; a camera the bag does not feed is an error."""
    params = node_parameters("perception", "perception")
    images = {t.target: t for t in topics if t.is_image}
    transports = {}
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
        transports[f"{camera}.transport"] = "compressed" if compressed else "raw"
    return transports


def graph_overrides(
    options: ReplayOptions, topics: Sequence[PlayTopic], nodes: Sequence[NodeSpec], control_hz: float
) -> dict[str, dict[str, object]]:
    """The parameters the replay sets on the nodes it launches (``options.extra_overrides`` last).

    ``control_hz`` goes to every node, so their timers and the replay's tick grid agree whatever
    the params files say; perception's camera transports and the policy's inputs follow the bag.
    """
    overrides: dict[str, dict[str, object]] = {n.name: {"control_hz": control_hz} for n in nodes}
    overrides["perception"].update(camera_transports(topics))
    overrides["policy"].update(policy_parameters(replay_policy(options, topics)))
    for node, params in options.extra_overrides.items():
        overrides.setdefault(node, {}).update(params)
    return overrides


PRIVILEGED_TOPIC = "/sim/privileged_state"
INSTRUCTION_TOPIC = "/vla/instruction"
EPISODE_TOPIC = "/vla/episode"


def expected_readers(
    topics: Sequence[PlayTopic], nodes: Sequence[NodeSpec], spec: PolicySpec
) -> dict[str, int]:
    """How many of the launched nodes read each played topic: the playback starts when all have matched.

    Perception reads every camera, perception and the policy the instruction, every node the episode
    events, the policy the joint states (actuation too, when launched) and, if it acts on the sim's
    ground truth, the privileged state. Waiting for these (not only for some reader per topic) is
    what lets the first tick's latched instruction and episode start reach every node before the
    clock moves (see :meth:`vla_data.bag_player_node.BagPlayerNode.publish_tick`).
    """
    names = {n.name for n in nodes}
    readers = {t.target: 1 for t in topics if t.is_image}
    readers[INSTRUCTION_TOPIC] = 2
    readers[EPISODE_TOPIC] = len(names)
    for topic in topics:
        if topic.msgtype.endswith("JointState"):
            readers[topic.target] = 1 + ("actuation" in names)
    readers[PRIVILEGED_TOPIC] = int(spec.privileged)
    return readers


def replay_policy(options: ReplayOptions, topics: Sequence[PlayTopic]) -> PolicySpec:
    """The policy to replay (a named one or a backend), if it can run on a bag with ``topics``.

    Raises ValueError before anything starts: for a named policy without its checkpoint, and for
    one that reads the sim's privileged state (the scripted expert) when the bag does not hold it,
    saying what to use instead (otherwise every tick would wait for a state that never comes).
    """
    try:
        spec = resolve_policy(options.policy, options.checkpoint)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    if spec.privileged and not any(t.target == PRIVILEGED_TOPIC for t in topics):
        raise ValueError(
            f"policy '{options.policy}' acts on the sim's ground truth ({PRIVILEGED_TOPIC}), which this bag "
            f"does not hold (it plays {sorted(t.target for t in topics)}); replay it with a policy "
            "that acts on what a robot records, e.g. --policy octo-sim (the cameras and the arm's "
            "joint states), or record the bag from the sim graph"
        )
    return spec


def play_settings(options: ReplayOptions) -> PlaySettings:
    """How to play: ``options``, with the control rate of config/control.yaml unless it sets one."""
    return PlaySettings(
        control_hz=options.control_hz if options.control_hz is not None else load_deployment().control_hz,
        fast=options.fast,
        rate=options.rate,
        seed=options.seed,
        startup_timeout_s=options.startup_timeout_s,
        action_timeout_s=options.action_timeout_s,
    )


def run_replay(options: ReplayOptions, log: Callable[[str], None] = print) -> int:
    """Replay ``options.bag`` through the graph; returns an exit status (2: bad input)."""
    if options.rate <= 0:
        log(f"[replay] error: --rate {options.rate} must be positive")
        return 2
    nodes = replay_nodes(options.with_actuation)
    try:
        settings = play_settings(options)
        source = BagSource(options.bag, parse_remaps(options.remaps))
        with source:
            messages = list(source.messages())
            reference = [text for _, text in source.reference_actions()]
        overrides = graph_overrides(options, source.topics, nodes, settings.control_hz)
    except ValueError as exc:
        log(f"[replay] error: {exc}")
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(options.out_dir) if options.out_dir else repo_root() / "out" / f"replay-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    launcher = GraphLauncher(
        nodes,
        apply_loopback_profile(log_dir=str(out_dir / "ros_logs")),
        overrides=overrides,
        log_dir=out_dir / "logs",
    )
    readers = expected_readers(source.topics, nodes, replay_policy(options, source.topics))
    return _run_graph(launcher, len(nodes), readers, source, messages, reference, settings, out_dir, log)


def _run_graph(
    launcher: GraphLauncher,
    nodes: int,
    readers: dict[str, int],
    source: BagSource,
    messages: list[PlayMessage],
    reference: list[str],
    settings: PlaySettings,
    out_dir: Path,
    log: Callable[[str], None],
) -> int:
    # lazy: replay_node imports rclpy; this module stays ROS-free (the CLI builds its parser from it)
    from vla_data.replay_node import play_through_graph

    ticks = control_ticks(messages[0].play_ns, messages[-1].play_ns, settings.period_ns)
    mode = "fast" if settings.fast else f"rate {settings.rate:g}"
    log(
        f"[replay] {source.path}: {len(messages)} messages, {len(ticks)} control ticks, {mode}; out {out_dir}"
    )
    # SIGINT/SIGTERM: the playback stops, then every node is stopped, the bag closed and the
    # report written as after any other failure (stop_signals); the exit status says which signal.
    with StopSignals() as stop:
        launcher.start()
        try:
            outcome = play_through_graph(
                source.topics,
                messages,
                ticks,
                settings,
                bag_dir=out_dir / "bag",
                nodes=nodes,
                readers=readers,
                poll_failure=launcher.poll,
                stop=stop,
            )
        finally:
            launcher.stop()
        return _finish(outcome, source, reference, ticks, settings, mode, out_dir, log, stop.received)


def _finish(
    outcome: PlayOutcome,
    source: BagSource,
    reference: list[str],
    ticks: Sequence[int],
    settings: PlaySettings,
    mode: str,
    out_dir: Path,
    log: Callable[[str], None],
    signalled: int | None,
) -> int:
    """Write the report and the plot, print the summary; the exit status (0 only with actions)."""
    report = build_report(
        outcome.action_texts,
        reference,
        outcome.stats,
        tolerance_ns=settings.period_ns // 2,
        bag=str(source.path),
        mode=mode,
    )
    report["output_bag"] = str(out_dir / "bag")
    report["playback"] = playback_speed(ticks, outcome.wall_s)
    if outcome.failure:
        report["failure"] = outcome.failure
    elif signalled is not None:
        report["failure"] = str(Interrupted(signalled))
    elif not outcome.action_texts:
        report["failure"] = (
            f"the policy produced no action on this bag ({report['frames']['observations']} observations); "
            f"its log: {out_dir / 'logs' / 'policy.log'}"
        )
    write_report(out_dir / "report.json", report)
    no_plot = write_plot(out_dir / "actions.png", outcome.action_texts, reference)
    _print_summary(report, out_dir, no_plot, log)
    if "failure" in report:
        log(f"[replay] FAILED: {report['failure']}")
        return 1 if signalled is None else 128 + signalled
    return 0


def playback_speed(ticks: Sequence[int], wall_s: float) -> dict[str, float | None]:
    """Seconds of bag played, wall seconds it took and their ratio (None when it never played)."""
    bag_s = (ticks[-1] - ticks[0]) / 1e9 if len(ticks) > 1 else 0.0
    return {
        "bag_s": round(bag_s, 3),
        "wall_s": round(wall_s, 3),
        "speed_x": round(bag_s / wall_s, 2) if wall_s > 0 else None,
    }


def _print_summary(report: dict, out_dir: Path, no_plot: str | None, log: Callable[[str], None]) -> None:
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
    log(f"[replay] plot:   {out_dir / 'actions.png'}" if no_plot is None else f"[replay] no plot: {no_plot}")


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
        options,
        log=lambda line: print(line, file=sys.stderr if "error" in line or "FAILED" in line else sys.stdout),
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
