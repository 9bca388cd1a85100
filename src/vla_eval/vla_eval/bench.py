"""``vla-stack bench ...``: benchmarks whose results go to docs/benchmarks.md (never timed tests)."""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_actuation.chunk_executor import ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
from vla_actuation.kinematics import BRIDGE_NEUTRAL_JOINTS_RAD
from vla_bringup.deployment import load_deployment, node_parameters
from vla_common.action_message import decode_action_chunk, encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_common.heap import fix_mmap_threshold
from vla_common.image_wire import deserialize_image, serialize_image
from vla_common.inbound import image_to_pixels
from vla_common.latency import StageTimer
from vla_data.replay import ReplayOptions, run_replay
from vla_eval import bench_control, bench_demo, bench_load, bench_policy
from vla_eval.bench_report import machine_description, percentiles, print_and_write
from vla_perception.frame_gate import check_stamp
from vla_perception.image_codec import array_to_image_fields, image_to_array
from vla_perception.perception_settings import FRAME_MMAP_THRESHOLD_BYTES, build_frame_checks
from vla_perception.preprocess import CameraPreprocess, to_policy_input
from vla_perception.wire_frame import parse_frame
from vla_policy.observation_assembly import ObservationAssembler

__all__ = ["add_bench_parser", "bench_overhead", "bench_replay", "run_bench"]

REAL_CAMERA = (640, 480)  # (width, height): the cameras of Bridge's WidowX setup
# label -> ((height, width) of each camera's policy input, interpolation), with REAL_CAMERA frames;
# bench_overhead_report adds the sim graph as shipped (its params files' camera and input sizes).
OVERHEAD_CONFIGS = {
    "2 x 224x224 (OpenVLA-style), antialias (default)": (((224, 224), (224, 224)), "antialias"),
    "256x256 + 128x128 wrist (Octo-style), antialias (default)": (((256, 256), (128, 128)), "antialias"),
    "2 x 256x256, antialias (default)": (((256, 256), (256, 256)), "antialias"),
    "2 x 256x256, area (INTER_AREA)": (((256, 256), (256, 256)), "area"),
}


class _Untimed:
    """A StageTimer that measures nothing: a step's total without the per-stage timing's own cost."""

    _nothing = contextlib.nullcontext()

    def measure(self, stage: str) -> contextlib.nullcontext:
        return self._nothing


