"""A scripted pick-and-place expert on privileged simulator state (pure numpy).

It reads the ground truth of ``WidowXSim.privileged_state()`` (tool pose, object positions and
yaws, destination) and returns Bridge V2 end-effector deltas, one per 0.2 s control step:
``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` with the translation in metres along the base axes,
the rotation as Euler deltas ``R_delta = Rz(dyaw) Ry(dpitch) Rx(droll)`` applied about world-aligned
axes at the tool (``R_new = R_delta @ R``) and the gripper absolute (1 = open, 0 = closed).

The expert is a small phase machine:

    approach -> descend -> close -> lift -> carry -> lower -> release -> retreat -> done
                                      (pick_up: lift -> done, holding the object)
    push:     approach (behind the object, fingers closed) -> descend -> push -> retreat -> done

Stacking is pick-and-place with the other object as the destination (``release_z`` from the sim).

Every step moves at most ``max_translation_m`` and ``max_rotation_rad`` so that the actuation's
Bridge clip (0.05 m / 0.25 rad) never changes the direction of a step. If the object is not in the
gripper while lifting or carrying (missed or slipped), the expert opens and approaches again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_common.ee_delta import apply_ee_delta
from vla_common.rotations import BRIDGE_DOWN, euler_to_matrix, matrix_to_euler

PHASES = ("approach", "descend", "close", "lift", "carry", "lower", "release", "retreat", "push", "done")


@dataclass(frozen=True)
class ExpertConfig:
    """Heights are of the tool point (ee_gripper_link); the object's and bowl's z are their origins."""

    max_translation_m: float = 0.04  # per step, below the actuation's 0.05 m clip
    max_rotation_rad: float = 0.2  # per step and per Euler angle, below the 0.25 rad clip
    hover_above_object_m: float = 0.09  # approach height over the object's centre
    grasp_above_centre_m: float = 0.004  # tool point over the object's centre when closing
    carry_height_m: float = 0.15  # tool z while carrying (above the table)
    release_above_bowl_m: float = 0.075  # tool z over the bowl's base when opening
    position_tolerance_m: float = 0.008
    yaw_tolerance_rad: float = 0.06
    close_steps: int = 3  # steps holding still while the fingers close (at least)
    finger_contact_margin_m: float = 0.004  # fingers count as on the object within this of its half width
    open_finger_m: float = 0.03  # fingers count as open from here (fully open is 0.037)
    release_steps: int = 2
    push_behind_m: float = 0.06  # tool point this far behind the object's centre before pushing
    push_height_m: float = 0.025  # tool z while pushing (above the table)
    push_travel_m: float = 0.075  # how far the object is pushed (the detector asks for 0.05)
    in_hand_distance_m: float = 0.035  # object centre to tool point when held
    # The arm's servos lag their targets by up to about 0.1 s, so deltas are taken from the pose the
    # expert has commanded so far. That reference is re-synchronised with the measured pose when the
    # two disagree by more than resync_distance_m / resync_angle_rad (a clip, an IK failure or a
    # collision held the arm back), or by more than settled_offset_m once the arm has come to rest
    # (moved less than settled_motion_m since the last step): a steady offset, not lag.
    # Fraction of the remaining distance to cover per step (1 = all of it, up to the step bound).
    # Below 1 the expert tolerates latency: with the measured pose as its reference (chunked
    # execution, where it cannot know which of its steps ran) it converges without overshoot.
    step_gain: float = 1.0
    track_commanded_pose: bool = True  # False: always step from the measured pose
    resync_distance_m: float = 0.03
    resync_angle_rad: float = 0.15
    settled_motion_m: float = 0.002
    settled_offset_m: float = 0.004

    def __post_init__(self) -> None:
        for name in ("max_translation_m", "max_rotation_rad", "position_tolerance_m", "yaw_tolerance_rad"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"ExpertConfig.{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("close_steps", "release_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"ExpertConfig.{name}: expected >= 1 step, got {getattr(self, name)!r}")


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def tool_yaw(tool_rotation: np.ndarray) -> float:
    """Yaw of the tool in the Bridge state convention (0 with the fingers closing along base y)."""
    return float(matrix_to_euler(tool_rotation @ BRIDGE_DOWN.T)[2])


def grasp_yaw(object_yaw: float, shape: str, current_yaw: float) -> float:
    """Tool yaw for grasping: square to a cube's faces (nearest of the 4), anything for a cylinder."""
    if shape != "cube":
        return current_yaw
    # The cube looks the same every quarter turn: the nearest face-aligned yaw to the current one.
    return current_yaw + _wrap(4.0 * (object_yaw - current_yaw)) / 4.0


