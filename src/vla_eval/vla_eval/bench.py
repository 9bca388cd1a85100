"""``vla-stack bench ...``: benchmarks whose results go to docs/benchmarks.md (never timed tests)."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from vla_bringup.paths import repo_root


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def write_section(name: str, body: str, path: Path | None = None) -> Path:
    """Replace (or append) the section between <!-- bench:NAME --> markers in docs/benchmarks.md."""
    path = path or repo_root() / "docs" / "benchmarks.md"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nWritten by `vla-stack bench ...`; medians and p99.\n"
    )
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# label -> ((height, width) of each camera's policy input, interpolation)
OVERHEAD_CONFIGS = {
    "2 x 224x224 (OpenVLA-style), antialias (default)": (((224, 224), (224, 224)), "antialias"),
    "256x256 + 128x128 wrist (Octo-style), antialias (default)": (((256, 256), (128, 128)), "antialias"),
    "2 x 256x256, antialias (default)": (((256, 256), (256, 256)), "antialias"),
    "2 x 256x256, area (INTER_AREA)": (((256, 256), (256, 256)), "area"),
}


def bench_overhead(
    steps: int,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    interpolation: str = "antialias",
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """One control step of all but the model: 2 cameras 640x480 -> policy inputs -> action -> joints."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from vla_actuation.chunk_executor import ChunkExecutor
    from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
    from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD
    from vla_common.action_message import decode_action_chunk, encode_action_chunk
    from vla_common.action_space import ActionSpace
    from vla_common.latency import StageTimer
    from vla_perception.image_codec import array_to_image_fields, image_to_array
    from vla_perception.preprocess import CameraPreprocess, to_policy_input
    from vla_perception.sync import ApproximateSync, FrameHealth
    from vla_policy.observation_assembly import ObservationAssembler

    rng = np.random.default_rng(0)
    cameras = {
        "primary": CameraPreprocess(*sizes[0], interpolation=interpolation),
        "wrist": CameraPreprocess(*sizes[1], interpolation=interpolation),
    }
    wire = {}
    for name in cameras:
        fields = array_to_image_fields(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), "bgr8")
        msg = Image(height=fields.height, width=fields.width, encoding=fields.encoding, step=fields.step)
        msg.data = fields.data
        wire[name] = serialize_message(msg)
    sync = ApproximateSync(list(cameras), slop_ns=50_000_000)
    health = FrameHealth(max_age_ns=500_000_000, frozen_repeat_limit=0)
    assembler = ObservationAssembler(list(cameras))
    space = ActionSpace()
    controller = EeDeltaController(ControllerConfig())
    controller.reset(BRIDGE_NEUTRAL_JOINTS_RAD)
    executor = ChunkExecutor("receding_horizon", 0.2)
    stages = StageTimer(capacity=steps)
    totals: list[float] = []
    for step in range(steps):
        t0 = time.perf_counter()
        stamp_ns = (step + 1) * 200_000_000
        this_step = StageTimer()
        for name in cameras:
            with this_step.measure("ros_deserialize"):
                sync.add(name, stamp_ns, deserialize_message(wire[name], Image))
        with this_step.measure("sync"):
            synced = sync.pop_newest_set()
        frames = {}
        for name, prep in cameras.items():
            msg = synced.frames[name][1]
            with this_step.measure("image_decode"):
                frame = image_to_array(msg, copy=False)
            with this_step.measure("health"):
                health.check(name, stamp_ns, frame, stamp_ns)
            frames[name] = (frame, msg.encoding, prep)
        with this_step.measure("preprocess"):
            inputs = {name: to_policy_input(*frame) for name, frame in frames.items()}
        for name, small in inputs.items():
            with this_step.measure("obs_encode"):
                fields = array_to_image_fields(small, "rgb8")
            assembler.add(name, stamp_ns, np.frombuffer(fields.data, np.uint8).reshape(small.shape))
        assembler.take()
        delta = np.array([0.01 * np.sin(step / 10), 0.01 * np.cos(step / 10), 0.0, 0, 0, 0, 1.0])
        with this_step.measure("action_codec"):
            chunk = decode_action_chunk(encode_action_chunk(stamp_ns, space, delta[None, :]))
        with this_step.measure("chunk_executor"):
            executor.submit(chunk.values, stamp_ns * 1e-9, stamp_ns * 1e-9)
            action = executor.next_action(stamp_ns * 1e-9)
        previous = controller.joint_targets_rad.copy()
        with this_step.measure("ik"):
            result = controller.step(action, previous)
        with this_step.measure("servo_interp"):
            servo_waypoints(previous, result.joint_targets_rad, 0.2, 50.0)
        totals.append((time.perf_counter() - t0) * 1e3)
        for stage, stats in this_step.summary().items():  # stages run once per camera add up
            stages.record(stage, stats["total"])
    summary = stages.summary()
    return {k: (v["p50"], v["p99"]) for k, v in summary.items()}, percentiles(totals)


