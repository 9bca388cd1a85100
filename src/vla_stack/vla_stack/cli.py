"""The ``vla-stack`` command: launch, demo, eval, train, collect, bench, record, replay, export, soak,
backends, convert, inspect."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from vla_actuation.chunk_executor import MODES as EXECUTION_MODES
from vla_bringup.launcher import GraphLauncher
from vla_bringup.policies import DEFAULT_POLICY, describe_policies, named_policies, resolve_policy
from vla_bringup.preflight import format_report, graph_parameters, preflight
from vla_bringup.profiles import profile
from vla_bringup.ros_env import loopback_environment
from vla_data.dataset_export import add_export_parser
from vla_data.record_cli import add_record_parser
from vla_data.replay import add_replay_parser
from vla_eval.bench import add_bench_parser
from vla_eval.demo import DemoOptions, run_demo
from vla_eval.evaluate import add_eval_parser
from vla_eval.soak import add_soak_parser
from vla_policy.checkpoint_summary import summarise_checkpoint
from vla_policy.contract import available_backends
from vla_training.train_cli import add_train_parsers


def _parse_set(items: Sequence[str]) -> dict[str, dict[str, object]]:
    """--set node.param=value (value parsed as YAML) -> {node: {param: value}}."""
    overrides: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise SystemExit(f"--set '{item}': expected NODE.PARAM=VALUE, e.g. policy.backend=scripted")
        overrides.setdefault(node, {})[param] = yaml.safe_load(raw)
    return overrides


def cmd_launch(args: argparse.Namespace) -> int:
    env = loopback_environment()
    try:
        launcher = GraphLauncher(profile(args.profile), env, overrides=_parse_set(args.set), echo=True)
    except ValueError as exc:
        raise SystemExit(f"[vla-stack] launch: {exc}") from None
    print(
        f"[vla-stack] launching '{args.profile}' on ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} "
        f"(Fast DDS profile {env['FASTDDS_DEFAULT_PROFILES_FILE']}); Ctrl-C stops"
    )
    launcher.start()
    return launcher.wait()


def cmd_demo(args: argparse.Namespace) -> int:
    options = DemoOptions(
        policy=args.policy,
        instruction=args.instruction,
        episodes=args.episodes,
        seed=args.seed,
        json_path=args.json,
        out_dir=args.out,
        action_kind=args.action_kind,
        execution_mode=args.execution_mode,
        real_time_factor=args.real_time_factor,
        record=not args.no_record,
        video=not args.no_video,
        checkpoint=args.checkpoint,
        backend_options=args.backend_options,
        max_steps=args.max_steps,
        overrides=_parse_set(args.set),
    )
    return run_demo(options)


def backends_listing() -> list[str]:
    """The policy backends, then the named policies (each a backend with its checkpoint and options)."""
    lines = ["backends (the policy node's `backend`; a model one needs --checkpoint):"]
    lines += [f"  {name}" for name in available_backends()]
    lines.append("named policies (--policy NAME, or --set policy.backend=NAME):")
    width = max(len(name) for name in describe_policies())
    lines += [f"  {name:<{width}}  {text}" for name, text in describe_policies().items()]
    return lines


def cmd_backends(_: argparse.Namespace) -> int:
    print("\n".join(backends_listing()))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    # lazy: the converter pulls in torch and the Octo model; the other subcommands must not pay for it
    from vla_policy.backends.octo.release import convert_release

    try:
        result = convert_release(args.release, args.out, args.tokenizer, dataset=args.dataset, step=args.step)
    except ImportError as exc:
        raise SystemExit(f"vla-stack convert: {exc}") from None
    config = result.config
    print(
        f"[convert] {args.release} (step {result.step}) -> {result.directory}: "
        f"{result.parameters:,} parameters, cameras {dict(config.image_size)}, window {config.window}, "
        f"chunk {config.action_horizon} x {config.action_dim}, repeated task tokens "
        f"{config.repeat_task_tokens}, statistics '{result.dataset}'"
    )
    print(f"[convert] next: vla-stack inspect {result.directory}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the checkpoint's pre-flight report; exit 1 when it does not fit the graph's parameters."""
    checkpoint, options, execution_mode = args.checkpoint, json.loads(args.backend_options or "{}"), None
    if not Path(checkpoint).expanduser().is_dir() and checkpoint in named_policies():
        spec = resolve_policy(checkpoint, options=options)
        checkpoint, options, execution_mode = spec.checkpoint, spec.options, spec.execution_mode
    if not isinstance(options, dict):
        raise ValueError(f"--backend-options: expected a JSON object, got {args.backend_options!r}")
    summary = summarise_checkpoint(checkpoint)
    policy: dict[str, object] = {
        "backend": args.policy or summary.backend,
        "checkpoint": str(summary.directory),
        "backend_options": json.dumps(options),
    }
    if args.action_kind:
        policy["action_kind"] = args.action_kind
    overrides: dict[str, dict[str, object]] = {"policy": policy}
    if args.execution_mode or execution_mode:
        overrides["actuation"] = {"execution_mode": args.execution_mode or execution_mode}
    for node, params in _parse_set(args.set).items():
        overrides[node] = {**overrides.get(node, {}), **params}
    report = preflight(summary, graph_parameters(args.profile, overrides))
    print(format_report(report))
    return 1 if report.mismatches else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_launch_parser(sub)
    _add_demo_parser(sub)
    add_bench_parser(sub)
    add_record_parser(sub)
    add_replay_parser(sub)
    add_export_parser(sub)
    add_train_parsers(sub)
    add_eval_parser(sub)
    add_soak_parser(sub)
    backends = sub.add_parser("backends", help="list the policy backends and the named policies")
    backends.set_defaults(func=cmd_backends)
    _add_convert_parser(sub)
    _add_inspect_parser(sub)
    return parser


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    convert = sub.add_parser(
        "convert", help="an official model release -> a backend checkpoint (octo: needs the convert extra)"
    )
    convert.add_argument("model", choices=["octo"], help="which release format")
    convert.add_argument(
        "release", help="the release directory (config.json, dataset_statistics.json, <step>/)"
    )
    convert.add_argument("out", help="the checkpoint directory to write")
    convert.add_argument(
        "--tokenizer", required=True, help="a local copy of the release's T5 tokenizer ('t5-base' files)"
    )
    convert.add_argument("--dataset", default=None, help="whose action statistics, e.g. bridge_dataset")
    convert.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    convert.set_defaults(func=cmd_convert)


