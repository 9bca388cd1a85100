"""WidowXSim: resets, determinism, commands, observations and rendering (no ROS)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vla_common import robot
from vla_sim import tasks
from vla_sim.widowx_sim import ARM_JOINT_NAMES, START_JOINTS_RAD, SimConfig, WidowXSim, jittered_start_joints


@pytest.fixture(scope="module")
def sim() -> WidowXSim:
    simulation = WidowXSim()
    yield simulation
    simulation.close()


def test_the_model_has_the_robots_joints_and_limits(sim):
    """wx250s.xml and vla_common.robot describe the same arm: names, joint ranges, finger travel."""
    model = sim.model
    assert ARM_JOINT_NAMES is robot.ARM_JOINT_NAMES
    ranges = np.array([model.jnt_range[model.joint(name).id] for name in robot.ARM_JOINT_NAMES])
    np.testing.assert_allclose(ranges[:, 0], robot.JOINT_LOWER_RAD, atol=1e-6)
    np.testing.assert_allclose(ranges[:, 1], robot.JOINT_UPPER_RAD, atol=1e-6)
    finger = model.jnt_range[model.joint(robot.FINGER_JOINT_NAME).id]
    np.testing.assert_allclose(finger, [robot.FINGER_LOWER_M, robot.FINGER_UPPER_M])
    assert [model.joint(name).id for name in robot.FINGER_JOINT_NAMES]  # both fingers exist
    names, _, _, _ = sim.joint_state()
    assert tuple(names) == (*robot.ARM_JOINT_NAMES, *robot.FINGER_JOINT_NAMES)


def _drive(sim: WidowXSim, seed: int) -> np.ndarray:
    """Reset, play a fixed command sequence and return the full physics state."""
    sim.reset(seed)
    start = sim.joint_state()[1][:6]
    for k in range(5):
        sim.set_arm_command(start + 0.05 * k * np.array([1.0, 0.5, -0.5, 0.0, 0.3, 0.2]))
        sim.set_finger_command(0.02 if k % 2 else 0.035)
        sim.step(50)
    return np.concatenate([sim.data.qpos, sim.data.qvel, [sim.time_s]])


@pytest.mark.parametrize(
    "bad",
    [
        {"camera_width": 0},
        {"physics_dt": 0.0},
        {"start_joints": (0.0,) * 5},
        {"start_finger_m": 0.05},
        {"settle_steps": -1},
    ],
)
def test_config_validation_names_the_field(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SimConfig(**bad)


def test_reset_is_deterministic_across_instances(sim: WidowXSim) -> None:
    other = WidowXSim()
    try:
        assert np.array_equal(_drive(sim, 42), _drive(other, 42))
        assert sim.privileged_state() == other.privileged_state()
        assert np.array_equal(sim.render("third_person"), other.render("third_person"))
        # The same instance reproduces itself after other episodes.
        first = _drive(sim, 42)
        _drive(sim, 3)
        assert np.array_equal(first, _drive(sim, 42))
    finally:
        other.close()


def test_different_seeds_give_different_layouts(sim: WidowXSim) -> None:
    sim.reset(1)
    first = sim.privileged_state()["objects"]
    sim.reset(2)
    assert sim.privileged_state()["objects"] != first


def test_reset_state(sim: WidowXSim) -> None:
    spec = sim.reset(7, family="place_in_bowl")
    assert spec.family == "place_in_bowl" and sim.spec is spec
    assert sim.time_s == 0.0
    names, positions, velocities, efforts = sim.joint_state()
    assert names == [*ARM_JOINT_NAMES, "left_finger", "right_finger"]
    assert positions.shape == velocities.shape == efforts.shape == (8,)
    assert positions[:6] == pytest.approx(sim.config.start_joints, abs=2e-3)
    assert positions[6] == pytest.approx(0.037, abs=1e-3) and positions[7] == pytest.approx(
        -positions[6], abs=1e-4
    )
    assert np.max(np.abs(velocities)) < 0.05
    tool = sim.tool_pose()[:3, 3]  # the start pose is inside the OpenVLA workspace box
    assert np.all(tool >= [0.10, -0.20, -0.01]) and np.all(tool <= [0.45, 0.25, 0.30])
    objects = sim.privileged_state()["objects"]
    assert set(objects) == set(spec.active_objects)
    for name, placement in zip(spec.active_objects, spec.placements, strict=True):
        assert objects[name]["position"] == pytest.approx([placement.x, placement.y, 0.02], abs=2e-3)
    assert not sim.success()


def test_reset_from_a_jittered_start_pose(sim: WidowXSim) -> None:
    starts = [jittered_start_joints(np.random.default_rng(i)) for i in range(20)]
    assert np.array_equal(jittered_start_joints(np.random.default_rng(3)), starts[3])  # seeded
    waists = [s[0] for s in starts]
    assert max(waists) - min(waists) > 0.4  # the gripper really moves sideways
    tools = []
    for start in starts[:4]:
        sim.reset(5, start_joints=start)
        assert sim.joint_state()[1][:6] == pytest.approx(start, abs=2e-3)
        tool = sim.tool_pose()
        assert tool[2, 0] < -0.95  # still pointing down (the gripper link's x axis along -z)
        assert 0.12 < tool[2, 3] < 0.35  # above the objects
        tools.append(tool[:2, 3])
    assert np.ptp(np.array(tools), axis=0).max() > 0.05
    sim.reset(5)
    assert sim.joint_state()[1][:6] == pytest.approx(START_JOINTS_RAD, abs=2e-3)
    with pytest.raises(ValueError, match="start_joints"):
        sim.reset(5, start_joints=[0.0, 1.0])


def test_reset_from_instruction(sim: WidowXSim) -> None:
    spec = sim.reset(3, instruction="put the blue cube in the bowl")
    assert (spec.family, spec.target_object) == ("place_in_bowl", "blue_cube")
    with pytest.raises(ValueError, match="disagrees"):
        sim.reset(3, family="pick_up", instruction="put the blue cube in the bowl")


def test_privileged_state_is_json(sim: WidowXSim) -> None:
    sim.reset(9, family="place_in_bowl")
    state = json.loads(json.dumps(sim.privileged_state()))
    assert state["target_object"] == sim.spec.target_object
    assert state["destination"] == "bowl" and len(state["destination_position"]) == 3
    assert np.array(state["tool_pose"]) == pytest.approx(sim.tool_pose())
    some = next(iter(state["objects"].values()))
    assert {"position", "yaw", "colour", "shape", "size_m"} <= set(some)
    sim.reset(9, family="pick_up")
    assert sim.privileged_state()["destination_position"] is None


def test_stack_and_push_episodes_tell_the_expert_where_and_which_way(sim: WidowXSim) -> None:
    spec = sim.reset(9, family="stack")
    state = sim.privileged_state()
    base = state["objects"][spec.base_object]
    assert state["destination_position"] == pytest.approx(base["position"])
    # released with the held object's bottom just above the base's top
    assert state["release_z"] == pytest.approx(base["position"][2] + 0.02 + 0.02 + 0.012, abs=2e-3)
    spec = sim.reset(9, family="push", direction="right")
    state = sim.privileged_state()
    assert state["family"] == "push" and state["direction"] == "right"
    assert state["push_start"] == pytest.approx([spec.placements[0].x, spec.placements[0].y])


def test_instruction_text_replaces_the_words_not_the_task(sim: WidowXSim) -> None:
    plain = sim.reset(21, family="stack")
    spec = sim.reset(21, family="stack", instruction_text="set the thing on the other thing")
    assert spec.instruction == "set the thing on the other thing"
    assert (spec.target_object, spec.base_object, spec.placements) == (
        plain.target_object,
        plain.base_object,
        plain.placements,
    )


def test_commands_are_validated_and_clipped(sim: WidowXSim) -> None:
    sim.reset(0)
    sent = sim.set_arm_command(np.array([0.0, -3.0, 0.0, 0.0, 0.0, 0.0]))
    assert sent[1] == pytest.approx(np.radians(-108))
    assert sim.set_finger_command(0.0) == pytest.approx(0.015)
    with pytest.raises(ValueError, match="joints_rad"):
        sim.set_arm_command(np.zeros(5))
    with pytest.raises(ValueError, match="joints_rad"):
        sim.set_arm_command(np.array([np.nan, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="left_finger_m"):
        sim.set_finger_command(float("inf"))


def test_arm_tracks_a_command(sim: WidowXSim) -> None:
    sim.reset(0)
    target = np.array([0.3, -0.3, 0.4, 0.1, 1.2, -0.2])
    sim.set_arm_command(target)
    sim.step(1000)  # 2 s: faster than real time (not gated on the clock)
    assert sim.time_s == pytest.approx(2.0)
    assert sim.joint_state()[1][:6] == pytest.approx(target, abs=0.01)


def test_renders(sim: WidowXSim) -> None:
    sim.reset(0)
    for camera in ("third_person", "wrist"):
        image = sim.render(camera)
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert image.std() > 10.0  # not blank
    with pytest.raises(ValueError, match="third_person"):
        sim.render("overhead")


def test_success_when_target_is_in_the_bowl(sim: WidowXSim) -> None:
    spec = sim.reset(4, family="place_in_bowl")
    name = spec.target_object
    address = sim.model.joint(f"{name}_joint").qposadr[0]
    sim.data.qpos[address : address + 3] = (*spec.bowl_xy, 0.03)
    sim.step(200)
    assert sim.success()
    assert tasks.is_in_bowl(sim.privileged_state()["objects"][name]["position"], sim.bowl_position())


def test_reset_to_a_given_episode_keeps_its_scene(sim: WidowXSim) -> None:
    spec = sim.reset(11, family="stack")
    first = sim.object_positions()
    swapped = tasks.retarget(spec, spec.base_object, spec.target_object)
    assert sim.reset(11, episode=swapped) == swapped
    assert sim.privileged_state()["target_object"] == spec.base_object
    after = sim.object_positions()
    assert sorted(after) == sorted(first)
    for name, position in first.items():  # the same scene, settled the same way
        assert after[name] == pytest.approx(position, abs=1e-9)
    with pytest.raises(ValueError, match=r"episode: fixes the seed \(11\) and the task; got seed 12"):
        sim.reset(12, episode=swapped)
    with pytest.raises(ValueError, match=r"and \['family'\]"):
        sim.reset(11, family="stack", episode=swapped)


def test_retarget_switches_the_running_task_not_the_scene(sim: WidowXSim) -> None:
    spec = sim.reset(11, family="stack")
    sim.step(50)
    before = sim.object_positions()
    swapped = tasks.retarget(spec, spec.base_object, spec.target_object)
    sim.retarget(swapped)
    assert sim.spec == swapped
    state = sim.privileged_state()
    assert state["target_object"] == spec.base_object
    assert state["destination_position"] == pytest.approx(before[spec.target_object].tolist())
    assert sim.object_positions().keys() == before.keys()
    for name, position in before.items():  # physics untouched
        assert sim.object_positions()[name] == pytest.approx(position, abs=1e-12)
    other = sim.reset(12, family="stack")
    with pytest.raises(ValueError, match=r"re-targeting of the running scene \(seed 12\), got seed 11"):
        sim.retarget(swapped)
    with pytest.raises(ValueError, match="expected family 'stack', got 'pick_up'"):
        sim.retarget(dataclasses.replace(other, family="pick_up"))
