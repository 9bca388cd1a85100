"""``vla-stack soak``: the sim graph with a policy, every subscribed topic fuzzed, for M minutes.

The sim, perception, policy and actuation nodes run as in ``vla-stack demo`` (episodes forever).
Once the first episode starts, a fuzzer publishes well-formed and malformed messages on every topic
the graph subscribes to (vla_eval.fuzz_messages, a few Hz per topic) for a warm-up period and then
for the soak itself. The report holds what the acceptance bounds judge (docs/reliability.md):
crashes (node exits), memory per node after the warm-up and at the end, arm commands beyond a
position or speed limit, tool steps beyond the per-step bound and commands from a previous episode
(vla_eval.arm_monitor, on actuation's commands only), unexpected errors on /diagnostics; and what
explains them: episodes, rejections per kind, the servo loop's overruns, how far the sim fell
behind real time, how late the fuzzer published (the machine's load, not the stack's).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_bringup.launcher import GraphLauncher
from vla_bringup.paths import repo_root
from vla_bringup.policies import DEFAULT_POLICY, resolve_policy
from vla_bringup.profiles import NodeSpec, profile
from vla_bringup.ros_env import apply_loopback_profile
from vla_eval.bench_report import machine_description
from vla_eval.demo import DemoOptions, demo_overrides

# The sim's cameras are raw: a second perception node, on a compressed camera that only the fuzzer
# feeds, gives the CompressedImage path a subscriber (its observations go to no policy).
JPEG_PERCEPTION = NodeSpec(
    "perception_jpeg",
    "vla_perception.perception_node",
    ("control",),
    {
        "use_sim_time": True,
        "cameras": ["jpeg"],
        "jpeg.topic": "/soak/camera/jpeg/compressed",
        "jpeg.transport": "compressed",
        "jpeg.height": 64,
        "jpeg.width": 64,
    },
)
# Topic, fuzz kind and messages per second: every topic the graph subscribes to (the sim's arm and
# gripper commands: malformed only).
FUZZ_TOPICS: tuple[tuple[str, str, float], ...] = (
    ("/soak/camera/jpeg/compressed", "compressed_image", 2.0),
    ("/camera/third_person/image_raw", "image", 2.0),
    ("/camera/wrist/image_raw", "image", 2.0),
    ("/vla/observation/primary", "image", 1.0),
    ("/vla/observation/wrist", "image", 1.0),
    ("/vla/instruction", "instruction", 0.5),
    ("/vla/action", "action", 3.0),
    ("/vla/episode", "episode", 0.3),
    ("/sim/privileged_state", "privileged_state", 1.0),
    ("/wx250s/joint_states", "joint_state", 2.0),
    ("/wx250s/arm_controller/joint_trajectory", "arm_command", 0.5),
    ("/wx250s/gripper_controller/joint_trajectory", "gripper_command", 0.5),
)
MAX_RSS_GROWTH_PCT = 5.0  # per node, from the end of the warm-up to the end of the soak
STARTUP_TIMEOUT_S = 300.0  # a model policy loads its weights before the first episode
DIAGNOSTICS_SETTLE_S = 1.5  # every node publishes /diagnostics once a second
REJECTION_PATTERN = re.compile(
    r"^(rejected|bad_|refused|violation\.|stale_|oversized|step_dt_mismatch|joint_state_jumps)"
)
UNEXPECTED_PREFIX = "unexpected_error."
SIM_REJECTED_LOG = "rejected trajectory on "
UNEXPECTED_LOG = "(unexpected, #"
OVERRUN_COUNTERS = ("servo_overruns",)


@dataclass(frozen=True)
class SoakOptions:
    """What ``vla-stack soak`` was asked to run."""

    minutes: float
    warmup_s: float = 60.0
    policy: str = DEFAULT_POLICY
    seed: int = 0
    json_path: str | None = None
    out_dir: str | None = None
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    command: str = ""

    def __post_init__(self) -> None:
        if not (self.minutes > 0 and np.isfinite(self.minutes)):
            raise ValueError(f"--minutes {self.minutes}: expected a positive number")
        if not (self.warmup_s >= 0 and np.isfinite(self.warmup_s)):
            raise ValueError(f"--warmup-s {self.warmup_s}: expected a number >= 0")


# --- pure pieces: memory, counters, the report ------------------------------------------------------


def vmrss_kib(status_text: str) -> int | None:
    """VmRSS (KiB) from the text of /proc/<pid>/status; None when absent (a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def rss_mb(pids: dict[str, int]) -> dict[str, float | None]:
    """Resident memory (MB) of each node's process; None for one that is gone."""
    out: dict[str, float | None] = {}
    for name, pid in pids.items():
        try:
            kib = vmrss_kib(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            kib = None
        out[name] = None if kib is None else round(kib / 1024.0, 1)
    return out


def rss_growth(after_warmup: dict[str, float | None], end: dict[str, float | None]) -> dict[str, dict]:
    """Per node: MB after the warm-up, at the end, and the growth in % (None if either is missing)."""
    out = {}
    for name, before in after_warmup.items():
        after = end.get(name)
        growth = None if not before or after is None else round(100.0 * (after - before) / before, 2)
        out[name] = {"after_warmup_mb": before, "end_mb": after, "growth_pct": growth}
    return out


def split_counters(counters: dict[str, dict[str, int]]) -> tuple[dict, dict, dict]:
    """(unexpected errors, rejections, overruns) per node from their /diagnostics counters."""
    unexpected, rejections, overruns = {}, {}, {}
    for node, values in sorted(counters.items()):
        unexpected[node] = {
            k[len(UNEXPECTED_PREFIX) :]: v for k, v in values.items() if k.startswith(UNEXPECTED_PREFIX)
        }
        rejections[node] = {k: v for k, v in sorted(values.items()) if REJECTION_PATTERN.match(k)}
        for key in OVERRUN_COUNTERS:
            if key in values:
                overruns[f"{node}.{key}"] = values[key]
    return unexpected, rejections, overruns


def log_counts(log_dir: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """Per node log: lines of unexpected errors (the guard's, throttled: a lower bound) and, for the
    sim, of rejected trajectories (it has no /diagnostics counters)."""
    out = {}
    for name in names:
        path = log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        counts = {"unexpected_error_lines": text.count(UNEXPECTED_LOG)}
        if name == "sim":
            counts["rejected_trajectory_lines"] = text.count(SIM_REJECTED_LOG)
        out[name] = counts
    return out


def foreign_nodes(census: dict[str, int], expected: list[str]) -> dict[str, int]:
    """Nodes on the domain that are not this soak's (or more of one name than it started)."""
    return {name: n for name, n in sorted(census.items()) if name not in expected or n > 1}


def acceptance(report: dict) -> dict[str, dict]:
    """Each acceptance figure: its value, its bound and whether it passes."""
    violations = Counter(report["arm"]["violations"])
    growth = {n: g["growth_pct"] for n, g in report["rss"].items()}
    worst_growth = max((g for g in growth.values() if g is not None), default=None)
    # per node, the guard's count on /diagnostics or, if higher (a node without it), its log lines
    nodes = set(report["unexpected_errors"]) | set(report["logs"])
    unexpected = sum(
        max(
            sum(report["unexpected_errors"].get(node, {}).values()),
            report["logs"].get(node, {}).get("unexpected_error_lines", 0),
        )
        for node in nodes
    )
    figures = {
        "crashes": (len(report["crashes"]), "0", len(report["crashes"]) == 0),
        "position_or_speed_limit": (
            violations["position_limit"] + violations["joint_speed"],
            "0",
            violations["position_limit"] + violations["joint_speed"] == 0,
        ),
        "tool_step_beyond_bound": (
            violations["tool_step_m"] + violations["tool_step_rad"],
            "0",
            violations["tool_step_m"] + violations["tool_step_rad"] == 0,
        ),
        "previous_episode_commands": (
            violations["previous_episode"],
            "0",
            violations["previous_episode"] == 0,
        ),
        "max_rss_growth_pct": (
            worst_growth,
            f"< {MAX_RSS_GROWTH_PCT:g}",
            all(g is not None and g < MAX_RSS_GROWTH_PCT for g in growth.values()) and bool(growth),
        ),
        "unexpected_errors": (unexpected, "0", unexpected == 0),
        "arm_commands_judged": (report["arm"]["commands"], "> 0", report["arm"]["commands"] > 0),
        "foreign_nodes_on_domain": (len(report["foreign_nodes"]), "0", not report["foreign_nodes"]),
        # a soak cut short (a crash, Ctrl-C) judged less than it was asked to
        "soak_minutes_completed": (
            round(report["soak_s"] / 60.0, 2),
            f">= {report['minutes']:g}",
            report["soak_s"] >= report["minutes"] * 60.0 - 1.0,
        ),
    }
    return {name: {"value": v, "bound": b, "pass": bool(ok)} for name, (v, b, ok) in figures.items()}


def build_report(
    options: SoakOptions,
    *,
    observed: dict,
    rss_after_warmup: dict,
    rss_end: dict,
    crashes: list[str],
    soak_s: float,
    logs: dict,
) -> dict:
    """The soak's report (JSON-serialisable) from what was observed; ``acceptance`` and ``passed`` judged."""
    summary = observed["monitor"]
    unexpected, rejections, overruns = split_counters(observed["counters"])
    overruns_before = split_counters(observed.get("counters_after_warmup", {}))[2]
    ends = observed["episode_ends"]
    lag = np.asarray(observed["fuzz_lag_s"] or [0.0])
    report = {
        "command": options.command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(),
        "policy": options.policy,
        "seed": options.seed,
        "minutes": options.minutes,
        "warmup_s": options.warmup_s,
        "soak_s": round(soak_s, 1),
        "crashes": crashes,
        "domain_id": os.environ.get("ROS_DOMAIN_ID", ""),
        "foreign_nodes": observed["foreign_nodes"],
        "rss": rss_growth(rss_after_warmup, rss_end),
        "arm": {
            "commands": summary["commands"],
            "violations": dict(summary["violations"]),
            "max_joint_speed_rad_s": round(summary["max_joint_speed_rad_s"], 4),
            "max_tool_step_m": round(summary["max_tool_step_m"], 4),
            "max_tool_step_rad": round(summary["max_tool_step_rad"], 4),
            "commands_by_publisher": observed["arm_publishers"],
            "violation_details": observed["violations"][:50],
            "monitor_errors": observed["monitor_errors"][:20],
        },
        "episodes": {
            "started": observed["episode_starts"],
            "completed": len(ends),
            "succeeded": sum(bool(e.get("success")) for e in ends),
        },
        "unexpected_errors": unexpected,
        "rejections": rejections,
        "counters": observed["counters"],  # every node's /diagnostics counters at the end
        "logs": logs,
        "fuzz": {
            "published": observed["published"],
            "unpublishable": observed["unpublishable"],
            "starved": observed["starved"],
            "total": sum(sum(labels.values()) for labels in observed["published"].values()),
        },
        "load": {
            "overruns": overruns,
            "overruns_during_soak": {k: v - overruns_before.get(k, 0) for k, v in overruns.items()},
            "sim_time_per_wall_s": observed["sim_time_per_wall_s"],
            "fuzz_lag_p50_s": round(float(np.percentile(lag, 50)), 3),
            "fuzz_lag_p99_s": round(float(np.percentile(lag, 99)), 3),
            "loadavg_1min": round(os.getloadavg()[0], 2),
        },
    }
    report["acceptance"] = acceptance(report)
    report["passed"] = all(figure["pass"] for figure in report["acceptance"].values())
    return report


def by_kind_and_label(counts: Counter) -> dict[str, dict[str, int]]:
    """{(kind, label): n} -> {kind: {label: n}} (sorted, JSON-friendly)."""
    out: dict[str, dict[str, int]] = {}
    for (kind, label), n in sorted(counts.items()):
        out.setdefault(kind, {})[label] = n
    return out


def markdown_table(report: dict) -> str:
    """The acceptance figures and the context that explains them, as a markdown table."""
    rows = [("figure", "value", "bound", "pass")]
    for name, figure in report["acceptance"].items():
        rows.append((name, _fmt(figure["value"]), figure["bound"], "yes" if figure["pass"] else "NO"))
    for node, growth in report["rss"].items():
        rows.append(
            (
                f"rss {node} (MB)",
                f"{_fmt(growth['after_warmup_mb'])} -> {_fmt(growth['end_mb'])} "
                f"({_fmt(growth['growth_pct'])} %)",
                f"< {MAX_RSS_GROWTH_PCT:g} %",
                "",
            )
        )
    arm, episodes, load = report["arm"], report["episodes"], report["load"]
    rows += [
        ("max joint speed (rad/s)", _fmt(arm["max_joint_speed_rad_s"]), "", ""),
        (
            "max tool step (m / rad)",
            f"{_fmt(arm['max_tool_step_m'])} / {_fmt(arm['max_tool_step_rad'])}",
            "",
            "",
        ),
        ("episodes completed (succeeded)", f"{episodes['completed']} ({episodes['succeeded']})", "", ""),
        ("fuzzed messages", str(report["fuzz"]["total"]), "", ""),
        ("rejections (all nodes)", str(sum(sum(v.values()) for v in report["rejections"].values())), "", ""),
        ("servo overruns (during the soak)", str(sum(load["overruns_during_soak"].values())), "", ""),
        ("sim time per wall second", _fmt(load["sim_time_per_wall_s"]), "", ""),
        (
            "fuzz lag p50 / p99 (s)",
            f"{_fmt(load['fuzz_lag_p50_s'])} / {_fmt(load['fuzz_lag_p99_s'])}",
            "",
            "",
        ),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + "---|" * len(rows[0]))
    return "\n".join(lines)


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


# --- the run ----------------------------------------------------------------------------------------


def soak_overrides(options: SoakOptions) -> dict[str, dict[str, object]]:
    """The demo's sim graph with episodes forever, no recorder."""
    spec = resolve_policy(options.policy)
    demo = DemoOptions(policy=options.policy, episodes=0, seed=options.seed, record=False, video=False)
    return demo_overrides(demo, spec)


def run_soak(options: SoakOptions) -> int:
    """Run the soak; prints the table, writes the JSON; 0 when every acceptance figure passes."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(options.out_dir) if options.out_dir else repo_root() / "out" / f"soak-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = apply_loopback_profile(log_dir=str(out_dir / "ros_logs"))
    nodes = [*profile("sim"), JPEG_PERCEPTION]
    launcher = GraphLauncher(nodes, env, overrides=soak_overrides(options), log_dir=out_dir / "logs")
    print(
        f"[soak] policy={options.policy} minutes={options.minutes:g} warm-up={options.warmup_s:g} s "
        f"seed={options.seed}; logs in {out_dir / 'logs'}"
    )
    launcher.start()
    try:
        report = _soak(options, launcher, out_dir)
    finally:
        launcher.stop()
    print(markdown_table(report))
    json_path = Path(options.json_path) if options.json_path else out_dir / "soak.json"
    json_path.write_text(json.dumps(report, indent=2))
    print(f"[soak] report written to {json_path}")
    if report["foreign_nodes"]:
        print(
            f"[soak] other nodes share ROS_DOMAIN_ID={report['domain_id']}: {report['foreign_nodes']}; their "
            "messages reached this graph and its judge. Run again with an unused ROS_DOMAIN_ID.",
            file=sys.stderr,
        )
    failed = [name for name, figure in report["acceptance"].items() if not figure["pass"]]
    if failed:
        print(f"[soak] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _soak(options: SoakOptions, launcher: GraphLauncher, out_dir: Path) -> dict:
    # lazy: soak_node imports rclpy; soak.py stays ROS-free (the CLI builds its parser from it)
    from vla_eval.soak_node import FUZZ_NODE, FuzzTopic, SoakSession

    pids = {n.spec.name: n.process.pid for n in launcher.running}
    crashes: list[str] = []
    with SoakSession() as node:
        started = _wait(
            lambda: node.episode_starts > 0,
            options.startup_timeout_s,
            launcher,
            crashes,
            each=node.take_census,
        )
        if not started:
            if not crashes:
                crashes.append(f"no episode started within {options.startup_timeout_s:.0f} s")
        node.start_fuzz([FuzzTopic(*t) for t in FUZZ_TOPICS], options.seed)
        if not crashes:
            _wait(lambda: False, options.warmup_s, launcher, crashes, each=node.take_census)
        rss_after_warmup = rss_mb(pids)
        with node.lock:
            counters_after_warmup = {k: dict(v) for k, v in node.counters.items()}
        sim_start = (node.get_clock().now().nanoseconds, time.monotonic())
        soak_start = time.monotonic()
        if not crashes:
            _soak_with_bar(options.minutes, launcher, crashes, node.take_census)
        soak_s = time.monotonic() - soak_start
        rss_end = rss_mb(pids)
        sim_rate = (
            (node.get_clock().now().nanoseconds - sim_start[0])
            * 1e-9
            / max(1e-9, time.monotonic() - sim_start[1])
        )
        node.stop_fuzz()
        time.sleep(DIAGNOSTICS_SETTLE_S)
        observed = _observed(node)
        observed["sim_time_per_wall_s"] = round(sim_rate, 3)
        observed["counters_after_warmup"] = counters_after_warmup
        observed["foreign_nodes"] = foreign_nodes(observed.pop("census"), [*pids, FUZZ_NODE])
    return build_report(
        options,
        observed=observed,
        rss_after_warmup=rss_after_warmup,
        rss_end=rss_end,
        crashes=crashes,
        soak_s=soak_s,
        logs=log_counts(out_dir / "logs", list(pids)),
    )


def _observed(node) -> dict:
    with node.lock:
        return {
            "monitor": node.monitor.summary(),
            "counters": {k: dict(v) for k, v in node.counters.items()},
            "episode_starts": node.episode_starts,
            "episode_ends": list(node.episode_ends),
            "arm_publishers": dict(node.arm_publishers),
            "violations": list(node.violations),
            "monitor_errors": list(node.monitor_errors),
            "published": by_kind_and_label(node.published),
            "unpublishable": by_kind_and_label(node.unpublishable),
            "fuzz_lag_s": list(node.fuzz_lag_s),
            "starved": dict(node.starved),
            "census": dict(node.node_census),
        }


def _wait(done, timeout_s: float, launcher: GraphLauncher, crashes: list[str], each=None) -> bool:
    """Poll until ``done()`` or the timeout, calling ``each()`` every poll; a node that exits is a
    crash (recorded, returns False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if each is not None:
            each()
        if done():
            return True
        failure = launcher.poll()
        if failure:
            crashes.append(failure)
            return False
        time.sleep(0.1)
    return done()


def _soak_with_bar(minutes: float, launcher: GraphLauncher, crashes: list[str], census) -> None:
    """The soak's minutes, with a progress bar; Ctrl-C ends them early (the report still comes)."""
    try:
        _minutes_with_bar(minutes, launcher, crashes, census)
    except KeyboardInterrupt:
        print("[soak] interrupted: reporting what was seen so far", file=sys.stderr)


def _minutes_with_bar(minutes: float, launcher: GraphLauncher, crashes: list[str], census) -> None:
    total_s = minutes * 60.0
    start = time.monotonic()
    with tqdm(
        total=round(minutes, 2), unit="min", desc="soak", file=sys.stdout, disable=not sys.stdout.isatty()
    ) as bar:
        while (elapsed := time.monotonic() - start) < total_s:
            failure = launcher.poll()
            if failure:
                crashes.append(failure)
                return
            census()
            bar.n = round(min(elapsed, total_s) / 60.0, 2)
            bar.refresh()
            time.sleep(min(1.0, max(0.0, total_s - elapsed)))
        bar.n = bar.total
        bar.refresh()


def add_soak_parser(sub) -> None:
    """``vla-stack soak``'s arguments (registered by vla_stack.cli)."""
    soak = sub.add_parser(
        "soak", help="the sim graph under fuzzed input for M minutes; judged against bounds"
    )
    soak.add_argument("--minutes", type=float, required=True, help="length of the soak after the warm-up")
    soak.add_argument("--warmup-s", type=float, default=60.0, help="fuzzed warm-up before memory is measured")
    soak.add_argument(
        "--policy", default=DEFAULT_POLICY, help="octo-sim (default) | scripted | a backend name"
    )
    soak.add_argument("--seed", type=int, default=0, help="the sim's episodes and the fuzz stream")
    soak.add_argument("--json", default=None, help="write the report here (default <out>/soak.json)")
    soak.add_argument("--out", default=None, help="folder for logs and the report (default out/soak-<time>)")
    soak.set_defaults(func=cmd_soak)


def cmd_soak(args) -> int:
    run = {name: getattr(args, name) for name in ("minutes", "warmup_s", "policy", "seed")}
    command = ["vla-stack", "soak", "--minutes", f"{args.minutes:g}", "--warmup-s", f"{args.warmup_s:g}"]
    command += ["--policy", args.policy, "--seed", str(args.seed)]
    try:
        options = SoakOptions(**run, json_path=args.json, out_dir=args.out, command=shlex.join(command))
    except ValueError as exc:
        raise SystemExit(f"[vla-stack] soak: {exc}") from None
    return run_soak(options)