def _add_inspect_parser(sub: argparse._SubParsersAction) -> None:
    inspect = sub.add_parser(
        "inspect", help="pre-flight report of a checkpoint against the graph's parameters (exit 1: mismatch)"
    )
    inspect.add_argument("checkpoint", help="an octo, openvla or rt2 checkpoint directory, or a named policy")
    inspect.add_argument(
        "--profile", default="sim", help="the graph whose parameters feed it (sim | widowx | ...)"
    )
    inspect.add_argument(
        "--policy", default=None, help="the backend the run would name (default: the checkpoint's)"
    )
    inspect.add_argument(
        "--backend-options", default="{}", help='JSON, e.g. \'{"unnorm_key": "bridge_dataset"}\''
    )
    inspect.add_argument("--action-kind", default=None, choices=["continuous", "discrete"])
    inspect.add_argument("--execution-mode", default=None, choices=EXECUTION_MODES)
    inspect.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    inspect.set_defaults(func=cmd_inspect)


def _add_launch_parser(sub: argparse._SubParsersAction) -> None:
    launch = sub.add_parser("launch", help="start a node graph (sim | widowx | replay) and supervise it")
    launch.add_argument("profile")
    launch.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE")
    launch.set_defaults(func=cmd_launch)


def _add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="closed-loop episodes in the embedded sim through the node graph")
    demo.add_argument(
        "--policy", default=DEFAULT_POLICY, help="octo-sim (trained on the sim) | scripted | a backend name"
    )
    demo.add_argument("--instruction", default=None, help="override every episode's instruction")
    demo.add_argument("--episodes", type=int, default=3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", default=None, help="write the results here")
    demo.add_argument("--out", default=None, help="folder for video, bag and logs (default out/demo-<time>)")
    demo.add_argument("--action-kind", default="continuous", choices=["continuous", "discrete"])
    demo.add_argument("--checkpoint", default="", help="checkpoint directory for a model backend")
    demo.add_argument("--backend-options", default="{}", help='JSON, e.g. \'{"unnorm_key": "bridge_orig"}\'')
    demo.add_argument("--max-steps", type=int, default=80, help="control steps per episode")
    demo.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="any node parameter, e.g. sim.camera_width=160",
    )
    demo.add_argument("--execution-mode", default=None, choices=EXECUTION_MODES)
    demo.add_argument(
        "--real-time-factor", type=float, default=None, help="sim speed (default from sim.yaml)"
    )
    demo.add_argument("--no-record", action="store_true", help="skip the MCAP bag")
    demo.add_argument("--no-video", action="store_true", help="skip the MP4")
    demo.set_defaults(func=cmd_demo)


DEBUG_ENV = "VLA_STACK_DEBUG"  # set to 1 for the traceback of a configuration error


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. What the user gave wrongly (a value, a missing file) ends with one line
    naming it and exit status 2, as argparse does for a bad flag; ``VLA_STACK_DEBUG=1`` shows the
    traceback instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