class _OverheadPipeline:
    """Every stage of a control step but the model and DDS: serialised camera images in, joints out."""

    def __init__(
        self,
        sizes: tuple[tuple[int, int], tuple[int, int]],
        interpolation: str,
        camera: tuple[int, int] = REAL_CAMERA,
    ) -> None:
        # lazy: rclpy and sensor_msgs (frames and observations are (de)serialised); bench.py stays ROS-free
        from rclpy.serialization import serialize_message
        from sensor_msgs.msg import Image

        rng = np.random.default_rng(0)
        self.cameras = {
            "primary": CameraPreprocess(*sizes[0], interpolation=interpolation),
            "wrist": CameraPreprocess(*sizes[1], interpolation=interpolation),
        }
        self.wire: dict[str, bytearray] = {}  # what DDS hands rclpy: one camera's serialized frame
        for name in self.cameras:
            pixels = rng.integers(0, 255, (camera[1], camera[0], 3), dtype=np.uint8)
            fields = array_to_image_fields(pixels, "bgr8")
            msg = Image(height=fields.height, width=fields.width, encoding=fields.encoding, step=fields.step)
            msg.data = fields.data
            self.wire[name] = bytearray(serialize_message(msg))
        # The perception node's frame checks and synchroniser, from its params file (config/perception.yaml).
        self.checks = build_frame_checks(node_parameters("perception", "perception"))
        self.gate = self.checks.gate()
        self.sync = self.checks.sync(list(self.cameras))
        self.assembler = ObservationAssembler(list(self.cameras))
        self.space = ActionSpace()
        self.controller = EeDeltaController(ControllerConfig())
        self.controller.reset(BRIDGE_NEUTRAL_JOINTS_RAD)
        # The control period and servo rate the graph runs with (config/control.yaml, actuation.yaml).
        self.step_dt_s = load_deployment().step_dt_s
        self.servo_hz = float(node_parameters("actuation", "actuation")["servo_hz"])
        self.executor = ChunkExecutor("receding_horizon", self.step_dt_s)

    def _stamp_ns(self, step: int) -> int:
        return (step + 1) * int(round(self.step_dt_s * 1e9))

    def new_frames(self, step: int) -> None:
        """The cameras' frames for control step ``step`` (the cameras' work, not the stack's)."""
        for wire in self.wire.values():
            self._set_stamp(wire, self._stamp_ns(step))

    def step(self, step: int, timer: StageTimer | _Untimed) -> None:
        """Control step ``step`` (after ``new_frames(step)``), each stage measured into ``timer``."""
        stamp_ns = self._stamp_ns(step)
        self._observe(stamp_ns, timer)
        delta = np.array([0.01 * np.sin(step / 10), 0.01 * np.cos(step / 10), 0.0, 0, 0, 0, 1.0])
        with timer.measure("action_codec"):
            chunk = decode_action_chunk(encode_action_chunk(stamp_ns, self.space, delta[None, :]))
        with timer.measure("chunk_executor"):
            self.executor.submit(chunk.values, stamp_ns * 1e-9, stamp_ns * 1e-9)
            action = self.executor.next_action(stamp_ns * 1e-9)
        previous = self.controller.joint_targets_rad.copy()
        with timer.measure("ik"):
            result = self.controller.step(action, previous)
        with timer.measure("servo_interp"):
            servo_waypoints(previous, result.joint_targets_rad, self.step_dt_s, self.servo_hz)

    def _observe(self, stamp_ns: int, timer: StageTimer | _Untimed) -> None:
        """Perception's half as the node runs it, then the policy node's take and observation assembly."""
        for name, wire in self.wire.items():
            with timer.measure("ros_deserialize"):
                # rclpy's raw take: rmw copies the sample into a new serialized buffer, rclpy copies
                # that into Python bytes and frees it; then the node parses the bytes in place.
                serialized = bytes(bytearray(wire))
                msg, _ = parse_frame(name, "raw", serialized)
            with timer.measure("frame_gate"):
                self.gate.admit(name, "raw", msg, stamp_ns, stamp_ns)
            with timer.measure("sync"):
                self.sync.add(name, stamp_ns, msg)
                synced = self.sync.pop_newest_set()  # the node looks on every frame: complete on the last
        frames = {}
        for name, prep in self.cameras.items():
            msg = synced.frames[name][1]
            with timer.measure("frame_gate"):
                check_stamp(name, stamp_ns, stamp_ns, self.checks.limits)  # age at use
            with timer.measure("image_decode"):
                frame = image_to_array(msg, camera=name, copy=False)
            frames[name] = (frame, msg.encoding, prep)
        with timer.measure("preprocess"):
            inputs = {name: to_policy_input(*frame) for name, frame in frames.items()}
        for name, small in inputs.items():
            with timer.measure("obs_publish"):  # the perception node serialises, rclpy publishes raw
                wire = serialize_image(stamp_ns, name, small)
            with timer.measure("obs_take"):  # the policy node's raw take, read in place, pixels checked
                taken = deserialize_image(bytes(bytearray(wire)), what=name)
                pixels = image_to_pixels(taken, what=name)
            self.assembler.add(name, stamp_ns, pixels)
        self.assembler.take()

    @staticmethod
    def _set_stamp(wire: bytearray, stamp_ns: int) -> None:
        """A new stamp (header.stamp: int32 sec, uint32 nanosec after the 4-byte encapsulation header)
        and new content (the last pixels: the frozen-camera check hashes a sample of the data)."""
        stamp = np.array(divmod(stamp_ns, 1_000_000_000), dtype="<u4").tobytes()
        wire[4:12] = stamp
        wire[-8:] = stamp


OVERHEAD_TARGET_MS = (1.0, 3.0)  # median, p99 per control step (issue 24)
OVERHEAD_HEAP_THRESHOLD_BYTES = FRAME_MMAP_THRESHOLD_BYTES  # the perception node's heap (its main())
STAGE_RUNS_PER_STEP = 8  # a stage runs once per camera in one control step (2 cameras)


