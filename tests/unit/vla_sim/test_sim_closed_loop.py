"""Closed loop without ROS: scripted expert -> EeDeltaController -> servo waypoints -> WidowXSim.

This is the acceptance bar the ROS graph has to meet later (IK, frames, gripper convention): at
5 Hz, each 0.2 s step is streamed to the position servos as minimum-jerk waypoints at 50 Hz
(10 physics steps each), and the episode succeeds within its step budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_actuation import ee_delta_controller as controller
from vla_eval.graph_replica import run_graph_episode
from vla_policy.backends.scripted.backend import ScriptedBackend
from vla_policy.backends.scripted.expert import ScriptedExpert
from vla_sim import tasks
from vla_sim.widowx_sim import WidowXSim

CONTROL_DT_S = 0.2
SERVO_HZ = 50.0


def run_episode(sim: WidowXSim, seed: int, family: str | None = None) -> tuple[bool, int]:
    """Play one expert episode; returns (success, control steps used)."""
    spec = sim.reset(seed, family=family)
    expert = ScriptedExpert()
    ee_controller = controller.EeDeltaController(controller.ControllerConfig())
    measured = sim.joint_state()[1]
    ee_controller.reset(measured[:6], float(measured[6]))
    previous_targets = measured[:6].copy()
    physics_per_waypoint = round(1.0 / SERVO_HZ / sim.config.physics_dt)
    for step in range(spec.max_steps):
        action = expert.act(sim.privileged_state())
        command = ee_controller.step(action, sim.joint_state()[1][:6])
        sim.set_finger_command(command.finger_target_m)
        waypoints = controller.servo_waypoints(
            previous_targets, command.joint_targets_rad, CONTROL_DT_S, SERVO_HZ
        )
        for _, joints in waypoints:
            sim.set_arm_command(joints)
            sim.step(physics_per_waypoint)
        previous_targets = command.joint_targets_rad
        if sim.success():
            return True, step + 1
    return False, spec.max_steps


def test_expert_succeeds_in_closed_loop() -> None:
    sim = WidowXSim()
    results = {seed: run_episode(sim, seed) for seed in range(10)}
    successes = sum(success for success, _ in results.values())
    assert successes >= 9, f"only {successes}/10 episodes succeeded: {results}"
    assert {sim.reset(seed).family for seed in range(20)} == set(tasks.FAMILIES)


@pytest.mark.parametrize("family", tasks.FAMILY_ORDER)
def test_expert_solves_every_family_through_the_graph_replica(family) -> None:
    # The demonstrations come from here: expert chunks through the graph's timing and actuation.
    sim = WidowXSim()
    seeds = range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 8)
    backend = ScriptedBackend(chunk_horizon=4)
    results = [
        run_graph_episode(sim, backend, seed, "receding_horizon", reset_kwargs={"family": family})
        for seed in seeds
    ]
    assert sum(r.success for r in results) >= 7, results
    assert all(sim.reset(seed, family=family).family == family for seed in seeds)


def test_push_moves_the_object_along_its_lane_and_not_the_others() -> None:
    sim = WidowXSim()
    spec = sim.reset(tasks.TRAIN_SEED_START + 3, family="push", direction="left")
    before = sim.object_positions()
    outcome = run_graph_episode(
        sim,
        ScriptedBackend(chunk_horizon=4),
        spec.seed,
        "receding_horizon",
        reset_kwargs={"family": "push", "direction": "left"},
    )
    after = sim.object_positions()
    assert outcome.success
    assert after[spec.target_object][1] - before[spec.target_object][1] >= tasks.PUSH_SUCCESS_M
    for name in spec.active_objects[1:]:
        assert np.linalg.norm(after[name][:2] - before[name][:2]) < 0.01, name


def test_place_in_bowl_leaves_the_object_in_the_bowl() -> None:
    sim = WidowXSim()
    success, steps = run_episode(sim, 123, family="place_in_bowl")
    assert success and steps <= 40
    sim.step(500)  # it stays there once released
    assert sim.success()
    assert (
        np.linalg.norm(
            sim.privileged_state()["objects"][sim.spec.target_object]["position"][:2]
            - sim.bowl_position()[:2]
        )
        < 0.065
    )


def test_replica_executes_the_perturbed_chunk_and_reports_the_clean_one() -> None:
    """DART-style noise for demonstrations: ``perturb`` changes what the arm does, never the label."""
    sim = WidowXSim()
    seen: list[np.ndarray] = []

    def hold_still(chunk: np.ndarray) -> np.ndarray:  # zero deltas, the gripper as asked
        return np.where(np.arange(chunk.shape[1]) < 6, 0.0, chunk)

    outcome = run_graph_episode(
        sim,
        ScriptedBackend(chunk_horizon=4),
        tasks.TRAIN_SEED_START,
        "receding_horizon",
        reset_kwargs={"family": "pick_up"},
        on_inference=lambda observation, output: seen.append(output.chunk.copy()),
        perturb=hold_still,
        max_steps=6,
    )
    assert not outcome.success
    assert max(np.abs(chunk[:, :3]).max() for chunk in seen) > 0.01  # the expert asked to move...
    start = np.asarray(sim.config.start_joints)
    assert np.abs(sim.joint_state()[1][:6] - start).max() < 0.02  # ...the arm ran the held chunks
