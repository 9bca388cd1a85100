"""A ROS-free replica of the node graph's timing: the same modules, the same clocks, no DDS.

The sim runs clock ticks; cameras render once per camera period (with the sim node's read noise,
resized as the perception node resizes them). The policy runs as the policy node does
(:class:`AsyncInference`, the default): each frame completes an observation at once, and an
inference starts on the newest one when the node's ``InferenceScheduler`` says it is due and the
model is free, with the newest joint state as proprio and (with real-time chunking) the committed
chunk's actions; the model takes its (injected) latency, the chunk arrives ``processing_s`` (+
jitter) after that. ``schedule=None`` is the fixed tick the graph had before (one inference per
control period at ``policy_phase_s`` after the frames), kept because the shipped octo-sim
demonstrations were recorded with it (``vla-stack collect`` passes it). The actuation runs a control
step when an action arrives and every step_dt after its last step (as actuation_node does),
streaming min-jerk servo waypoints through the same chunk executor and IK controller.

Every number the graph has is read from the params files its nodes load (control.yaml, sim.yaml,
perception.yaml, actuation.yaml through vla_bringup.deployment, so $VLA_STACK_CONFIG_DIR too): change
config/ and the replica follows as the graph does. Only the replica's own model of the graph's
latency (``policy_phase_s``, ``processing_s``) is set here.

Used by the closed-loop timing tests and by demonstration collection (``vla-stack collect``): the
demonstrations see exactly what a policy sees through the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from vla_actuation.chunk_executor import ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
from vla_actuation.execution_stats import ExecutionStats
from vla_bringup.deployment import load_deployment, node_parameters, require
from vla_common.action_space import dequantize_actions
from vla_perception.preprocess import CameraPreprocess
from vla_policy.chunk_join import blend_prefix
from vla_policy.contract import CommittedActions, Observation, PolicyBackend, PolicyOutput
from vla_policy.inference_schedule import InferenceScheduler, LatencyEstimate
from vla_policy.latency_injection import InjectedLatency
from vla_sim.scene import CAMERA_NAMES, camera_topic
from vla_sim.sensor_noise import add_read_noise
from vla_sim.widowx_sim import WidowXSim

EPS_S = 1e-9  # float slack when comparing times on the tick grid


def graph_periods(directory: Path | None = None) -> dict[str, float]:
    """The node graph's periods and rates, from the params files (what ``Timing`` defaults to)."""
    deployment = load_deployment(directory)
    control_period_s = deployment.step_dt_s
    sim = node_parameters("sim", "sim", directory)
    actuation = node_parameters("actuation", "actuation", directory)
    return {
        "camera_period_s": 1.0 / float(require(sim, "camera_hz", "sim.yaml sim")),
        "policy_period_s": control_period_s,  # the policy infers once per control tick
        "step_dt_s": control_period_s,
        "servo_hz": float(require(actuation, "servo_hz", "actuation.yaml actuation")),
        "max_open_loop_s": deployment.max_open_loop_s,
        "tick_s": 1.0 / float(require(sim, "clock_hz", "sim.yaml sim")),  # the sim node's clock tick
    }


@dataclass(frozen=True)
class Timing:
    """When things happen in the replica. Fields left None take the graph's values from the params
    files (:func:`graph_periods`); the latency model has its own defaults."""

    camera_period_s: float | None = None  # sim.yaml camera_hz
    policy_period_s: float | None = None  # control.yaml control_hz
    policy_phase_s: float = 0.05  # when the policy ticks relative to the camera frames
    processing_s: float = 0.03  # frame -> action arrival (perception + inference + DDS)
    # Each chunk arrives a further U(0, processing_jitter_s) later (seeded by the episode): the graph's
    # frame-to-action time varies tick to tick with inference time and load.
    processing_jitter_s: float = 0.0
    step_dt_s: float | None = None  # control.yaml control_hz
    servo_hz: float | None = None  # actuation.yaml servo_hz
    max_open_loop_s: float | None = None  # control.yaml max_open_loop_s
    tick_s: float | None = None  # sim.yaml clock_hz

    def __post_init__(self) -> None:
        unset = [f.name for f in fields(self) if getattr(self, f.name) is None]
        if unset:
            graph = graph_periods()
            for name in unset:
                object.__setattr__(self, name, graph[name])