def bench_overhead(
    steps: int,
    sizes: tuple[tuple[int, int], tuple[int, int]],
    interpolation: str = "antialias",
    camera: tuple[int, int] = REAL_CAMERA,
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """One control step of all but the model: 2 camera frames (width, height ``camera``) -> policy
    inputs -> action -> joints."""
    pipeline = _OverheadPipeline(sizes, interpolation, camera)
    stages = StageTimer(capacity=steps)
    totals: list[float] = []
    untimed = _Untimed()
    for step in range(0, 2 * steps, 2):  # alternate: a step timed by stage, then one timed whole
        pipeline.new_frames(step)
        this_step = StageTimer(capacity=STAGE_RUNS_PER_STEP)
        pipeline.step(step, this_step)
        for stage, stats in this_step.summary().items():  # stages run once per camera add up
            stages.record(stage, stats["total"])
        pipeline.new_frames(step + 1)
        t0 = time.perf_counter()
        pipeline.step(step + 1, untimed)
        totals.append((time.perf_counter() - t0) * 1e3)
    summary = stages.summary()
    return {k: (v["p50"], v["p99"]) for k, v in summary.items()}, percentiles(totals)


def run_bench(args: argparse.Namespace) -> int:
    """``vla-stack bench overhead | policy | load | demo | control | replay``."""
    runners = {
        "replay": bench_replay,
        "policy": bench_policy.run,
        "overhead": bench_overhead_report,
        "load": bench_load.run,
        "demo": bench_demo.run,
        "control": bench_control.run,
    }
    if args.bench not in runners:
        raise SystemExit(f"unknown benchmark '{args.bench}'")
    return runners[args.bench](args)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """``vla-stack bench ...``: every benchmark's subcommand and flags."""
    bench = sub.add_parser("bench", help="benchmarks; results go to docs/benchmarks.md")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    no_write = {"action": "store_true", "help": "print only; do not update docs/benchmarks.md"}
    overhead = bench_sub.add_parser("overhead", help="per-step cost of the stack without the model")
    overhead.add_argument("--steps", type=int, default=2000)
    overhead.add_argument("--no-write", **no_write)
    policy = bench_sub.add_parser("policy", help="policy backend latency, actions/s and peak memory")
    which = policy.add_mutually_exclusive_group(required=True)
    which.add_argument("--backend", choices=["openvla", "rt2", "octo"], help="random weights at --size")
    which.add_argument("--policy", help="a named trained policy, e.g. octo-sim (its checkpoint)")
    policy.add_argument("--size", default="tiny", choices=["tiny", "sim", "small", "base", "3b", "7b"])
    policy.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    policy.add_argument(
        "--dtype",
        default=None,
        help="float32 | bfloat16 | float16 (default: the backend's: on a GPU bf16 for OpenVLA and RT-2, "
        "float32 with TF32 for Octo; float32 on a CPU)",
    )
    policy.add_argument("--steps", type=int, default=20, help="timed inferences after the warm-up")
    policy.add_argument("--warmup", type=int, default=3)
    bench_policy.add_compile_flags(policy)
    policy.add_argument("--no-write", **no_write)
    bench_load.add_parser(bench_sub, no_write)
    bench_demo.add_parser(bench_sub, no_write)
    bench_control.add_parser(bench_sub, no_write)
    replay = bench_sub.add_parser("replay", help="--fast replay speed of a bag with the scripted policy")
    replay.add_argument("bag")
    replay.add_argument("--runs", type=int, default=3)
    replay.add_argument("--no-write", **no_write)
    bench.set_defaults(func=run_bench)


def _shipped_sim_config() -> dict[str, tuple[tuple[tuple[int, int], tuple[int, int]], str, tuple[int, int]]]:
    """The sim graph as `make demo` runs it: config/sim.yaml's cameras, config/perception.yaml's inputs."""
    sim = node_parameters("sim", "sim")
    perception = node_parameters("perception", "perception")
    primary, wrist = (perception[name] for name in perception["cameras"][:2])
    camera = (int(sim["camera_width"]), int(sim["camera_height"]))
    label = (
        f"sim graph as shipped: 2 x {camera[0]}x{camera[1]} cameras -> "
        f"{primary['height']}x{primary['width']} + {wrist['height']}x{wrist['width']}, "
        f"{primary['interpolation']} (config/sim.yaml, perception.yaml)"
    )
    sizes = ((primary["height"], primary["width"]), (wrist["height"], wrist["width"]))
    return {label: (sizes, primary["interpolation"], camera)}


def bench_overhead_report(args: argparse.Namespace) -> int:
    """Every OVERHEAD_CONFIGS entry, per stage; printed and (unless --no-write) put in the docs."""
    lines = [
        "## Stack overhead per control step (`vla-stack bench overhead`)",
        "",
        f"Machine: {machine_description()}. {args.steps} steps per configuration, each one observation "
        "and one action step, as the nodes run them: two bgr8 cameras (640x480 unless stated), each "
        "taken raw as rclpy "
        "does it (the sample copied into a serialized buffer, then into Python bytes) and read in place "
        "(vla_common.image_wire); the perception node's frame gate (config/perception.yaml), "
        "approximate sync on each frame, stamp age at use, decode, resize (``antialias``: Gaussian "
        "pyramid + bilinear, unless stated) and RGB conversion, the observation published (serialised) "
        "and taken the same way by the policy node (raw, read in place, pixels checked); action "
        "encode/decode, chunk execution, IK with the safety "
        "clamps, servo interpolation. The process "
        "allocates as the perception node does (vla_common.heap: buffers of "
        f"{OVERHEAD_HEAP_THRESHOLD_BYTES // 1024} KiB or more are mapped, page-faulted in and unmapped "
        "again). Stages are timed on every other step, the total on the steps between them (without "
        "the stage timing's own cost). DDS transport is not included (about 2 ms per 640x480 image "
        "with the loopback "
        f"profile, see environment.md). Target: median < {OVERHEAD_TARGET_MS[0]:g} ms, "
        f"p99 < {OVERHEAD_TARGET_MS[1]:g} ms.",
        "",
    ]
    fix_mmap_threshold(OVERHEAD_HEAP_THRESHOLD_BYTES)
    configs = {label: (*config, REAL_CAMERA) for label, config in OVERHEAD_CONFIGS.items()}
    configs.update(_shipped_sim_config())
    for label, (sizes, interpolation, camera) in tqdm(configs.items(), desc="configurations"):
        bench_overhead(50, sizes, interpolation, camera)  # warm-up
        per_stage, (p50, p99) = bench_overhead(args.steps, sizes, interpolation, camera)
        lines += [f"### {label}", "", "| stage | p50 ms | p99 ms |", "|---|---|---|"]
        lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, (a, b) in per_stage.items()]
        lines += [f"| **total** | **{p50:.3f}** | **{p99:.3f}** |", ""]
    lines.append(f"Run on {time.strftime('%Y-%m-%d')}.")
    print_and_write("overhead", "\n".join(lines), args.no_write)
    return 0


