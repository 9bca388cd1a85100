"""WidowX 250 6DOF (wx250s) constants, defined once: joint names and limits (Interbotix values).

Kinematics (vla_actuation), the MuJoCo model (vla_sim), dataset export (vla_data) and the nodes all
read these names and limits from here.
"""

from __future__ import annotations

import math

import numpy as np

ROBOT_MODEL = "wx250s"
ARM_JOINT_NAMES: tuple[str, ...] = (
    "waist",
    "shoulder",
    "elbow",
    "forearm_roll",
    "wrist_angle",
    "wrist_rotate",
)
# The finger the gripper controller drives (metres); the right finger mirrors it.
FINGER_JOINT_NAME = "left_finger"
FINGER_JOINT_NAMES: tuple[str, ...] = (FINGER_JOINT_NAME, "right_finger")
# Proprioception in recorded data: the arm joints, then the driven finger.
PROPRIO_JOINT_NAMES: tuple[str, ...] = (*ARM_JOINT_NAMES, FINGER_JOINT_NAME)

CONTINUOUS_LIMIT_RAD = math.pi - 1e-5  # waist, forearm_roll and wrist_rotate turn (almost) all the way round
JOINT_LOWER_RAD = np.array(
    [
        -CONTINUOUS_LIMIT_RAD,
        *np.radians([-108.0, -123.0]),
        -CONTINUOUS_LIMIT_RAD,
        np.radians(-100.0),
        -CONTINUOUS_LIMIT_RAD,
    ]
)
JOINT_UPPER_RAD = np.array(
    [
        CONTINUOUS_LIMIT_RAD,
        *np.radians([114.0, 92.0]),
        CONTINUOUS_LIMIT_RAD,
        np.radians(123.0),
        CONTINUOUS_LIMIT_RAD,
    ]
)
JOINT_VELOCITY_LIMIT_RAD_S = np.full(len(ARM_JOINT_NAMES), math.pi)
FINGER_LOWER_M = 0.015  # closed
FINGER_UPPER_M = 0.037  # open

for _array in (JOINT_LOWER_RAD, JOINT_UPPER_RAD, JOINT_VELOCITY_LIMIT_RAD_S):
    _array.setflags(write=False)
