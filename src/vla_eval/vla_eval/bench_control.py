"""``vla-stack bench control``: the control loop with a model of a chosen latency, through the node
graph and the graph replica, and the closed-loop success that latency leaves (docs/benchmarks.md).

The policy (octo-sim by default) is padded to an injected latency L (+- ``--jitter-pct``,
``policy.inject_latency_s``; in the replica the same draws in simulated time). For each L:

- **graph** (``vla-stack demo`` with the arm judged, ``--graph-episodes``): the policy node's
  inference and the actuation's frame_to_action p50/p99 (stamp of the frame -> its chunk accepted,
  sim time), the actuation's ExecutionStats (idle fraction: control ticks with nothing to execute;
  chunk-join jumps in joints and tool against the per-step bound) and the fastest joint speed of
  the streamed commands, judged independently (vla_eval.arm_monitor);
- **replica** (``--replica-episodes``): the same figures from the replica's actuation (its joint
  speed from the min-jerk waypoints it streams).

``--success`` instead runs octo-sim's closed-loop success in the replica at L = 0, 1 and 2 control
periods, with and without real-time chunking, over ``--episodes`` held-out episodes (validation
episodes with ``--seeds validation``: for choosing settings, never written to the docs), with
Wilson 95 % intervals.

Both raise ``max_open_loop_s`` (policy and actuation) to the chunk's length, so a chunk can still
run when it arrives a latency after its frame (the default 0.5 s plays 2 of 4 steps and refuses a
chunk that arrives more than 0.3 s late); every row runs with the same bound.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from vla_bringup.deployment import load_deployment
from vla_bringup.policies import DEFAULT_POLICY
from vla_eval.bench_report import machine_description, print_and_write, today, wilson_interval

DEFAULT_LATENCY_PERIODS = (0.0, 1.5, 2.0)  # the rows of the control table, in control periods
SUCCESS_LATENCY_PERIODS = (0.0, 1.0, 2.0)  # the success table's latencies, in control periods
DEFAULT_JITTER_PCT = 10.0
FIXED_TICK = "fixed tick"  # a --success row: one inference per control period (no RTC), as before
# A configuration's real-time chunking: on, off, or config/policy.yaml's (AsyncInference reads it).
RTC_SETTINGS = {"on": True, "off": False, "default": None}


def open_loop_s() -> float:
    """The bench's max_open_loop_s: a whole chunk (config/policy.yaml chunk_horizon steps)."""
    deployment = load_deployment()
    return deployment.chunk_horizon * deployment.step_dt_s


def latencies_s(args: argparse.Namespace, periods: tuple[float, ...]) -> list[float]:
    if args.model_latency_ms:
        return [ms / 1e3 for ms in args.model_latency_ms]
    return [p * load_deployment().step_dt_s for p in periods]


# --- the replica ------------------------------------------------------------------------------


def _replica_run(job: dict) -> dict:
    """The episodes of ``job`` ((seed, family) pairs) in the replica, in a process of its own."""
    # lazy: mujoco and torch load in the worker process only
    from vla_actuation.execution_stats import ExecutionStats
    from vla_bringup.policies import resolve_policy
    from vla_eval.graph_replica import TICKED, AsyncInference, Timing, run_graph_episode
    from vla_policy.contract import make_backend
    from vla_sim.widowx_sim import WidowXSim

    if job["workers"] > 1:  # a model's own threads on top of the workers would oversubscribe the cores
        import torch  # lazy: only model backends need it, in the worker process

        torch.set_num_threads(1)
    spec = resolve_policy(job["policy"])
    kwargs = {"checkpoint": spec.checkpoint} if spec.checkpoint else {}
    backend = make_backend(spec.backend, **kwargs, **spec.options)
    sim = WidowXSim()
    timing = Timing(max_open_loop_s=job["open_loop_s"])
    schedule = (
        TICKED
        if job["rtc"] == FIXED_TICK
        else AsyncInference(job["latency_s"], job["jitter_s"], realtime_chunking=RTC_SETTINGS[job["rtc"]])
    )
    stats = ExecutionStats(timing.step_dt_s)  # pooled over the job's episodes
    successes, frame_to_action_ms, max_speed = [], [], 0.0
    for seed, family in job["episodes"]:
        outcome = run_graph_episode(
            sim,
            backend,
            seed,
            spec.execution_mode or "receding_horizon",
            timing,
            reset_kwargs={"family": family},
            render=True,
            schedule=schedule,
            stats=stats,
        )
        successes.append(bool(outcome.success))
        frame_to_action_ms += [s * 1e3 for s in outcome.execution["frame_to_action_s"]]
        max_speed = max(max_speed, *outcome.execution["max_waypoint_speed_rad_s"])
    sim.close()
    return {
        **{k: v for k, v in job.items() if k != "episodes"},
        "successes": successes,
        "execution": stats.summary(),
        "frame_to_action_ms": frame_to_action_ms,
        "max_joint_speed_rad_s": max_speed,
    }


