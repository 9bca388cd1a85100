"""``vla-stack bench demo``: closed-loop episodes through the sim graph with the policy node on a chosen
device (``vla-stack demo`` with ``policy.device`` set); success, the policy's inference latency and
frame-to-action latency from the nodes' diagnostics, into docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vla_bringup.policies import DEFAULT_POLICY
from vla_eval.bench_report import (
    machine_description,
    print_and_record,
    record_table_row,
    table_cells,
    today,
)
from vla_eval.demo import DemoOptions, run_demo
from vla_policy.policy_settings import resolve_device

TABLE_HEADER = (
    "| policy | device | episodes | success | inference p50 ms | p99 ms | frame_to_action p50 ms | p99 ms | "
    "wall s | machine | date |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def device_name(device: str) -> str:
    """The GPU's name for "cuda" (torch imported only then), else the CPU line."""
    if device == "cuda":
        import torch  # lazy: torch is heavy; only a GPU run asks it for the device name

        return torch.cuda.get_device_name()
    return machine_description()


def table_row(policy: str, device: str, summary: dict, wall_s: float) -> str:
    episodes = summary["episodes"]
    wins = sum(e["success"] for e in episodes)
    latency = summary["latency_ms"]
    cells = [
        f"{latency[stage][q]:.1f}" if stage in latency else "-"
        for stage in ("inference", "frame_to_action")
        for q in ("p50", "p99")
    ]
    return (
        f"| {policy} | {device} | {len(episodes)} | {wins}/{len(episodes)} | {' | '.join(cells)} | "
        f"{wall_s:.0f} | {device_name(device)} | {today()} |"
    )


def record_row(row: str) -> None:
    intro = [
        "## Closed loop with the policy on a device (`vla-stack bench demo`)",
        "",
        "`vla-stack demo` through the sim graph (no video, no bag) with the policy node's `device` set; "
        "inference is the policy node's per-observation time, frame_to_action the camera frame's stamp "
        "to its action being accepted (sim time). Wall time includes the graph's start-up.",
        "",
    ]
    record_table_row("demo", intro, TABLE_HEADER, row, lambda line: " / ".join(table_cells(line)[:2]))


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)  # the row names the device that ran, "auto" resolved
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vla-bench-demo-"))
    json_path = out_dir / "demo.json"
    options = DemoOptions(
        policy=args.policy,
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
        json_path=str(json_path),
        out_dir=str(out_dir),
        record=False,
        video=False,
        overrides={"policy": {"device": device}},
    )
    start = time.perf_counter()
    code = run_demo(options)
    wall_s = time.perf_counter() - start
    if code != 0 or not json_path.is_file():
        print(f"[bench demo] the demo failed (exit {code}); nothing recorded", flush=True)
        return code or 1
    row = table_row(args.policy, device, json.loads(json_path.read_text()), wall_s)
    return print_and_record(TABLE_HEADER, row, record_row, args.no_write)


def add_parser(bench_sub: argparse._SubParsersAction, no_write: dict) -> None:
    parser = bench_sub.add_parser("demo", help="closed-loop demo episodes with the policy on --device")
    parser.add_argument("--policy", default=DEFAULT_POLICY)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=80, help="control steps per episode")
    parser.add_argument("--out", default=None, help="folder for the demo's logs (default: a temporary one)")
    parser.add_argument("--no-write", **no_write)
