"""A ROS-free replica of the node graph's timing, for closed-loop tests of chunk execution.

The sim runs at 100 Hz ticks; cameras (privileged state snapshots) at 10 Hz; the policy infers on
the newest frame every 0.2 s and its action arrives ``processing_s`` later; the actuation runs a
control step when an action arrives and every step_dt after its last step (as actuation_node
does), streaming servo waypoints at 50 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_actuation.chunk_executor import ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig, EeDeltaController, servo_waypoints
from vla_policy.action_space import dequantize_actions
from vla_policy.backends.scripted.backend import ScriptedBackend
from vla_policy.contract import Observation
from vla_sim.widowx_sim import WidowXSim

TICK_S = 0.01


@dataclass(frozen=True)
class Timing:
    camera_period_s: float = 0.1
    policy_period_s: float = 0.2
    policy_phase_s: float = 0.05  # when the policy ticks relative to the camera frames
    processing_s: float = 0.03  # frame -> action arrival (perception + inference + DDS)
    step_dt_s: float = 0.2
    servo_hz: float = 50.0


def run_graph_episode(
    sim: WidowXSim,
    seed: int,
    mode: str,
    horizon: int,
    timing: Timing = Timing(),
    action_kind: str = "continuous",
) -> tuple[bool, int]:
    """One episode through the replica; returns (success, control steps used)."""
    spec = sim.reset(seed)
    backend = ScriptedBackend(action_kind=action_kind, chunk_horizon=horizon)
    space = backend.action_space
    pixels = {
        camera: np.zeros((2, 2, 3), np.uint8) for camera in backend.camera_names
    }  # the expert ignores them
    # As actuation_node: one-step actions always run as single steps.
    executor = ChunkExecutor(mode if horizon > 1 else "single_step", timing.step_dt_s, max_open_loop_s=0.5)
    controller = EeDeltaController(ControllerConfig(step_dt_s=timing.step_dt_s))
    measured = sim.joint_state()[1]
    controller.reset(measured[:6], float(measured[6]))
    commanded = measured[:6].copy()
    waypoints: list[tuple[float, np.ndarray]] = []
    frame: tuple[float, dict] | None = None
    pending: list[tuple[float, float, np.ndarray]] = []  # (arrival, stamp, chunk)
    next_camera, next_policy = 0.0, timing.policy_phase_s
    last_step = -1.0
    steps = int(spec.max_steps * timing.step_dt_s / TICK_S)
    for tick in range(steps):
        now = tick * TICK_S
        if now + 1e-9 >= next_camera:
            frame = (now, sim.privileged_state())
            next_camera += timing.camera_period_s
        if now + 1e-9 >= next_policy and frame is not None:
            stamp, state = frame
            out = backend.infer(Observation(int(stamp * 1e9), pixels, spec.instruction, None, state))
            chunk = np.atleast_2d(out.chunk)
            if space.kind == "discrete":  # what the actuation decodes from the wire
                chunk = dequantize_actions(chunk, space)
            pending.append((now + timing.processing_s, stamp, chunk))
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
        if sim.success():
            return True, int(now / timing.step_dt_s) + 1
    return False, spec.max_steps
