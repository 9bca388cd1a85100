"""``vla-stack bench ...``: benchmarks whose results go to docs/benchmarks.md (never timed tests)."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
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
    text = path.read_text() if path.exists() else "# Benchmarks\n\nWritten by `vla-stack bench ...`; medians and p99.\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _timed(stages: dict[str, list[float]], name: str, fn: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = fn()
    stages.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
    return result


def bench_overhead(steps: int) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """One control step of everything but the model: 2 cameras 640x480 rgb8 -> 256/224 inputs -> action -> joints."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from vla_actuation.chunk_executor import ChunkExecutor
    from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
    from vla_perception.image_codec import array_to_image_fields, image_to_array, to_rgb8
    from vla_perception.preprocess import CameraPreprocess
    from vla_perception.sync import ApproximateSync, FrameHealth
    from vla_policy.action_message import decode_action_chunk, encode_action_chunk
    from vla_policy.action_space import ActionSpace
    from vla_policy.observation_assembly import ObservationAssembler

    rng = np.random.default_rng(0)
    cameras = {"primary": CameraPreprocess(256, 256), "wrist": CameraPreprocess(224, 224)}
    raw = {}
    for name in cameras:
        fields = array_to_image_fields(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), "bgr8")
        msg = Image(height=fields.height, width=fields.width, encoding=fields.encoding,
                    is_bigendian=fields.is_bigendian, step=fields.step, data=fields.data)
        raw[name] = serialize_message(msg)
    sync = ApproximateSync(list(cameras), slop_ns=50_000_000)
    health = FrameHealth(max_age_ns=500_000_000, frozen_repeat_limit=10**9)
    assembler = ObservationAssembler(list(cameras))
    space = ActionSpace()
    controller = EeDeltaController(ControllerConfig())
    neutral = np.array([-0.132, -0.762, 0.445, -0.020, 1.756, -0.160])
    controller.reset(neutral)
    executor = ChunkExecutor("receding_horizon", 0.2)
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    for step in range(steps):
        t0 = time.perf_counter()
        stamp_ns = (step + 1) * 200_000_000
        for name in cameras:
            msg = _timed(stages, "ros_deserialize", lambda n=name: deserialize_message(raw[n], Image))
            sync.add(name, stamp_ns, msg)
        synced = _timed(stages, "sync", sync.newest_set)
        for name, prep in cameras.items():
            msg = synced.frames[name][1]
            rgb = _timed(stages, "image_decode", lambda m=msg: to_rgb8(image_to_array(m), m.encoding))
            _timed(stages, "health", lambda n=name, r=rgb: health.check(n, stamp_ns, r, stamp_ns))
            small = _timed(stages, "preprocess", lambda p=prep, r=rgb: p.apply(r))
            fields = _timed(stages, "obs_encode", lambda s=small: array_to_image_fields(s, "rgb8"))
            assembler.add(name, stamp_ns, np.frombuffer(fields.data, np.uint8).reshape(small.shape))
        assembler.take()
        delta = np.array([0.01 * np.sin(step / 10), 0.01 * np.cos(step / 10), 0.0, 0, 0, 0, 1.0])
        text = _timed(stages, "action_encode", lambda d=delta: encode_action_chunk(stamp_ns, space, d[None, :]))
        chunk = _timed(stages, "action_decode", lambda t=text: decode_action_chunk(t))
        executor.submit(chunk.values, stamp_ns * 1e-9, stamp_ns * 1e-9)
        action = executor.next_action(stamp_ns * 1e-9)
        result = _timed(stages, "ik", lambda a=action: controller.step(a, controller_targets(controller, neutral)))
        _timed(stages, "servo_interp", lambda r=result: servo_waypoints(neutral, r.joint_targets_rad, 0.2, 50.0))
        totals.append((time.perf_counter() - t0) * 1e3)
    per_step = {name: percentiles(_per_step(samples, steps)) for name, samples in stages.items()}
    return per_step, percentiles(totals)


def controller_targets(controller: object, fallback: np.ndarray) -> np.ndarray:
    targets = getattr(controller, "joint_targets_rad", None)
    return np.asarray(targets) if targets is not None else fallback


def _per_step(samples: list[float], steps: int) -> list[float]:
    """Sum the samples of a stage that runs several times per step (e.g. once per camera)."""
    per = max(1, len(samples) // steps)
    return [sum(samples[i * per:(i + 1) * per]) for i in range(steps)]


def run_bench(args: argparse.Namespace) -> int:
    if args.bench == "overhead":
        from tqdm import tqdm

        tqdm.write(f"[bench overhead] {args.steps} control steps, 2 cameras 640x480 bgr8 -> 256x256 + 224x224")
        bench_overhead(50)  # warm-up
        per_stage, (p50, p99) = bench_overhead(args.steps)
        lines = [
            "## Stack overhead per control step (`vla-stack bench overhead`)",
            "",
            f"Machine: {machine_description()}. {args.steps} steps; 2 cameras 640x480 bgr8 "
            "(rclpy deserialisation included) into 256x256 and 224x224, sync, health checks, "
            "observation encoding, action encode/decode, chunk execution, IK and servo interpolation. "
            "DDS transport itself is not included (about 2 ms per 640x480 image with the loopback "
            "profile, environment.md). Target: median < 2 ms, p99 < 5 ms.",
            "",
            "| stage | p50 ms | p99 ms |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, (a, b) in per_stage.items()]
        lines += [f"| **total** | **{p50:.3f}** | **{p99:.3f}** |", "",
                  f"Run on {time.strftime('%Y-%m-%d')}."]
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            print(f"\nwritten to {write_section('overhead', body)}")
        return 0
    raise SystemExit(f"unknown benchmark '{args.bench}'")