@dataclass(frozen=True)
class AsyncInference:
    """The policy node's schedule (vla_policy.inference_schedule) and an injected model latency.

    ``replan_steps`` and ``realtime_chunking`` left None take config/policy.yaml's values. The model
    latency is sim time: the chunk is published ``model_latency_s`` (+ U(-jitter, +jitter)) after
    the inference starts, and arrives ``Timing.processing_s`` (+ its jitter) after that, so a
    latency of 0 is the graph with the model's time inside processing_s."""

    model_latency_s: float = 0.0
    model_jitter_s: float = 0.0
    replan_steps: int | None = None
    realtime_chunking: bool | None = None

    def __post_init__(self) -> None:
        policy = node_parameters("policy", "policy")
        if self.replan_steps is None:
            object.__setattr__(
                self, "replan_steps", int(require(policy, "replan_steps", "policy.yaml policy"))
            )
        if self.realtime_chunking is None:
            value = bool(require(policy, "realtime_chunking", "policy.yaml policy"))
            object.__setattr__(self, "realtime_chunking", value)


@dataclass(frozen=True)
class CameraInputs:
    """What the perception node hands the policy per camera, read from perception.yaml and sim.yaml."""

    sim_cameras: dict[str, str]  # perception camera -> the sim camera whose topic it subscribes to
    preprocess: dict[str, CameraPreprocess]  # perception camera -> resize to the policy input
    noise_sigma: float  # the sim's read noise (sim.yaml camera_noise_sigma), 8-bit levels

    @classmethod
    def from_params(cls, directory: Path | None = None) -> CameraInputs:
        perception = node_parameters("perception", "perception", directory)
        sim = node_parameters("sim", "sim", directory)
        by_topic = {camera_topic(name): name for name in CAMERA_NAMES}
        sim_cameras, preprocess = {}, {}
        for camera in require(perception, "cameras", "perception.yaml perception"):
            entry = require(perception, camera, "perception.yaml perception")
            topic = require(entry, "topic", f"perception.yaml {camera}")
            if topic not in by_topic:
                raise ValueError(
                    f"perception.yaml {camera}.topic '{topic}' is no sim camera's; the sim publishes "
                    f"{sorted(by_topic)}"
                )
            sim_cameras[camera] = by_topic[topic]
            preprocess[camera] = _camera_preprocess(camera, entry)
        noise_sigma = float(require(sim, "camera_noise_sigma", "sim.yaml sim"))
        return cls(sim_cameras, preprocess, noise_sigma)


def _camera_preprocess(camera: str, entry: dict) -> CameraPreprocess:
    """As the perception node builds it: size from the file, resize mode and filter if given."""
    optional = {"resize_mode": "mode", "interpolation": "interpolation"}
    return CameraPreprocess(
        int(require(entry, "height", f"perception.yaml {camera}")),
        int(require(entry, "width", f"perception.yaml {camera}")),
        **{argument: entry[key] for key, argument in optional.items() if key in entry},
    )


@dataclass(frozen=True)
class EpisodeOutcome:
    success: bool
    steps: int  # control steps until success was first detected, or the budget
    # The actuation's ExecutionStats summary (idle ticks, chunk joins, joint speeds) and, with the
    # asynchronous schedule, the inference triggers (first / refill / replan) with their counts.
    execution: dict = field(default_factory=dict)
    triggers: dict = field(default_factory=dict)


# run_graph_episode(schedule=TICKED): one inference per control period (the graph before issue 24).
TICKED = "ticked"


# Called after every inference with the observation the backend saw and its output.
InferenceHook = Callable[[Observation, PolicyOutput], None]
# Maps the chunk the backend returned to the chunk the actuation executes (DART-style noise
# injection for demonstrations: the recorded label stays the clean chunk).
ChunkPerturbation = Callable[[np.ndarray], np.ndarray]


def render_observation_images(
    sim: WidowXSim,
    cameras: tuple[str, ...],
    rng: np.random.Generator | None,
    inputs: CameraInputs | None = None,
) -> dict[str, np.ndarray]:
    """What the perception node hands the policy: sim camera + read noise, resized as it resizes.

    ``inputs`` defaults to the params files' (read on each call: pass it when rendering many frames).
    """
    inputs = inputs or CameraInputs.from_params()
    images = {}
    for camera in cameras:
        rgb = sim.render(inputs.sim_cameras[camera])
        if rng is not None:
            rgb = add_read_noise(rgb, rng, inputs.noise_sigma)
        images[camera] = inputs.preprocess[camera].apply(rgb)
    return images