class ScriptedExpert:
    """Phase machine producing Bridge-convention end-effector deltas from privileged state."""

    def __init__(self, config: ExpertConfig | None = None) -> None:
        self.config = config or ExpertConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the episode: back to ``approach`` with the gripper open."""
        self.phase = "approach"
        self._phase_steps = 0
        self._grasp_yaw: float | None = None
        self._hold_position: np.ndarray | None = None
        self._reference: np.ndarray | None = None  # commanded tool pose (4x4) as the expert tracks it
        self._last_tool_position: np.ndarray | None = None
        self.attempts = 1

    # --- Public API ------------------------------------------------------------------------------

    def act(self, privileged: dict) -> np.ndarray:
        """The next action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` for this state."""
        tool = np.asarray(privileged["tool_pose"], dtype=float)
        if tool.shape != (4, 4):
            raise ValueError(f"privileged['tool_pose']: expected a 4x4 matrix, got shape {tool.shape}")
        name = privileged["target_object"]
        if name not in privileged["objects"]:
            raise ValueError(
                f"privileged['target_object']: {name!r} is not in objects {sorted(privileged['objects'])}"
            )
        obj = privileged["objects"][name]
        goal_position, goal_yaw, gripper = self._plan(tool, obj, privileged)
        self._phase_steps += 1
        reference = self._synchronised_reference(tool)
        action = self._action_towards(reference, goal_position, goal_yaw, gripper)
        self._reference = apply_ee_delta(reference, action[:6])
        return action

    def _synchronised_reference(self, tool: np.ndarray) -> np.ndarray:
        """The commanded pose to step from: the tracked one unless it drifted from the measured one."""
        cfg = self.config
        last, self._last_tool_position = self._last_tool_position, tool[:3, 3].copy()
        if self._reference is None or last is None or not cfg.track_commanded_pose:
            return tool.copy()
        distance = float(np.linalg.norm(self._reference[:3, 3] - tool[:3, 3]))
        cos_angle = 0.5 * (float(np.trace(self._reference[:3, :3] @ tool[:3, :3].T)) - 1.0)
        angle = math.acos(min(1.0, max(-1.0, cos_angle)))
        settled = float(np.linalg.norm(tool[:3, 3] - last)) < cfg.settled_motion_m
        if distance > cfg.resync_distance_m or angle > cfg.resync_angle_rad:
            return tool.copy()
        if settled and (distance > cfg.settled_offset_m or angle > cfg.yaw_tolerance_rad):
            return tool.copy()
        return self._reference

    # --- Phase machine ---------------------------------------------------------------------------

    def _plan(self, tool: np.ndarray, obj: dict, privileged: dict) -> tuple[np.ndarray, float, float]:
        """Update the phase and return (goal position, goal yaw, gripper) for this step."""
        if privileged.get("family") == "push":
            return self._plan_push(tool, obj, privileged)
        cfg = self.config
        position = tool[:3, 3]
        yaw_now = tool_yaw(tool[:3, :3])
        obj_position = np.asarray(obj["position"], dtype=float)
        destination = privileged.get("destination_position")
        held = self._in_hand(position, obj_position, privileged)

        holding = self.phase in ("lift", "carry", "lower") or (self.phase == "done" and destination is None)
        if holding and not held:
            self._restart()  # missed or slipped: open and try again
        if self.phase == "approach":
            self._grasp_yaw = grasp_yaw(float(obj["yaw"]), obj["shape"], yaw_now)
            hover = obj_position + (0.0, 0.0, cfg.hover_above_object_m)
            far = np.linalg.norm(hover[:2] - position[:2]) > 0.03
            if far and position[2] < hover[2] - 0.03:  # rise before moving sideways
                return np.array([position[0], position[1], hover[2]]), yaw_now, 1.0
            if self._reached(position, hover, yaw_now, self._grasp_yaw, z_tolerance=0.02):
                self._enter("descend")
            else:
                return hover, self._grasp_yaw, 1.0
        if self.phase == "descend":
            grasp = obj_position + (0.0, 0.0, cfg.grasp_above_centre_m)
            if np.linalg.norm(grasp[:2] - position[:2]) > 0.03:  # the object moved away
                self._restart()
                return self._plan(tool, obj, privileged)
            if self._reached(position, grasp, yaw_now, self._grasp_yaw):
                self._hold_position = grasp
                self._enter("close")
            else:
                return grasp, self._grasp_yaw, 1.0
        if self.phase == "close":
            # Lift only once the fingers are measured on the object (not after a step count alone):
            # under latency, or when predicting a chunk ahead, steps do not equal elapsed time.
            fingers_closed = (
                privileged.get("finger_m", 0.0) <= float(obj["size_m"]) / 2 + cfg.finger_contact_margin_m
            )
            if self._phase_steps >= cfg.close_steps and fingers_closed:
                self._enter("lift")
            else:
                return self._hold_position, self._grasp_yaw, 0.0
        if self.phase == "lift":
            lifted = np.array([self._hold_position[0], self._hold_position[1], cfg.carry_height_m])
            if abs(position[2] - lifted[2]) < 0.02:
                self._enter("carry" if destination is not None else "done")
            else:
                return lifted, self._grasp_yaw, 0.0
        if self.phase == "carry":
            above = np.array([destination[0], destination[1], cfg.carry_height_m])
            if np.linalg.norm(above[:2] - position[:2]) < 0.015:
                self._enter("lower")
            else:
                return above, self._grasp_yaw, 0.0
        if self.phase == "lower":
            release_z = privileged.get("release_z")
            if release_z is None:
                release_z = destination[2] + cfg.release_above_bowl_m
            release = np.array([destination[0], destination[1], release_z])
            if self._reached(position, release, yaw_now, self._grasp_yaw, z_tolerance=0.015):
                self._enter("release")
            else:
                return release, self._grasp_yaw, 0.0
        if self.phase == "release":
            opened = privileged.get("finger_m", 1.0) >= cfg.open_finger_m
            if self._phase_steps >= cfg.release_steps and opened:
                self._enter("retreat")
            else:
                return position.copy(), yaw_now, 1.0
        if self.phase == "retreat" and (up := self._retreat_goal(position)) is not None:
            return up, yaw_now, 1.0
        # done: hold still; keep holding the object when there is nowhere to put it.
        return position.copy(), yaw_now, 1.0 if destination is not None else 0.0

    def _plan_push(self, tool: np.ndarray, obj: dict, privileged: dict) -> tuple[np.ndarray, float, float]:
        """Push phases: line up behind the object with the fingers closed, slide it, rise."""
        cfg = self.config
        position = tool[:3, 3]
        yaw_now = tool_yaw(tool[:3, :3])
        sign = 1.0 if privileged.get("direction") == "left" else -1.0
        obj_position = np.asarray(obj["position"], dtype=float)
        start_xy = privileged.get("push_start") or obj_position[:2].tolist()
        behind = np.array([obj_position[0], obj_position[1] - sign * cfg.push_behind_m, cfg.push_height_m])
        end_y = start_xy[1] + sign * (cfg.push_travel_m - cfg.push_behind_m + 0.02)
        pushed = (obj_position[1] - start_xy[1]) * sign
        if self.phase == "approach":
            hover = behind + (0.0, 0.0, cfg.hover_above_object_m)
            far = np.linalg.norm(hover[:2] - position[:2]) > 0.03
            if far and position[2] < hover[2] - 0.03:  # rise before moving sideways
                return np.array([position[0], position[1], hover[2]]), 0.0, 0.0
            if self._reached(position, hover, yaw_now, 0.0, z_tolerance=0.02):
                self._enter("descend")
            else:
                return hover, 0.0, 0.0
        if self.phase == "descend":
            if np.linalg.norm(behind[:2] - position[:2]) > 0.03:  # the object moved: line up again
                self._restart()
                return self._plan_push(tool, obj, privileged)
            if self._reached(position, behind, yaw_now, 0.0, z_tolerance=0.01):
                self._enter("push")
            else:
                return behind, 0.0, 0.0
        if self.phase == "push":
            if pushed >= cfg.push_travel_m or (position[1] - end_y) * sign > -0.005:
                self._enter("retreat")
            elif abs(position[0] - obj_position[0]) > 0.025:  # slipped off the object: line up again
                self._restart()
                return self._plan_push(tool, obj, privileged)
            else:
                return np.array([obj_position[0], end_y, cfg.push_height_m]), 0.0, 0.0
        if self.phase == "retreat" and (up := self._retreat_goal(position)) is not None:
            return up, yaw_now, 0.0
        return position.copy(), yaw_now, 0.0

    def _retreat_goal(self, position: np.ndarray) -> np.ndarray | None:
        """Straight up to the carry height; None (and ``done``) once there."""
        up = np.array([position[0], position[1], self.config.carry_height_m])
        if abs(position[2] - up[2]) < 0.02:
            self._enter("done")
            return None
        return up

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self._phase_steps = 0

    def _restart(self) -> None:
        self.attempts += 1
        self._enter("approach")

    def _reached(
        self,
        position: np.ndarray,
        goal: np.ndarray,
        yaw: float,
        goal_yaw: float,
        z_tolerance: float | None = None,
    ) -> bool:
        tol = self.config.position_tolerance_m
        return (
            np.linalg.norm(goal[:2] - position[:2]) < tol
            and abs(goal[2] - position[2]) < (z_tolerance or tol)
            and abs(_wrap(goal_yaw - yaw)) < self.config.yaw_tolerance_rad
        )

    def _in_hand(self, tool_position: np.ndarray, obj_position: np.ndarray, privileged: dict) -> bool:
        near = np.linalg.norm(obj_position - tool_position) < self.config.in_hand_distance_m
        fingers_on_something = privileged.get("finger_m", 0.03) > 0.016
        return bool(near and fingers_on_something)

    # --- Action ----------------------------------------------------------------------------------

    def _action_towards(
        self, tool: np.ndarray, goal_position: np.ndarray, goal_yaw: float, gripper: float
    ) -> np.ndarray:
        """A bounded step from the measured tool pose towards the goal (gripper down, ``goal_yaw``)."""
        cfg = self.config
        translation = (np.asarray(goal_position, dtype=float) - tool[:3, 3]) * cfg.step_gain
        distance = float(np.linalg.norm(translation))
        if distance > cfg.max_translation_m:
            translation *= cfg.max_translation_m / distance
        # The gripper pointing straight down at goal_yaw: Bridge Euler (0, 0, goal_yaw).
        goal_rotation = euler_to_matrix(0.0, 0.0, goal_yaw) @ BRIDGE_DOWN
        rotation = np.array(matrix_to_euler(goal_rotation @ tool[:3, :3].T)) * cfg.step_gain
        largest = float(np.max(np.abs(rotation)))
        if largest > cfg.max_rotation_rad:
            rotation *= cfg.max_rotation_rad / largest
        return np.concatenate([translation, rotation, [gripper]])
