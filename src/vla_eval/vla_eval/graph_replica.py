"""A ROS-free replica of the node graph's timing: the same modules, the same clocks, no DDS.

The sim runs clock ticks; cameras render once per camera period (with the sim node's read noise,
resized as the perception node resizes them); the policy infers once per control period on the
newest frame with the newest joint state as proprio, and its chunk arrives ``processing_s`` later;
the actuation runs a control step when an action arrives and every step_dt after its last step (as
actuation_node does), streaming min-jerk servo waypoints through the same chunk executor and IK
controller.

Every number the graph has is read from the params files its nodes load (control.yaml, sim.yaml,
perception.yaml, actuation.yaml through vla_bringup.deployment, so $VLA_STACK_CONFIG_DIR too): change
config/ and the replica follows as the graph does. Only the replica's own model of the graph's
latency (``policy_phase_s``, ``processing_s``) is set here.

Used by the closed-loop timing tests and by demonstration collection (``vla-stack collect``): the
demonstrations see exactly what a policy sees through the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from vla_actuation.chunk_executor import ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
from vla_bringup.deployment import load_deployment, node_parameters, require
from vla_common.action_space import dequantize_actions
from vla_perception.preprocess import CameraPreprocess
from vla_policy.contract import Observation, PolicyBackend, PolicyOutput
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
        self.sim, self.backend, self.timing = sim, backend, timing
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
        proprio = self.sim.joint_state()[1][:7].astype(np.float64)
        # the sim's current task: a collector may re-target it mid-episode (WidowXSim.retarget)
        observation = Observation(int(stamp * 1e9), images, self.sim.spec.instruction, proprio, state)
        out = self.backend.infer(observation)
        if self.on_inference is not None:
            self.on_inference(observation, out)
        chunk = np.atleast_2d(out.chunk)
        if self.backend.action_space.kind == "discrete":  # what the actuation decodes from the wire
            chunk = dequantize_actions(chunk, self.backend.action_space)
        if self.perturb is not None:
            chunk = self.perturb(chunk)
        delay = self.timing.processing_s + self.latency_rng.uniform(0.0, self.timing.processing_jitter_s)
        self.pending.append((now + delay, stamp, chunk))


class _ActuationSide:
    """The actuation node: a control step when a chunk is accepted and every step_dt after the last
    one, then min-jerk servo waypoints to the arm at servo_hz."""

    def __init__(self, sim: WidowXSim, mode: str, horizon: int, timing: Timing) -> None:
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

    def tick(self, now: float, arrived: list[tuple[float, np.ndarray]]) -> None:
        run_step = False
        for stamp, chunk in arrived:
            run_step |= self.executor.submit(chunk, stamp, now).accepted
        if not run_step and self.last_step >= 0 and now - self.last_step >= self.timing.step_dt_s - EPS_S:
            run_step = True
        if run_step:
            self.last_step = now
            self._control_step(now)
        while self.waypoints and self.waypoints[0][0] <= now + EPS_S:
            self.commanded = self.waypoints.pop(0)[1]
            self.sim.set_arm_command(self.commanded)

    def _control_step(self, now: float) -> None:
        action = self.executor.next_action(now)
        if action is None:
            return
        command = self.controller.step(action, self.sim.joint_state()[1][:6])
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
) -> EpisodeOutcome:
    """One episode through the replica; ``render`` gives the backend real camera images.

    ``timing`` defaults to the graph's (``Timing()``: the params files). Runs until success (or
    ``stop_after_success_steps`` control steps after it) or the step budget.
    """
    timing = timing or Timing()
    spec = sim.reset(seed, **(reset_kwargs or {}))
    backend.reset(seed)
    policy = _PolicySide(sim, backend, seed, timing, render, on_inference, perturb)
    actuation = _ActuationSide(sim, mode, int(getattr(backend, "horizon", 1)), timing)
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
    if success_at is None:
        return EpisodeOutcome(False, budget)
    return EpisodeOutcome(True, success_at)
