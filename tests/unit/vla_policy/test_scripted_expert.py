"""ScriptedExpert on synthetic privileged states (pure numpy, no simulator)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_policy.backends.scripted.expert import ExpertConfig, ScriptedExpert, grasp_yaw, tool_yaw

DOWN = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _pose(position, yaw: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rz(yaw) @ DOWN
    pose[:3, 3] = position
    return pose


def _state(
    tool: np.ndarray,
    obj_position,
    obj_yaw: float = 0.0,
    shape: str = "cube",
    finger_m: float = 0.037,
    destination=(0.35, -0.1, 0.0),
) -> dict:
    return {
        "objects": {
            "red_cube": {
                "position": list(obj_position),
                "yaw": obj_yaw,
                "colour": "red",
                "shape": shape,
                "size_m": 0.04,
            },
            "blue_cylinder": {
                "position": [0.2, 0.1, 0.02],
                "yaw": 0.0,
                "colour": "blue",
                "shape": "cylinder",
                "size_m": 0.04,
            },
        },
        "target_object": "red_cube",
        "destination": "bowl" if destination is not None else None,
        "destination_position": list(destination) if destination is not None else None,
        "tool_pose": tool.tolist(),
        "finger_m": finger_m,
        "time_s": 0.0,
    }


def test_first_step_is_bounded_and_heads_for_the_object() -> None:
    expert = ScriptedExpert()
    action = expert.act(_state(_pose([0.25, 0.0, 0.2]), [0.35, -0.1, 0.02], obj_yaw=1.0))
    assert action.shape == (7,)
    assert np.linalg.norm(action[:3]) == pytest.approx(0.04)
    assert np.max(np.abs(action[3:6])) <= 0.2 + 1e-12
    assert action[0] > 0 and action[1] < 0 and action[2] < 0
    assert action[6] == 1.0 and expert.phase == "approach"


def test_grasp_yaw_squares_to_cube_faces() -> None:
    assert grasp_yaw(1.0, "cube", 0.0) == pytest.approx(1.0 - math.pi / 2)
    assert grasp_yaw(0.3, "cube", 0.0) == pytest.approx(0.3)
    assert grasp_yaw(0.3, "cube", 2.0) == pytest.approx(0.3 + math.pi / 2)
    assert grasp_yaw(1.2, "cylinder", 0.1) == pytest.approx(0.1)
    assert tool_yaw(_pose([0, 0, 0], 0.4)[:3, :3]) == pytest.approx(0.4)


def test_yaw_action_turns_towards_the_cube() -> None:
    expert = ScriptedExpert()
    action = expert.act(_state(_pose([0.35, -0.1, 0.11]), [0.35, -0.1, 0.02], obj_yaw=0.5))
    assert action[5] == pytest.approx(0.2)  # rotation clipped, about z only
    assert abs(action[3]) < 1e-9 and abs(action[4]) < 1e-9


def test_phase_sequence_on_an_ideal_arm() -> None:
    """Execute each action exactly; carry the object with the tool once closed."""
    expert = ScriptedExpert()
    tool = _pose([0.25, 0.0, 0.2])
    obj = np.array([0.3, 0.05, 0.02])
    finger = 0.037
    phases = []
    for _ in range(60):
        action = expert.act(_state(tool, obj, obj_yaw=0.2, finger_m=finger))
        phases.append(expert.phase)
        rotation = _rz(action[5]) @ tool[:3, :3]  # only yaw moves in these episodes
        tool[:3, :3] = rotation
        tool[:3, 3] += action[:3]
        if action[6] < 0.5 and np.linalg.norm(obj - tool[:3, 3]) < 0.02:
            finger = 0.02
        if finger < 0.03:
            obj = tool[:3, 3] - (0.0, 0.0, 0.004)
        if action[6] > 0.5:
            finger = 0.037
        if expert.phase == "done":
            break
    order = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert order == ["approach", "descend", "close", "lift", "carry", "lower", "release", "retreat", "done"]
    assert tool_yaw(tool[:3, :3]) == pytest.approx(0.2, abs=0.06)
    assert np.linalg.norm(tool[:2, 3] - [0.35, -0.1]) < 0.02


def test_pick_up_ends_holding() -> None:
    expert = ScriptedExpert()
    expert.phase = "lift"
    expert._hold_position = np.array([0.3, 0.0, 0.024])
    expert._grasp_yaw = 0.0
    action = expert.act(_state(_pose([0.3, 0.0, 0.15]), [0.3, 0.0, 0.146], finger_m=0.02, destination=None))
    assert expert.phase == "done" and action[6] == 0.0


def test_slipped_object_restarts_the_approach() -> None:
    expert = ScriptedExpert()
    expert.phase = "carry"
    expert._grasp_yaw = 0.0
    action = expert.act(_state(_pose([0.3, 0.0, 0.15]), [0.28, 0.02, 0.02], finger_m=0.015))
    assert expert.phase == "approach" and expert.attempts == 2
    assert action[6] == 1.0  # open, and back over the object
    assert action[0] < 0 and action[1] > 0
    expert.reset()
    assert expert.phase == "approach" and expert.attempts == 1


def test_config_and_input_validation() -> None:
    with pytest.raises(ValueError, match="max_translation_m"):
        ExpertConfig(max_translation_m=0.0)
    with pytest.raises(ValueError, match="tool_pose"):
        ScriptedExpert().act(_state(np.eye(3), [0.3, 0, 0.02]))
    state = _state(_pose([0.3, 0, 0.2]), [0.3, 0, 0.02])
    state["target_object"] = "green_cube"
    with pytest.raises(ValueError, match="green_cube"):
        ScriptedExpert().act(state)