def run_replica_jobs(jobs: list[dict], workers: int) -> list[dict]:
    """Each job in a worker process (``workers`` at once), results in job order."""
    if workers <= 1:
        return [_replica_run(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_replica_run, jobs))


def merge(parts: list[dict]) -> dict:
    """One configuration's figures from its jobs (episodes split across workers)."""
    executions = [p["execution"] for p in parts]
    steps = sum(e["control_steps"] for e in executions)
    idle = sum(e["idle_steps"] for e in executions)
    f2a = [v for p in parts for v in p["frame_to_action_ms"]]

    def worst(key: str) -> float | None:
        values = [e[key] for e in executions if e.get(key) is not None]
        return max(values) if values else None

    return {
        "successes": [s for p in parts for s in p["successes"]],
        "idle_fraction": idle / max(1, idle + steps),
        "boundaries": sum(e["boundaries"] for e in executions),
        # p50 / p99 of the largest job (the jobs are equal shares of one configuration's episodes)
        "jump_joint_rad_p50": worst("boundary_jump_joint_rad_p50"),
        "jump_joint_rad_p99": worst("boundary_jump_joint_rad_p99"),
        "jump_tool_m_p99": worst("boundary_jump_tool_m_p99"),
        "jump_tool_rad_p99": worst("boundary_jump_tool_rad_p99"),
        "jumps_over_bound": sum(e["boundary_jumps_over_bound"] for e in executions),
        "frame_to_action_ms": (float(np.percentile(f2a, 50)), float(np.percentile(f2a, 99))) if f2a else None,
        "max_joint_speed_rad_s": max(p["max_joint_speed_rad_s"] for p in parts),
    }


def replica_configs(
    policy: str, configs: list[tuple[float, str]], episodes: list, jitter_pct: float, workers: int
) -> list[dict]:
    """Every (latency, rtc) configuration over ``episodes``, split across ``workers`` processes; rtc
    is "on", "off" or "default" (the asynchronous schedule with or without real-time chunking, or
    as config/policy.yaml says) or FIXED_TICK."""
    parts = max(1, workers)
    jobs = [
        {
            "policy": policy,
            "latency_s": latency,
            "jitter_s": latency * jitter_pct / 100.0,
            "rtc": rtc,
            "open_loop_s": open_loop_s(),
            "workers": workers,
            "episodes": share,
        }
        for latency, rtc in configs
        for share in (episodes[i::parts] for i in range(parts))
        if share
    ]
    done = run_replica_jobs(jobs, workers)
    merged = []
    for latency, rtc in configs:
        mine = [d for d in done if d["latency_s"] == latency and d["rtc"] == rtc]
        merged.append({"latency_s": latency, "rtc": rtc, **merge(mine)})
    return merged


# --- the graph --------------------------------------------------------------------------------


def graph_run(policy: str, latency_s: float, jitter_s: float, episodes: int, seed: int, rtc: str) -> dict:
    """``vla-stack demo`` episodes with the injected latency and the arm judged; the summary."""
    # lazy: the demo starts ROS nodes; only the graph rows need it
    from vla_eval.demo import DemoOptions, run_demo

    out_dir = Path(tempfile.mkdtemp(prefix="vla-bench-control-"))
    bound = open_loop_s()
    options = DemoOptions(
        policy=policy,
        episodes=episodes,
        seed=seed,
        json_path=str(out_dir / "demo.json"),
        out_dir=str(out_dir),
        record=False,
        video=False,
        judge_arm=True,
        overrides={
            "policy": {
                "inject_latency_s": latency_s,
                "inject_latency_jitter_s": jitter_s,
                **({} if RTC_SETTINGS[rtc] is None else {"realtime_chunking": RTC_SETTINGS[rtc]}),
                "max_open_loop_s": bound,
            },
            "actuation": {"max_open_loop_s": bound},
        },
    )
    code = run_demo(options)
    if code != 0 or not Path(options.json_path).is_file():
        raise SystemExit(
            f"[bench control] the graph run at L={latency_s:g} s failed (exit {code}); see {out_dir}"
        )
    return json.loads(Path(options.json_path).read_text())


