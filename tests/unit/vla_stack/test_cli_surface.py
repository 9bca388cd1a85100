"""The ``vla-stack`` command keeps the surface users know: every subcommand, flag and default.

SURFACE was read from the argparse parser of src/vla_stack/cli.py at commit 2e963e4 (the CLI as it
stood when the packages were split). A refactor may move code around; it may not rename, drop or
re-default a flag. A new flag is allowed (the test only requires the recorded ones).
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import pytest

from vla_stack.cli import build_parser


class Flag(NamedTuple):
    default: object = None
    required: bool = False
    choices: tuple | None = None
    type: type | None = None  # int/float only (custom converters are checked by their own tests)
    nargs: object = None


EXECUTION_MODES = ("single_step", "receding_horizon", "temporal_ensembling")
NO_VALUE = 0  # nargs of a store_true flag

SURFACE: dict[str, dict[str, Flag]] = {
    "launch": {"profile": Flag(required=True), "--set": Flag([])},
    "demo": {
        "--policy": Flag("octo-sim"),
        "--instruction": Flag(None),
        "--episodes": Flag(3, type=int),
        "--seed": Flag(0, type=int),
        "--json": Flag(None),
        "--out": Flag(None),
        "--action-kind": Flag("continuous", choices=("continuous", "discrete")),
        "--checkpoint": Flag(""),
        "--backend-options": Flag("{}"),
        "--max-steps": Flag(80, type=int),
        "--set": Flag([]),
        "--execution-mode": Flag(None, choices=EXECUTION_MODES),
        "--real-time-factor": Flag(None, type=float),
        "--no-record": Flag(False, nargs=NO_VALUE),
        "--no-video": Flag(False, nargs=NO_VALUE),
    },
    "bench": {},
    "bench overhead": {"--steps": Flag(2000, type=int), "--no-write": Flag(False, nargs=NO_VALUE)},
    "bench policy": {
        "--backend": Flag(None, choices=("openvla", "rt2", "octo")),
        "--policy": Flag(None),
        "--size": Flag("tiny", choices=("tiny", "sim", "small", "base", "3b", "7b")),
        "--device": Flag("auto", choices=("auto", "cpu", "cuda")),
        "--dtype": Flag(None),
        "--steps": Flag(20, type=int),
        "--warmup": Flag(3, type=int),
        "--compile": Flag(False, nargs=NO_VALUE),
        "--no-write": Flag(False, nargs=NO_VALUE),
    },
    "bench control": {
        "--policy": Flag("octo-sim"),
        "--model-latency-ms": Flag(None, type=float, nargs="+"),
        "--jitter-pct": Flag(10.0, type=float),
        "--graph-episodes": Flag(3, type=int),
        "--replica-episodes": Flag(20, type=int),
        "--seed": Flag(0, type=int),
        "--rtc": Flag("both", choices=("both", "on", "off", "default")),
        "--success": Flag(False, nargs=NO_VALUE),
        "--episodes": Flag(80, type=int),
        "--seeds": Flag("heldout", choices=("heldout", "validation")),
        "--workers": Flag(1, type=int),
        "--out-json": Flag(None),
        "--no-write": Flag(False, nargs=NO_VALUE),
    },
    "bench replay": {
        "bag": Flag(required=True),
        "--runs": Flag(3, type=int),
        "--no-write": Flag(False, nargs=NO_VALUE),
    },
    "bench load": {
        "--size": Flag("7b", choices=("tiny", "7b")),
        "--layers": Flag(None, type=int),
        "--checkpoint": Flag(None),
        "--cache-dir": Flag(None),
        "--shard-gb": Flag(5.0, type=float),
        "--device": Flag("cpu", choices=("cpu", "cuda")),
        "--dtype": Flag("bfloat16"),
        "--load-in": Flag(None, choices=("8bit", "4bit")),
        "--unnorm-key": Flag("bridge_orig"),
        "--steps": Flag(1, type=int),
        "--warmup": Flag(0, type=int),
        "--compile": Flag(False, nargs=NO_VALUE),
        "--compile-backend": Flag("inductor"),
        "--no-write": Flag(False, nargs=NO_VALUE),
    },
    "bench demo": {
        "--policy": Flag("octo-sim"),
        "--device": Flag("auto", choices=("auto", "cpu", "cuda")),
        "--episodes": Flag(2, type=int),
        "--seed": Flag(0, type=int),
        "--max-steps": Flag(80, type=int),
        "--out": Flag(None),
        "--no-write": Flag(False, nargs=NO_VALUE),
    },
    "record": {
        "topics": Flag(None, required=True, nargs="*"),
        "-o/--output": Flag(None, required=True),
        "-s/--storage": Flag("mcap", choices=("mcap", "sqlite3")),
        "-d/--duration": Flag(None),
    },
    "replay": {
        "bag": Flag(required=True),
        "--rate": Flag(1.0, type=float),
        "--fast": Flag(False, nargs=NO_VALUE),
        "--remap": Flag([]),
        "--policy": Flag("scripted"),
        "--checkpoint": Flag(""),
        "--with-actuation": Flag(False, nargs=NO_VALUE),
        "-o/--out": Flag(None),
        "--seed": Flag(None, type=int),
        "--step-timeout": Flag(30.0, type=float),
    },
    "export": {
        "bags": Flag(None, required=True, nargs="+"),
        "-o/--output": Flag(None, required=True),
        "--camera": Flag([]),
        "--action-topic": Flag("/vla/action"),
        "--joint-states-topic": Flag("/wx250s/joint_states"),
        "--max-age": Flag(1.0, type=float),
        "--image-size": Flag(None),
        "--no-compress": Flag(False, nargs=NO_VALUE),
    },
    "train": {
        "config": Flag(required=True),
        "--out": Flag(None),
        "--steps": Flag(None, type=int),
        "--recollect": Flag(False, nargs=NO_VALUE),
    },
    "collect": {
        "--out": Flag("data/sim_demos"),
        "--episodes": Flag(200, type=int),
        "--seed-start": Flag(100000, type=int),
        "--workers": Flag(2, type=int),
        "--primary-size": Flag(128, type=int),
        "--wrist-size": Flag(64, type=int),
        "--primary-crop": Flag(None, type=float, nargs=4),
    },
    "pair-check": {
        "--checkpoint": Flag(""),
        "--decisions": Flag("data/sim_decisions"),
        "--counterfactuals": Flag("data/sim_counterfactuals"),
        "--pairs": Flag(100, type=int),
    },
    "eval": {
        "--policy": Flag("octo-sim"),
        "--episodes": Flag(60, type=int),
        "--seeds": Flag("heldout"),
        "--instructions": Flag(None),
        "--language": Flag("template", choices=("template", "empty", "wrong")),
        "--json": Flag(None),
        "--out": Flag(None),
        "--checkpoint": Flag(""),
        "--backend-options": Flag("{}"),
        "--real-time-factor": Flag(None, type=float),
        "--execution-mode": Flag(None, choices=EXECUTION_MODES),
        "--replica": Flag(False, nargs=NO_VALUE),
    },
    "soak": {
        "--minutes": Flag(None, required=True, type=float),
        "--warmup-s": Flag(60.0, type=float),
        "--policy": Flag("octo-sim"),
        "--seed": Flag(0, type=int),
        "--json": Flag(None),
        "--out": Flag(None),
    },
    "backends": {},
    "convert": {
        "model": Flag(required=True, choices=("octo",)),
        "release": Flag(required=True),
        "out": Flag(required=True),
        "--tokenizer": Flag(None, required=True),
        "--dataset": Flag(None),
        "--step": Flag(None, type=int),
    },
    "inspect": {
        "checkpoint": Flag(required=True),
        "--profile": Flag("sim"),
        "--policy": Flag(None),
        "--backend-options": Flag("{}"),
        "--action-kind": Flag(None, choices=("continuous", "discrete")),
        "--execution-mode": Flag(None, choices=EXECUTION_MODES),
        "--set": Flag([]),
    },
}


def commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> dict[str, argparse.ArgumentParser]:
    """'demo', 'bench policy', ... -> the parser of that (sub)command."""
    found = {" ".join(prefix): parser} if prefix else {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(commands(sub, (*prefix, name)))
    return found


def flags(parser: argparse.ArgumentParser) -> dict[str, Flag]:
    """Option strings joined by '/' (or a positional's dest) -> what the surface records of it."""
    out = {}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        key = "/".join(action.option_strings) or action.dest
        kind = action.type if action.type in (int, float) else None
        choices = tuple(action.choices) if action.choices else None
        out[key] = Flag(action.default, action.required, choices, kind, action.nargs)
    return out


def surface_problems(parser: argparse.ArgumentParser, surface: dict[str, dict[str, Flag]]) -> list[str]:
    """Each recorded subcommand or flag that is missing or differs, as one line."""
    found = commands(parser)
    problems = [f"subcommand '{c}' is missing" for c in surface if c not in found]
    for command, expected in surface.items():
        if command not in found:
            continue
        actual = flags(found[command])
        for key, flag in expected.items():
            if key not in actual:
                problems.append(f"'{command}': flag '{key}' is missing")
            elif actual[key] != flag:
                problems.append(f"'{command}' {key}: {actual[key]} != recorded {flag}")
    return problems


def test_every_recorded_subcommand_and_flag_exists_with_its_default():
    assert surface_problems(build_parser(), SURFACE) == []


def test_no_subcommand_appeared_unrecorded():
    assert set(commands(build_parser())) == set(SURFACE)


def test_the_checker_sees_a_dropped_flag_and_a_changed_default():
    parser = argparse.ArgumentParser()
    demo = parser.add_subparsers().add_parser("demo")
    demo.add_argument("--episodes", type=int, default=4)
    surface = {"demo": {"--episodes": Flag(3, type=int), "--seed": Flag(0, type=int)}, "eval": {}}
    problems = surface_problems(parser, surface)
    assert "subcommand 'eval' is missing" in problems
    assert "'demo': flag '--seed' is missing" in problems
    assert any(p.startswith("'demo' --episodes:") for p in problems)


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "policy"],  # --backend or --policy is required
        ["bench", "policy", "--backend", "octo", "--policy", "octo-sim"],
        ["replay", "bag", "--rate", "2", "--fast"],
    ],
)
def test_the_mutually_exclusive_groups_still_hold(argv):
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)


def test_each_command_dispatches_to_a_callable():
    parser = build_parser()
    for argv in (["launch", "sim"], ["demo"], ["bench", "overhead"], ["eval"], ["backends"]):
        assert callable(parser.parse_args(argv).func)