def run_bench(args: argparse.Namespace) -> int:
    if args.bench == "replay":
        return bench_replay(args)
    if args.bench == "policy":
        from vla_eval.bench_policy import run

        return run(args)
    if args.bench == "overhead":
        from tqdm import tqdm

        lines = [
            "## Stack overhead per control step (`vla-stack bench overhead`)",
            "",
            f"Machine: {machine_description()}. {args.steps} steps per configuration. Two 640x480 bgr8 "
            "cameras (rclpy deserialisation included), approximate sync, frame health, decode, resize "
            "(``antialias``: Gaussian pyramid + bilinear, unless stated) and RGB conversion, observation "
            "encoding, action "
            "encode/decode, chunk execution, IK with the safety clamps, servo interpolation. DDS transport "
            "is not included (about 2 ms per 640x480 image with the loopback profile, see "
            "environment.md). Target: median < 2 ms, p99 < 5 ms.",
            "",
        ]
        for label, (sizes, interpolation) in tqdm(OVERHEAD_CONFIGS.items(), desc="configurations"):
            bench_overhead(50, sizes, interpolation)  # warm-up
            per_stage, (p50, p99) = bench_overhead(args.steps, sizes, interpolation)
            lines += [f"### {label}", "", "| stage | p50 ms | p99 ms |", "|---|---|---|"]
            lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, (a, b) in per_stage.items()]
            lines += [f"| **total** | **{p50:.3f}** | **{p99:.3f}** |", ""]
        lines.append(f"Run on {time.strftime('%Y-%m-%d')}.")
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            print(f"\nwritten to {write_section('overhead', body)}")
        return 0
    raise SystemExit(f"unknown benchmark '{args.bench}'")


def bench_replay(args: argparse.Namespace) -> int:
    """--fast replay of a bag with the scripted policy: playback speed against the bag's duration."""
    import json
    import tempfile

    from vla_data.replay import ReplayOptions, run_replay

    results = []
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="vla-bench-replay-"))
        code = run_replay(ReplayOptions(bag=str(args.bag), fast=True, out_dir=str(out)), log=lambda _: None)
        if code != 0:
            raise SystemExit(f"replay of {args.bag} failed (run {run}); see {out}")
        report = json.loads((out / "report.json").read_text())
        results.append(report)
    speeds = [r["playback"]["speed_x"] for r in results]
    ticks = [r["latency_ms"]["tick_to_action"] for r in results]
    lines = [
        "## Rosbag replay, `--fast` (`vla-stack bench replay`)",
        "",
        f"Machine: {machine_description()}. Bag `{args.bag}`: {results[0]['playback']['bag_s']:.1f} s, "
        f"{results[0]['frames']['control_ticks']} control ticks, 2 cameras 320x240; scripted policy; "
        f"{args.runs} runs. The clock advances one control period at a time once the graph has answered "
        "the previous one, so no frame is dropped. Target: >= 5x real time.",
        "",
        "| run | bag s | playback wall s | speed (x real time) | tick -> action p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for i, (r, t) in enumerate(zip(results, ticks, strict=True)):
        p = r["playback"]
        lines.append(
            f"| {i} | {p['bag_s']:.1f} | {p['wall_s']:.1f} | {p['speed_x']:.1f} | "
            f"{t['p50']:.1f} | {t['p99']:.1f} |"
        )
    lines += [
        "",
        f"Median speed {float(np.median(speeds)):.1f}x real time. Run on {time.strftime('%Y-%m-%d')}.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        print(f"\nwritten to {write_section('replay', body)}")
    return 0