def graph_figures(summary: dict) -> dict:
    execution = json.loads(summary.get("diagnostics", {}).get("actuation", {}).get("execution", "{}"))
    latency = summary["latency_ms"]
    return {
        "successes": [e["success"] for e in summary["episodes"]],
        "inference_ms": _p50_p99(latency.get("inference")),
        "frame_to_action_ms": _p50_p99(latency.get("frame_to_action")),
        "idle_fraction": execution.get("idle_fraction"),
        "boundaries": execution.get("boundaries"),
        "jump_joint_rad_p50": execution.get("boundary_jump_joint_rad_p50"),
        "jump_joint_rad_p99": execution.get("boundary_jump_joint_rad_p99"),
        "jump_tool_m_p99": execution.get("boundary_jump_tool_m_p99"),
        "jump_tool_rad_p99": execution.get("boundary_jump_tool_rad_p99"),
        "jumps_over_bound": execution.get("boundary_jumps_over_bound"),
        "max_joint_speed_rad_s": summary.get("arm", {}).get("max_joint_speed_rad_s"),
        "arm_violations": sum(summary.get("arm", {}).get("violations", {}).values()),
    }


def _p50_p99(values: dict | None) -> tuple[float, float] | None:
    return None if not values else (values["p50"], values["p99"])


# --- the report -------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _pair(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None else f"{pair[0]:.0f} / {pair[1]:.0f}"


def _success(successes: list[bool]) -> str:
    wins, n = sum(successes), len(successes)
    if n == 0:
        return "-"
    low, high = wilson_interval(wins, n)
    return f"{wins}/{n} ({100 * wins / n:.0f} %, {100 * low:.0f}-{100 * high:.0f})"


