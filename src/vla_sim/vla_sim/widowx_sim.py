"""The embedded MuJoCo WidowX 250 6DOF tabletop simulation (no ROS).

``WidowXSim`` owns one compiled scene (scene.py), one ``MjData`` and, on first use, one offscreen
``mujoco.Renderer``. A reset samples a seeded layout (tasks.py), parks the objects that are not in
the episode out of sight, puts the arm at ``SimConfig.start_joints`` and lets the objects settle;
the clock then restarts at zero. The same seed and the same command sequence give identical states.

Commands are joint positions for the arm's position servos and the left finger (the right finger
mirrors it through an equality constraint), as the Interbotix driver takes them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402  (MUJOCO_GL must be set before the import)
import numpy as np  # noqa: E402

from vla_common.robot import (  # noqa: E402
    ARM_JOINT_NAMES,
    FINGER_JOINT_NAME,
    FINGER_JOINT_NAMES,
    FINGER_UPPER_M,
)
from vla_sim import scene, tasks  # noqa: E402

TOOL_SITE = "ee_gripper_link"
# Above the table with the gripper pointing straight down: tool at about (0.25, 0, 0.20) m, inside
# the OpenVLA workspace box, like Bridge's data-collection neutral pose but further out.
START_JOINTS_RAD: tuple[float, ...] = (0.0, -0.20, 0.22, 0.0, 1.55, 0.0)
# Tool height at which the expert opens the gripper: over the bowl (above its base), or with the held
# object this far above the top of the object it is stacked on.
BOWL_RELEASE_TOOL_Z_M = 0.075
STACK_RELEASE_GAP_M = 0.012


@dataclass(frozen=True)
class SimConfig:
    """Settings of the embedded simulation."""

    camera_width: int = 320  # pixels, every camera
    camera_height: int = 240
    physics_dt: float = 0.002  # s per physics step (500 Hz)
    start_joints: tuple[float, ...] = START_JOINTS_RAD  # arm joints at reset (rad)
    start_finger_m: float = FINGER_UPPER_M  # left finger at reset (m): open
    settle_steps: int = 100  # physics steps at reset for the objects to come to rest

    def __post_init__(self) -> None:
        for field_name in ("camera_width", "camera_height"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or not 16 <= value <= 1280:
                raise ValueError(f"SimConfig.{field_name}: expected an int in [16, 1280], got {value!r}")
        if not math.isfinite(self.physics_dt) or not 1e-4 <= self.physics_dt <= 0.01:
            raise ValueError(
                f"SimConfig.physics_dt: expected seconds in [0.0001, 0.01], got {self.physics_dt!r}"
            )
        joints = np.asarray(self.start_joints, dtype=float)
        if joints.shape != (6,) or not np.all(np.isfinite(joints)):
            raise ValueError(
                f"SimConfig.start_joints: expected 6 finite values (rad), got {self.start_joints!r}"
            )
        if not 0.015 <= self.start_finger_m <= 0.037:
            raise ValueError(
                f"SimConfig.start_finger_m: expected metres in [0.015, 0.037], got {self.start_finger_m!r}"
            )
        if not isinstance(self.settle_steps, int) or self.settle_steps < 0:
            raise ValueError(f"SimConfig.settle_steps: expected an int >= 0, got {self.settle_steps!r}")


def jittered_start_joints(rng: np.random.Generator) -> np.ndarray:
    """A start pose near ``START_JOINTS_RAD``: the gripper anywhere over the near workspace, still
    pointing down (wrist angle compensates shoulder + elbow). Demonstrations use it so the arm's
    pose alone never tells a policy where the target is."""
    waist, shoulder, elbow = rng.uniform(-1.0, 1.0, size=3) * np.array([0.45, 0.22, 0.22])
    joints = np.array(START_JOINTS_RAD, dtype=float)
    joints[0] += waist
    joints[1] += shoulder
    joints[2] += elbow
    joints[4] -= shoulder + elbow
    return joints


class WidowXSim:
    """A seeded tabletop episode on a simulated wx250s: commands in, joint states, images and poses out."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.model = scene.build_scene_model()
        self.model.opt.timestep = self.config.physics_dt
        if self.model.vis.global_.offwidth < self.config.camera_width:
            self.model.vis.global_.offwidth = self.config.camera_width
        if self.model.vis.global_.offheight < self.config.camera_height:
            self.model.vis.global_.offheight = self.config.camera_height
        self.data = mujoco.MjData(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._scene_option = mujoco.MjvOption()
        self.camera_names = tuple(self.model.camera(i).name for i in range(self.model.ncam))
        joint_names = (*ARM_JOINT_NAMES, *FINGER_JOINT_NAMES)
        self._qpos_adr = np.array([self.model.joint(n).qposadr[0] for n in joint_names])
        self._dof_adr = np.array([self.model.joint(n).dofadr[0] for n in joint_names])
        self._arm_act = np.array([self.model.actuator(n).id for n in ARM_JOINT_NAMES])
        self._finger_act = self.model.actuator(FINGER_JOINT_NAME).id
        self._ctrl_low = self.model.actuator_ctrlrange[:, 0].copy()
        self._ctrl_high = self.model.actuator_ctrlrange[:, 1].copy()
        self._tool_site = self.model.site(TOOL_SITE).id
        self._bowl_mocap = self.model.body(scene.BOWL_BODY).mocapid[0]
        self._objects = {
            obj.name: (
                self.model.body(obj.name).id,
                self.model.joint(f"{obj.name}_joint").qposadr[0],
                self.model.joint(f"{obj.name}_joint").dofadr[0],
                self.model.geom(f"{obj.name}_geom").id,
            )
            for obj in tasks.OBJECTS
        }
        self._spec: tasks.EpisodeSpec | None = None
        self.reset(seed=0)

    # --- Episode ---------------------------------------------------------------------------------

    def reset(
        self,
        seed: int,
        family: str | None = None,
        instruction: str | None = None,
        *,
        target_object: str | None = None,
        base_object: str | None = None,
        direction: str | None = None,
        instruction_text: str | None = None,
        template_index: int = 0,
        start_joints: np.ndarray | tuple[float, ...] | None = None,
        episode: tasks.EpisodeSpec | None = None,
    ) -> tasks.EpisodeSpec:
        """Start a new seeded episode.

        ``instruction`` (a task template) fixes family, target, base and direction; or give them
        one by one. ``instruction_text`` replaces the text the episode announces without changing
        the task (paraphrases, language ablations). ``start_joints`` replaces
        ``SimConfig.start_joints`` for this episode (demonstrations from varied arm poses).
        ``episode`` sets up that exact episode instead of sampling one (``tasks.retarget`` of a
        sampled scene: counterfactual demonstrations); ``seed`` must then be its seed.
        """
        start = np.asarray(self.config.start_joints if start_joints is None else start_joints, dtype=float)
        if start.shape != (6,) or not np.all(np.isfinite(start)):
            got = np.asarray(start_joints).tolist()
            raise ValueError(f"start_joints: expected 6 finite values (rad), got {got}")
        if episode is not None:
            chosen = {"family": family, "instruction": instruction, "target_object": target_object}
            chosen.update(base_object=base_object, direction=direction)
            clash = sorted(k for k, v in chosen.items() if v is not None)
            if clash or int(seed) != episode.seed:
                also = f" and {clash}" if clash else ""
                raise ValueError(
                    f"episode: fixes the seed ({episode.seed}) and the task; got seed {seed}{also}"
                )
        elif instruction is not None:
            parsed = tasks.parse_instruction(instruction)
            if family is not None and family != parsed.family:
                raise ValueError(
                    f"family: {family!r} disagrees with instruction {instruction!r} ({parsed.family})"
                )
            family, target_object = parsed.family, parsed.target_object
            base_object, direction = parsed.base_object, parsed.direction
        spec = episode or tasks.sample_episode(
            int(seed),
            family=family,
            target_object=target_object,
            base_object=base_object,
            direction=direction,
            template_index=template_index,
        )
        if instruction_text is not None:
            spec = dataclasses.replace(spec, instruction=instruction_text)
        model, data = self.model, self.data
        mujoco.mj_resetData(model, data)
        placements = {p.name: p for p in spec.placements}
        for index, obj in enumerate(tasks.OBJECTS):
            body_id, qadr, _, geom_id = self._objects[obj.name]
            placement = placements.get(obj.name)
            if placement is None:  # parked: weightless, intangible and invisible
                position, yaw = scene.parked_position(index), 0.0
                model.body_gravcomp[body_id] = 1.0
                model.geom_contype[geom_id] = model.geom_conaffinity[geom_id] = 0
                model.geom_rgba[geom_id, 3] = 0.0
            else:
                position, yaw = (placement.x, placement.y, obj.half_height_m), placement.yaw
                model.body_gravcomp[body_id] = 0.0
                model.geom_contype[geom_id], model.geom_conaffinity[geom_id] = 1, 3
                model.geom_rgba[geom_id, 3] = 1.0
            data.qpos[qadr : qadr + 3] = position
            data.qpos[qadr + 3 : qadr + 7] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        data.mocap_pos[self._bowl_mocap] = (spec.bowl_xy[0], spec.bowl_xy[1], 0.0)
        data.qpos[self._qpos_adr[:6]] = start
        data.qpos[self._qpos_adr[6:]] = (self.config.start_finger_m, -self.config.start_finger_m)
        data.ctrl[self._arm_act] = np.clip(
            start, self._ctrl_low[self._arm_act], self._ctrl_high[self._arm_act]
        )
        data.ctrl[self._finger_act] = self.config.start_finger_m
        mujoco.mj_forward(model, data)
        self.step(self.config.settle_steps)
        data.time = 0.0
        mujoco.mj_forward(model, data)
        self._spec = spec
        return spec

    @property
    def spec(self) -> tasks.EpisodeSpec:
        """The current episode."""
        assert self._spec is not None  # set by the constructor's reset
        return self._spec

    def retarget(self, episode: tasks.EpisodeSpec) -> None:
        """Give the running episode another task in the same scene (``tasks.retarget`` of it), the
        physics untouched: from now on the instruction, the privileged destination and the success
        detector follow ``episode`` (mid-episode counterfactual demonstrations)."""
        current = self.spec
        if episode.seed != current.seed or set(episode.placements) != set(current.placements):
            raise ValueError(
                f"episode: expected a re-targeting of the running scene (seed {current.seed}), "
                f"got seed {episode.seed} with objects {list(episode.active_objects)}"
            )
        if episode.family != current.family:
            raise ValueError(f"episode: expected family {current.family!r}, got {episode.family!r}")
        self._spec = episode

    # --- Commands and stepping -------------------------------------------------------------------

    def set_arm_command(self, joints_rad: np.ndarray) -> np.ndarray:
        """Position targets for the 6 arm joints (rad), clipped to their ranges; returns what was set."""
        command = np.asarray(joints_rad, dtype=float).reshape(-1)
        if command.shape != (6,) or not np.all(np.isfinite(command)):
            raise ValueError(
                f"joints_rad: expected 6 finite values (rad), got {np.asarray(joints_rad).tolist()}"
            )
        clipped = np.clip(command, self._ctrl_low[self._arm_act], self._ctrl_high[self._arm_act])
        self.data.ctrl[self._arm_act] = clipped
        return clipped

    def set_finger_command(self, left_finger_m: float) -> float:
        """Position target for left_finger (m; 0.015 closed .. 0.037 open), clipped; returns what was set."""
        value = float(left_finger_m)
        if not math.isfinite(value):
            raise ValueError(f"left_finger_m: expected a finite position (m), got {left_finger_m!r}")
        clipped = min(max(value, self._ctrl_low[self._finger_act]), self._ctrl_high[self._finger_act])
        self.data.ctrl[self._finger_act] = clipped
        return float(clipped)

    def step(self, n_steps: int = 1) -> None:
        """Advance the physics by ``n_steps`` steps of ``physics_dt``."""
        if n_steps < 0:
            raise ValueError(f"n_steps: expected >= 0, got {n_steps}")
        if n_steps:
            mujoco.mj_step(self.model, self.data, nstep=int(n_steps))

    @property
    def time_s(self) -> float:
        """Simulated seconds since the reset."""
        return float(self.data.time)

    # --- Observations ----------------------------------------------------------------------------

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Names, positions, velocities and efforts (N m or N) of the 6 arm joints and both fingers."""
        names = [*ARM_JOINT_NAMES, *FINGER_JOINT_NAMES]
        positions = self.data.qpos[self._qpos_adr].copy()
        velocities = self.data.qvel[self._dof_adr].copy()
        efforts = self.data.qfrc_actuator[self._dof_adr].copy()
        efforts[7] = -efforts[6]  # the mirrored finger is driven through the constraint
        return names, positions, velocities, efforts

    def tool_pose(self) -> np.ndarray:
        """4x4 pose of ee_gripper_link in the base frame."""
        pose = np.eye(4)
        pose[:3, :3] = self.data.site_xmat[self._tool_site].reshape(3, 3)
        pose[:3, 3] = self.data.site_xpos[self._tool_site]
        return pose

    def render(self, camera: str) -> np.ndarray:
        """RGB image (camera_height x camera_width x 3, uint8) from ``camera``."""
        if camera not in self.camera_names:
            raise ValueError(f"camera: unknown camera {camera!r}; known cameras: {list(self.camera_names)}")
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.camera_height, self.config.camera_width)
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return self._renderer.render()

    def object_positions(self) -> dict[str, np.ndarray]:
        """Centre positions of the objects in the episode."""
        return {name: self.data.xpos[self._objects[name][0]].copy() for name in self.spec.active_objects}

    def bowl_position(self) -> np.ndarray:
        """The bowl's origin (bottom centre) in the base frame."""
        return self.data.mocap_pos[self._bowl_mocap].copy()

    def success(self) -> bool:
        """The episode family's success detector on the current state."""
        return tasks.episode_success(self.spec, self.object_positions(), self.bowl_position())

    def privileged_state(self) -> dict:
        """Ground truth for scripted experts and logs (JSON-serialisable)."""
        spec = self.spec
        objects = {}
        for name, position in self.object_positions().items():
            obj = tasks.OBJECTS_BY_NAME[name]
            rotation = self.data.xmat[self._objects[name][0]].reshape(3, 3)
            objects[name] = {
                "position": [float(v) for v in position],
                "yaw": float(math.atan2(rotation[1, 0], rotation[0, 0])),
                "colour": obj.colour,
                "shape": obj.shape,
                "size_m": obj.size_m,
            }
        destination_position, release_z = None, None
        if spec.destination == "bowl":
            destination_position = [float(v) for v in self.bowl_position()]
            release_z = destination_position[2] + BOWL_RELEASE_TOOL_Z_M
        elif spec.destination == "object" and spec.base_object in objects:
            base = objects[spec.base_object]
            destination_position = list(base["position"])
            held = tasks.OBJECTS_BY_NAME[spec.target_object]
            # tool point at the held object's centre: the object's bottom just above the base's top
            release_z = base["position"][2] + 0.5 * base["size_m"] + held.half_height_m + STACK_RELEASE_GAP_M
        return {
            "objects": objects,
            "family": spec.family,
            "target_object": spec.target_object,
            "base_object": spec.base_object,
            "direction": spec.direction,
            "push_start": [spec.placements[0].x, spec.placements[0].y],
            "destination": spec.destination,
            "destination_position": destination_position,
            "release_z": release_z,
            "tool_pose": self.tool_pose().tolist(),
            "finger_m": float(self.data.qpos[self._qpos_adr[6]]),
            "time_s": self.time_s,
        }

    def close(self) -> None:
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
