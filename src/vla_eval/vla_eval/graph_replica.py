"""A ROS-free replica of the node graph's timing: the same modules, the same clocks, no DDS.

The sim runs 100 Hz ticks; cameras render at 10 Hz (with the sim node's read noise, resized as the
perception node resizes them); the policy infers every 0.2 s on the newest frame with the newest
joint state as proprio, and its chunk arrives ``processing_s`` later; the actuation runs a control
step when an action arrives and every step_dt after its last step (as actuation_node does),
streaming min-jerk servo waypoints at 50 Hz through the same chunk executor and IK controller.

Used by the closed-loop timing tests and by demonstration collection (``vla-stack collect``): the
demonstrations see exactly what a policy sees through the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vla_actuation.chunk_executor import ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
from vla_common.action_space import dequantize_actions
from vla_perception.preprocess import CameraPreprocess
from vla_policy.contract import Observation, PolicyBackend, PolicyOutput
from vla_sim.sensor_noise import add_read_noise
from vla_sim.widowx_sim import WidowXSim

TICK_S = 0.01
# The perception node's defaults (config/perception.yaml): sim camera -> policy input.
CAMERA_TOPICS = {"primary": "third_person", "wrist": "wrist"}
PERCEPTION_SIZES = {"primary": (256, 256), "wrist": (128, 128)}


@dataclass(frozen=True)
class Timing:
    camera_period_s: float = 0.1
    policy_period_s: float = 0.2
    policy_phase_s: float = 0.05  # when the policy ticks relative to the camera frames
    processing_s: float = 0.03  # frame -> action arrival (perception + inference + DDS)
    # Each chunk arrives a further U(0, processing_jitter_s) later (seeded by the episode): the graph's
    # frame-to-action time varies tick to tick with inference time and load.
    processing_jitter_s: float = 0.0
    step_dt_s: float = 0.2
    servo_hz: float = 50.0


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
    sim: WidowXSim, cameras: tuple[str, ...], rng: np.random.Generator | None, noise_sigma: float = 2.0
) -> dict[str, np.ndarray]:
    """What the perception node hands the policy: sim camera + read noise, antialiased resize."""
    images = {}
    for camera in cameras:
        rgb = sim.render(CAMERA_TOPICS[camera])
        if rng is not None:
            rgb = add_read_noise(rgb, rng, noise_sigma)
        height, width = PERCEPTION_SIZES[camera]
        images[camera] = CameraPreprocess(height, width).apply(rgb)
    return images


def run_graph_episode(
    sim: WidowXSim,
    backend: PolicyBackend,
    seed: int,
    mode: str,
    timing: Timing = Timing(),
    *,
    reset_kwargs: dict | None = None,
    render: bool = False,
    on_inference: InferenceHook | None = None,
    max_steps: int | None = None,
    stop_on_success: bool = True,
    stop_after_success_steps: int | None = None,
    perturb: ChunkPerturbation | None = None,
) -> EpisodeOutcome:
    """One episode through the replica; ``render`` gives the backend real camera images."""
    spec = sim.reset(seed, **(reset_kwargs or {}))
    backend.reset(seed)
    space = backend.action_space
    noise_rng = np.random.default_rng(seed + 7919)
    latency_rng = np.random.default_rng([seed, 11])
    blank = {camera: np.zeros((2, 2, 3), np.uint8) for camera in backend.camera_names}
    horizon = int(getattr(backend, "horizon", 1))
    # As actuation_node: one-step actions always run as single steps.
    executor = ChunkExecutor(mode if horizon > 1 else "single_step", timing.step_dt_s, max_open_loop_s=0.5)
    controller = EeDeltaController(ControllerConfig(step_dt_s=timing.step_dt_s))
    measured = sim.joint_state()[1]
    controller.reset(measured[:6], float(measured[6]))
    commanded = measured[:6].copy()
    waypoints: list[tuple[float, np.ndarray]] = []
    frame: tuple[float, dict, dict] | None = None
    pending: list[tuple[float, float, np.ndarray]] = []  # (arrival, stamp, chunk)
    next_camera, next_policy = 0.0, timing.policy_phase_s
    last_step = -1.0
    budget = max_steps or spec.max_steps
    success_at: int | None = None
    for tick in range(int(budget * timing.step_dt_s / TICK_S)):
        now = tick * TICK_S
        if now + 1e-9 >= next_camera:
            # Only the frames the policy will read are rendered (the newest at its next tick).
            used = next_policy < now + timing.camera_period_s - 1e-9
            images = (
                render_observation_images(sim, backend.camera_names, noise_rng) if render and used else blank
            )
            frame = (now, sim.privileged_state(), images)
            next_camera += timing.camera_period_s
        if now + 1e-9 >= next_policy and frame is not None:
            stamp, state, images = frame
            proprio = sim.joint_state()[1][:7].astype(np.float64)
            # the sim's current task: a collector may re-target it mid-episode (WidowXSim.retarget)
            observation = Observation(int(stamp * 1e9), images, sim.spec.instruction, proprio, state)
            out = backend.infer(observation)
            if on_inference is not None:
                on_inference(observation, out)
            chunk = np.atleast_2d(out.chunk)
            if space.kind == "discrete":  # what the actuation decodes from the wire
                chunk = dequantize_actions(chunk, space)
            if perturb is not None:
                chunk = perturb(chunk)
            delay = timing.processing_s + latency_rng.uniform(0.0, timing.processing_jitter_s)
            pending.append((now + delay, stamp, chunk))
            next_policy += timing.policy_period_s
        run_step = False
        for item in [p for p in pending if p[0] <= now + 1e-9]:
            pending.remove(item)
            run_step |= executor.submit(item[2], item[1], now).accepted
        if not run_step and last_step >= 0 and now - last_step >= timing.step_dt_s - 1e-9:
            run_step = True
        if run_step:
            last_step = now
            action = executor.next_action(now)
            if action is not None:
                command = controller.step(action, sim.joint_state()[1][:6])
                sim.set_finger_command(command.finger_target_m)
                path = servo_waypoints(
                    commanded, command.joint_targets_rad, timing.step_dt_s, timing.servo_hz
                )
                waypoints = [(now + t, joints) for t, joints in path]
        while waypoints and waypoints[0][0] <= now + 1e-9:
            commanded = waypoints.pop(0)[1]
            sim.set_arm_command(commanded)
        sim.step(round(TICK_S / sim.config.physics_dt))
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