CONTROL_HEADER = (
    "| where | L ms | episodes | success | inference p50 / p99 ms | frame_to_action p50 / p99 ms | "
    "idle | joins | join jump joints p50 / p99 rad | join jump tool p99 m / rad | joins over bound | "
    "fastest joint rad/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def control_row(where: str, latency_s: float, figures: dict) -> str:
    jumps = f"{_num(figures['jump_joint_rad_p50'])} / {_num(figures['jump_joint_rad_p99'])}"
    tool = f"{_num(figures['jump_tool_m_p99'])} / {_num(figures['jump_tool_rad_p99'])}"
    idle = "-" if figures["idle_fraction"] is None else f"{100 * figures['idle_fraction']:.2f} %"
    return (
        f"| {where} | {1e3 * latency_s:.0f} | {len(figures['successes'])} | "
        f"{_success(figures['successes'])} | "
        f"{_pair(figures.get('inference_ms'))} | {_pair(figures['frame_to_action_ms'])} | {idle} | "
        f"{figures['boundaries']} | {jumps} | {tool} | {figures['jumps_over_bound']} | "
        f"{_num(figures['max_joint_speed_rad_s'], '.2f')} |"
    )


def run(args: argparse.Namespace) -> int:
    if args.success:
        return run_success(args)
    deployment = load_deployment()
    rows = []
    settings = ("on", "off") if args.rtc == "both" else (args.rtc,)
    for latency in latencies_s(args, DEFAULT_LATENCY_PERIODS):
        jitter = latency * args.jitter_pct / 100.0
        for rtc in settings:
            label = f"RTC {rtc if rtc != 'default' else ('on' if _configured_rtc() else 'off')}"
            if args.graph_episodes > 0:
                summary = graph_run(args.policy, latency, jitter, args.graph_episodes, args.seed, rtc)
                rows.append(control_row(f"graph, {label}", latency, graph_figures(summary)))
                print(rows[-1], flush=True)
            if args.replica_episodes > 0:
                from vla_sim import tasks  # lazy: the task tables import mujoco's scene helpers

                episodes = tasks.heldout_episodes(args.replica_episodes)
                (figures,) = replica_configs(
                    args.policy, [(latency, rtc)], episodes, args.jitter_pct, args.workers
                )
                rows.append(control_row(f"replica, {label}", latency, {**figures, "inference_ms": None}))
                print(rows[-1], flush=True)
    limit = _joint_speed_limit()
    lines = [
        "## Control with a model of latency L (`vla-stack bench control`)",
        "",
        f"Machine: {machine_description()}. Policy `{args.policy}` padded to L (+- {args.jitter_pct:g} %), "
        f"control period {deployment.step_dt_s * 1e3:.0f} ms, chunks of {deployment.chunk_horizon} steps, "
        f"`max_open_loop_s` {open_loop_s():g} s (a whole chunk, for every row), real-time chunking "
        "(RTC) as the row says, "
        "asynchronous inference (replan every step, refill before the committed steps run out). "
        "**graph**: `vla-stack demo` through DDS, figures from the nodes' /diagnostics (inference: the "
        "policy node's time per chunk, the padding included; frame_to_action: a frame's stamp to its "
        "chunk accepted by actuation, sim time; idle and joins: the actuation's ExecutionStats) and the "
        "fastest joint speed of the streamed commands judged by vla_eval.arm_monitor; **replica**: the "
        "same held-out episodes' figures in vla_eval.graph_replica (its joint speed from the min-jerk "
        "waypoints it streams). idle: control ticks with nothing to execute; a join's jump is the change "
        "of the commanded step across it (0 = the motion continues), over bound when a joint's exceeds "
        f"its speed limit x the period or the tool's 0.05 m / 0.25 rad. Joint speed limit {limit:.2f} rad/s. "
        "Success: Wilson 95 % interval.",
        "",
        CONTROL_HEADER,
        *rows,
        "",
        f"Run on {today()}.",
    ]
    print_and_write("control", "\n".join(lines), args.no_write)
    return 0


def _configured_rtc() -> bool:
    from vla_eval.graph_replica import AsyncInference  # lazy: the replica imports mujoco

    return bool(AsyncInference().realtime_chunking)


def _joint_speed_limit() -> float:
    from vla_actuation.safety import SafetyLimits  # lazy: only the report's bound line needs it

    return float(np.min(SafetyLimits().joint_velocity_limits()))


SUCCESS_HEADER = (
    "| L (control periods) | L ms | real-time chunking (fixed tick: the schedule before) | "
    "success (95 % interval) | idle | join jump joints p99 rad | joins over bound |\n"
    "|---|---|---|---|---|---|---|"
)


def run_success(args: argparse.Namespace) -> int:
    """octo-sim's success at L = 0, 1, 2 control periods, with and without real-time chunking."""
    from vla_sim import tasks  # lazy: the task tables import mujoco's scene helpers

    step_dt = load_deployment().step_dt_s
    latencies = latencies_s(args, SUCCESS_LATENCY_PERIODS)
    # The fixed tick (the graph's schedule before asynchronous inference) at L = 0 for reference.
    configs = [(0.0, FIXED_TICK)] + [(latency, rtc) for latency in latencies for rtc in ("on", "off")]
    pick = tasks.validation_episodes if args.seeds == "validation" else tasks.heldout_episodes
    episodes = pick(args.episodes)
    start = time.perf_counter()
    results = replica_configs(args.policy, configs, episodes, args.jitter_pct, args.workers)
    wall_s = time.perf_counter() - start
    rows = []
    for r in results:
        idle = f"{100 * r['idle_fraction']:.2f} %"
        rows.append(
            f"| {r['latency_s'] / step_dt:g} | {1e3 * r['latency_s']:.0f} | {r['rtc']} | "
            f"{_success(r['successes'])} | {idle} | {_num(r['jump_joint_rad_p99'])} | "
            f"{r['jumps_over_bound']} |"
        )
    which = "validation" if args.seeds == "validation" else "held-out (test)"
    lines = [
        "## Closed-loop success with a slow model (`vla-stack bench control --success`)",
        "",
        f"Machine: {machine_description()}. `{args.policy}` in the graph replica, {len(episodes)} "
        f"{which} episodes per row (families in turn, seeds {episodes[0][0]}..{episodes[-1][0]}), the "
        f"model padded to L (+- {args.jitter_pct:g} %, simulated time), `max_open_loop_s` "
        f"{open_loop_s():g} s for every row, asynchronous inference (replan every step, refill before "
        f"the committed steps run out). Wall time {wall_s / 60:.0f} min with {args.workers} worker(s).",
        "",
        SUCCESS_HEADER,
        *rows,
        "",
        f"Run on {today()}.",
    ]
    if args.out_json:
        Path(args.out_json).write_text(json.dumps(results, indent=1))
    # Validation figures choose settings; they never go into the docs as results.
    print_and_write("control-success", "\n".join(lines), args.no_write or args.seeds == "validation")
    return 0


def add_parser(bench_sub: argparse._SubParsersAction, no_write: dict) -> None:
    parser = bench_sub.add_parser(
        "control", help="the control loop with a model of latency L: idle, joins, frame-to-action, success"
    )
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument(
        "--model-latency-ms",
        type=float,
        nargs="+",
        default=None,
        help="the injected latencies (default: 0, 1.5 and 2 control periods; with --success 0, 1, 2)",
    )
    parser.add_argument("--jitter-pct", type=float, default=DEFAULT_JITTER_PCT, help="+- this %% of L")
    parser.add_argument("--graph-episodes", type=int, default=3, help="episodes through the node graph per L")
    parser.add_argument("--replica-episodes", type=int, default=20, help="episodes in the replica per L")
    parser.add_argument("--seed", type=int, default=0, help="the graph's first episode seed")
    parser.add_argument(
        "--rtc",
        choices=["both", "on", "off", "default"],
        default="both",
        help="real-time chunking of the latency rows (default: a row with and one without)",
    )
    parser.add_argument("--success", action="store_true", help="octo-sim's success with and without RTC")
    parser.add_argument("--episodes", type=int, default=80, help="--success: episodes per row")
    parser.add_argument("--seeds", choices=["heldout", "validation"], default="heldout")
    parser.add_argument("--workers", type=int, default=1, help="replica processes at once")
    parser.add_argument("--out-json", default=None, help="--success: every row's figures as JSON")
    parser.add_argument("--no-write", **no_write)