REPLAY_TARGET_X = 5.0  # --fast replay speed, x real time


def bench_replay(args: argparse.Namespace) -> int:
    """--fast replay of a bag with the scripted policy: playback speed against the bag's duration."""
    results = []
    for run in range(args.runs):
        out = Path(tempfile.mkdtemp(prefix="vla-bench-replay-"))
        code = run_replay(ReplayOptions(bag=str(args.bag), fast=True, out_dir=str(out)), log=lambda _: None)
        if code != 0:
            raise SystemExit(f"replay of {args.bag} failed (run {run}); see {out}")
        report = json.loads((out / "report.json").read_text())
        results.append(report)
    speeds = [r["playback"]["speed_x"] for r in results]
    median = float(np.median(speeds))
    ticks = [r["latency_ms"]["tick_to_action"] for r in results]
    lines = [
        "## Rosbag replay, `--fast` (`vla-stack bench replay`)",
        "",
        f"Machine: {machine_description()}. Bag `{args.bag}`: {results[0]['playback']['bag_s']:.1f} s, "
        f"{results[0]['frames']['control_ticks']} control ticks, "
        f"{len(results[0]['frames']['published'])} cameras; scripted policy; {args.runs} runs. The clock "
        "advances one control period at a time once the graph has answered the previous one, so no "
        "tick is skipped; each tick plays its clock, then the camera set perception will use. "
        "Speed is bag seconds over wall seconds from the first tick (start-up excluded); "
        "tick_to_action is wall ms from a tick's /clock to the policy's action. "
        f"Target: >= {REPLAY_TARGET_X:g}x real time.",
        "",
        "| run | bag s | playback wall s | speed (x real time) | tick_to_action p50 ms | p99 ms |",
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
        f"Median speed {median:.1f}x real time"
        f"{f' (below the {REPLAY_TARGET_X:g}x target)' if median < REPLAY_TARGET_X else ''}. "
        f"Run on {time.strftime('%Y-%m-%d')}.",
    ]
    print_and_write("replay", "\n".join(lines), args.no_write)
    return 0