class _PolicySide:
    """Perception and policy: camera frames on their schedule, one inference per policy tick on the
    newest frame, each chunk delivered ``processing_s`` (+ jitter) after its tick."""

    def __init__(
        self,
        sim: WidowXSim,
        backend: PolicyBackend,
        seed: int,
        timing: Timing,
        render: bool,
        on_inference: InferenceHook | None,
        perturb: ChunkPerturbation | None,
    ) -> None:
        self.sim, self.backend, self.timing, self.seed = sim, backend, timing, seed
        self.inputs = CameraInputs.from_params() if render else None
        self.on_inference, self.perturb = on_inference, perturb
        self.noise_rng = np.random.default_rng(seed + 7919)
        self.latency_rng = np.random.default_rng([seed, 11])
        self.blank = {camera: np.zeros((2, 2, 3), np.uint8) for camera in backend.camera_names}
        self.frame: tuple[float, dict, dict] | None = None  # (stamp, privileged state, images)
        self.pending: list[tuple[float, float, np.ndarray]] = []  # (arrival, stamp, chunk)
        self.next_camera, self.next_policy = 0.0, timing.policy_phase_s

    def tick(self, now: float) -> list[tuple[float, np.ndarray]]:
        """Advance to ``now``; returns the (stamp, chunk) pairs that arrive at the actuation now."""
        if now + EPS_S >= self.next_camera:
            self._capture(now)
            self.next_camera += self.timing.camera_period_s
        if now + EPS_S >= self.next_policy and self.frame is not None:
            self._infer(now)
            self.next_policy += self.timing.policy_period_s
        arrived = [p for p in self.pending if p[0] <= now + EPS_S]
        self.pending = [p for p in self.pending if p[0] > now + EPS_S]
        return [(stamp, chunk) for _, stamp, chunk in arrived]

    def _capture(self, now: float) -> None:
        # Only the frames the policy will read are rendered (the newest at its next tick).
        used = self.next_policy < now + self.timing.camera_period_s - EPS_S
        if self.inputs is not None and used:
            images = render_observation_images(
                self.sim, self.backend.camera_names, self.noise_rng, self.inputs
            )
        else:
            images = self.blank
        self.frame = (now, self.sim.privileged_state(), images)

    def _infer(self, now: float) -> None:
        stamp, state, images = self.frame
        chunk = self._chunk(int(stamp * 1e9), state, images)
        self.pending.append((now + self._processing_delay_s(), stamp, chunk))

    def _chunk(
        self, stamp_ns: int, state: dict, images: dict, committed: CommittedActions | None = None
    ) -> np.ndarray:
        """The backend's chunk on this frame, the newest joint state as proprio, as the actuation
        executes it (discrete bins decoded, a non-guiding backend's prefix blended, perturbed)."""
        proprio = self.sim.joint_state()[1][:7].astype(np.float64)
        # the sim's current task: a collector may re-target it mid-episode (WidowXSim.retarget)
        instruction = self.sim.spec.instruction
        observation = Observation(stamp_ns, images, instruction, proprio, state, committed)
        out = self.backend.infer(observation)
        if self.on_inference is not None:
            self.on_inference(observation, out)
        chunk = np.atleast_2d(out.chunk)
        if self.backend.action_space.kind == "discrete":  # what the actuation decodes from the wire
            chunk = dequantize_actions(chunk, self.backend.action_space)
        elif (
            committed is not None and chunk.shape[0] > 1 and not getattr(self.backend, "guides_chunks", False)
        ):
            chunk = blend_prefix(chunk, committed)  # as the policy node blends it
        if self.perturb is not None:
            chunk = self.perturb(chunk)
        return chunk

    def _processing_delay_s(self) -> float:
        """Perception, transport and (in processing_s) the model's own time, drawn per chunk."""
        return self.timing.processing_s + self.latency_rng.uniform(0.0, self.timing.processing_jitter_s)


