"""The wx250s MJCF against the facts in widowx.md and the PoE kinematics."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from vla_actuation.kinematics import forward_kinematics
from vla_sim.scene import arm_model_path

ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
CONTINUOUS = math.pi - 1e-5
# widowx.md joint table (rad, metres).
LIMITS = {
    "waist": (-CONTINUOUS, CONTINUOUS),
    "shoulder": (math.radians(-108), math.radians(114)),
    "elbow": (math.radians(-123), math.radians(92)),
    "forearm_roll": (-CONTINUOUS, CONTINUOUS),
    "wrist_angle": (math.radians(-100), math.radians(123)),
    "wrist_rotate": (-CONTINUOUS, CONTINUOUS),
    "left_finger": (0.015, 0.037),
    "right_finger": (-0.037, -0.015),
}


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(arm_model_path())


def test_options(model: mujoco.MjModel) -> None:
    assert model.opt.timestep == pytest.approx(0.002)
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert model.opt.impratio == pytest.approx(10.0)


def test_joint_names_types_and_limits(model: mujoco.MjModel) -> None:
    names = [model.joint(i).name for i in range(model.njnt)]
    assert names == [*ARM, "left_finger", "right_finger"]
    for name, (low, high) in LIMITS.items():
        joint = model.joint(name)
        assert joint.range == pytest.approx([low, high], abs=1e-7), name
        expected = mujoco.mjtJoint.mjJNT_SLIDE if "finger" in name else mujoco.mjtJoint.mjJNT_HINGE
        assert joint.type[0] == expected, name


def test_actuators_cover_joint_ranges(model: mujoco.MjModel) -> None:
    for name in (*ARM, "left_finger"):
        actuator = model.actuator(name)
        assert actuator.ctrlrange == pytest.approx(model.joint(name).range), name
        assert model.actuator_forcelimited[actuator.id]
    assert model.actuator("waist").gainprm[0] == pytest.approx(50.0)
    assert model.actuator("left_finger").gainprm[0] > 200.0


def test_home_pose_matches_poe(model: mujoco.MjModel) -> None:
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    site = data.site("ee_gripper_link")
    assert site.xpos == pytest.approx([0.458325, 0.0, 0.36065], abs=1e-9)
    assert site.xmat.reshape(3, 3) == pytest.approx(np.eye(3), abs=1e-12)


def test_site_agrees_with_forward_kinematics(model: mujoco.MjModel) -> None:
    data = mujoco.MjData(model)
    rng = np.random.default_rng(7)
    low, high = model.jnt_range[:6, 0], model.jnt_range[:6, 1]
    for _ in range(50):
        joints = rng.uniform(low, high)
        data.qpos[:6] = joints
        mujoco.mj_kinematics(model, data)
        expected = forward_kinematics(joints)
        assert np.max(np.abs(data.site("ee_gripper_link").xpos - expected[:3, 3])) < 1e-6
        assert np.max(np.abs(data.site("ee_gripper_link").xmat.reshape(3, 3) - expected[:3, :3])) < 1e-6


def test_right_finger_mirrors_left(model: mujoco.MjModel) -> None:
    data = mujoco.MjData(model)
    data.ctrl[:6] = 0.0
    for target in (0.035, 0.018):
        data.ctrl[model.actuator("left_finger").id] = target
        mujoco.mj_step(model, data, nstep=300)
        left, right = data.joint("left_finger").qpos[0], data.joint("right_finger").qpos[0]
        assert left == pytest.approx(target, abs=1e-3)
        assert right == pytest.approx(-left, abs=1e-4)