class _AsyncPolicySide(_PolicySide):
    """Perception and policy as the nodes run them (see :class:`AsyncInference`): every frame is an
    observation; the newest one is inferred on when the scheduler says so and the model is free."""

    def __init__(self, schedule: AsyncInference, *args, **kwargs) -> None:  # then _PolicySide's
        super().__init__(*args, **kwargs)
        timing = self.timing
        self.schedule = schedule
        self.model_latency = InjectedLatency(schedule.model_latency_s, schedule.model_jitter_s, self.seed)
        # Until measured, one control period (as the policy node); no warm-up in simulated time.
        self.latency = LatencyEstimate(initial_s=timing.step_dt_s, warmup_samples=0)
        self.scheduler = InferenceScheduler(
            timing.step_dt_s, timing.max_open_loop_s, self.latency, schedule.replan_steps
        )
        # The chunk being computed: (publish time, frame stamp, chunk, latency), None when free.
        self.in_flight: tuple[float, float, np.ndarray, float] | None = None
        self.triggers: dict[str, int] = {}

    def tick(self, now: float) -> list[tuple[float, np.ndarray]]:
        if now + EPS_S >= self.next_camera:
            self._capture(now)
            self.next_camera += self.timing.camera_period_s
        if self.in_flight is not None and now + EPS_S >= self.in_flight[0]:
            _, stamp, chunk, latency_s = self.in_flight
            self.latency.record(latency_s)
            self.scheduler.on_chunk(stamp, chunk)  # published: the node commits it now
            self.in_flight = None
        if self.in_flight is None and self.frame is not None:
            reason = self.scheduler.due(now, self.frame[0])
            if reason is not None:
                self.triggers[reason] = self.triggers.get(reason, 0) + 1
                self._infer(now)
        arrived = [p for p in self.pending if p[0] <= now + EPS_S]
        self.pending = [p for p in self.pending if p[0] > now + EPS_S]
        return [(stamp, chunk) for _, stamp, chunk in arrived]

    def _capture(self, now: float) -> None:
        images = self.blank
        if self.inputs is not None:  # any frame may be the newest when the model is next free
            images = render_observation_images(
                self.sim, self.backend.camera_names, self.noise_rng, self.inputs
            )
        self.frame = (now, self.sim.privileged_state(), images)

    def _infer(self, now: float) -> None:
        stamp, state, images = self.frame
        self.frame = None  # taken: the next inference waits for a newer frame
        committed = None
        if self.schedule.realtime_chunking and self.backend.action_space.kind == "continuous":
            got = self.scheduler.committed_for(stamp, now)
            committed = None if got is None else CommittedActions(*got)
        chunk = self._chunk(int(round(stamp * 1e9)), state, images, committed)
        latency_s = self.model_latency.draw()
        publish = now + latency_s
        arrival = publish + self._processing_delay_s()
        self.in_flight = (publish, stamp, chunk, latency_s)
        self.pending.append((arrival, stamp, chunk))


class _ActuationSide:
    """The actuation node: a control step when a chunk is accepted and every step_dt after the last
    one, then min-jerk servo waypoints to the arm at servo_hz. Every tick feeds the node's
    ExecutionStats (idle ticks, chunk joins); the waypoints' fastest joint speed is kept too."""

    def __init__(
        self, sim: WidowXSim, mode: str, horizon: int, timing: Timing, stats: ExecutionStats | None = None
    ) -> None:
        self.sim, self.timing = sim, timing
        # As actuation_node: one-step actions always run as single steps.
        self.executor = ChunkExecutor(
            mode if horizon > 1 else "single_step", timing.step_dt_s, max_open_loop_s=timing.max_open_loop_s
        )
        self.controller = EeDeltaController(ControllerConfig(step_dt_s=timing.step_dt_s))
        measured = sim.joint_state()[1]
        self.controller.reset(measured[:6], float(measured[6]))
        self.commanded = measured[:6].copy()
        self.waypoints: list[tuple[float, np.ndarray]] = []
        self.last_step = -1.0
        self.stats = stats or ExecutionStats(timing.step_dt_s)
        self.stats.start()  # an episode start (as the actuation node's)
        self.frame_to_action_s: list[float] = []  # per accepted chunk: arrival - its frame's stamp
        self.max_waypoint_speed_rad_s = np.zeros(6)
        self._last_waypoint_s = 0.0  # when self.commanded was sent (the episode's start before any)

    def tick(self, now: float, arrived: list[tuple[float, np.ndarray]]) -> None:
        run_step = False
        for stamp, chunk in arrived:
            accepted = self.executor.submit(chunk, stamp, now).accepted
            if accepted:
                self.frame_to_action_s.append(now - stamp)
            run_step |= accepted
        if not run_step and self.last_step >= 0 and now - self.last_step >= self.timing.step_dt_s - EPS_S:
            run_step = True
        if run_step:
            self.last_step = now
            self._control_step(now)
        while self.waypoints and self.waypoints[0][0] <= now + EPS_S:
            at, joints = self.waypoints.pop(0)
            if at > self._last_waypoint_s + EPS_S:
                speed = np.abs(joints - self.commanded) / (at - self._last_waypoint_s)
                self.max_waypoint_speed_rad_s = np.maximum(self.max_waypoint_speed_rad_s, speed)
            self.commanded, self._last_waypoint_s = joints, at
            self.sim.set_arm_command(self.commanded)

    def _control_step(self, now: float) -> None:
        result = self.executor.next_step(now)
        if result.action is None:
            if result.idle:
                self.stats.on_idle()
            return
        command = self.controller.step(result.action, self.sim.joint_state()[1][:6])
        self.stats.on_step(command.joint_targets_rad, result.boundary)
        self.sim.set_finger_command(command.finger_target_m)
        path = servo_waypoints(
            self.commanded, command.joint_targets_rad, self.timing.step_dt_s, self.timing.servo_hz
        )
        self.waypoints = [(now + t, joints) for t, joints in path]


def run_graph_episode(
    sim: WidowXSim,
    backend: PolicyBackend,
    seed: int,
    mode: str,
    timing: Timing | None = None,
    *,
    reset_kwargs: dict | None = None,
    render: bool = False,
    on_inference: InferenceHook | None = None,
    max_steps: int | None = None,
    stop_on_success: bool = True,
    stop_after_success_steps: int | None = None,
    perturb: ChunkPerturbation | None = None,
    schedule: AsyncInference | str | None = None,
    stats: ExecutionStats | None = None,
) -> EpisodeOutcome:
    """One episode through the replica; ``render`` gives the backend real camera images.

    ``timing`` defaults to the graph's (``Timing()``: the params files), ``schedule`` to the policy
    node's (``AsyncInference()``); :data:`TICKED` runs the fixed inference tick instead. Runs until
    success (or ``stop_after_success_steps`` control steps after it) or the step budget.
    """
    timing = timing or Timing()
    spec = sim.reset(seed, **(reset_kwargs or {}))
    backend.reset(seed)
    if schedule == TICKED:
        policy = _PolicySide(sim, backend, seed, timing, render, on_inference, perturb)
    elif schedule is None or isinstance(schedule, AsyncInference):
        policy = _AsyncPolicySide(
            schedule or AsyncInference(), sim, backend, seed, timing, render, on_inference, perturb
        )
    else:
        raise ValueError(f"schedule: expected an AsyncInference, None or '{TICKED}', got {schedule!r}")
    actuation = _ActuationSide(sim, mode, int(getattr(backend, "horizon", 1)), timing, stats)
    physics_per_tick = round(timing.tick_s / sim.config.physics_dt)
    budget = max_steps or spec.max_steps
    success_at: int | None = None
    for tick in range(int(budget * timing.step_dt_s / timing.tick_s)):
        now = tick * timing.tick_s
        actuation.tick(now, policy.tick(now))
        sim.step(physics_per_tick)
        if success_at is None and sim.success():
            success_at = int(now / timing.step_dt_s) + 1
            if stop_on_success:
                break
        if success_at is not None and stop_after_success_steps is not None:
            if now >= (success_at + stop_after_success_steps) * timing.step_dt_s:
                break
    execution = {
        **(actuation.stats.summary() if stats is None else {}),
        "frame_to_action_s": actuation.frame_to_action_s,
        "max_waypoint_speed_rad_s": actuation.max_waypoint_speed_rad_s.tolist(),
    }
    triggers = dict(getattr(policy, "triggers", {}))
    if success_at is None:
        return EpisodeOutcome(False, budget, execution, triggers)
    return EpisodeOutcome(True, success_at, execution, triggers)
