"""The full simulated scene around the wx250s model: table, objects, bowl, lights and cameras.

Built with ``mujoco.MjSpec`` on top of models/wx250s.xml. Every object of ``tasks.OBJECTS`` gets a
free body named after it; the bowl is a mocap body named ``bowl`` so that a reset can move it
without recompiling. The arm base frame is the world frame and the table top is z = 0.

Cameras:
- ``third_person``: fixed, in front of the arm and to its right, above the table, looking back at
  the workspace (arm, objects and bowl in view), like Bridge's over-the-shoulder camera.
- ``wrist``: on gripper_link above the fingers, looking along the tool (x) axis, slightly down.

Shadows and reflections are off: they cost 20-40 ms a frame on a software renderer.
"""

from __future__ import annotations

import math
from importlib import resources

import mujoco
import numpy as np

from vla_sim import tasks

ARM_MODEL_FILE = "wx250s.xml"
CAMERA_NAMES: tuple[str, ...] = ("third_person", "wrist")

BOWL_BODY = "bowl"
TABLE_GEOM = "table"

# Third-person camera: position and look-at point in the base frame, vertical field of view.
THIRD_PERSON_POS = (0.70, -0.32, 0.44)
THIRD_PERSON_TARGET = (0.20, 0.0, 0.10)
THIRD_PERSON_FOVY_DEG = 55.0
# Wrist camera in gripper_link: 5 cm above the tool axis, aimed at the tool axis 25 cm out.
WRIST_CAMERA_POS = (0.045, 0.0, 0.05)
WRIST_CAMERA_AIM = (0.25, 0.0, 0.0)
WRIST_CAMERA_FOVY_DEG = 75.0

# World geoms collide with everything (the arm's geoms use contype 2 / conaffinity 1).
_WORLD_CONTYPE = 1
_WORLD_CONAFFINITY = 3
_OBJECT_FRICTION = (1.0, 0.01, 0.0001)


def camera_topic(camera: str) -> str:
    """The image topic the sim node publishes ``camera`` on (perception.yaml subscribes to it)."""
    return f"/camera/{camera}/image_raw"


def arm_model_path() -> str:
    """Path of the packaged wx250s MJCF."""
    return str(resources.files("vla_sim") / "models" / ARM_MODEL_FILE)


def look_at_quat(position: tuple[float, ...], target: tuple[float, ...], up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``position`` looking at ``target``.

    A MuJoCo camera looks along its -z axis with +y up in the image.
    """
    forward = np.asarray(target, float) - np.asarray(position, float)
    forward /= np.linalg.norm(forward)
    z_axis = -forward
    x_axis = np.cross(np.asarray(up, float), z_axis)
    if np.linalg.norm(x_axis) < 1e-9:
        raise ValueError(f"camera at {position} looking at {target}: view direction is parallel to up {up}")
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x_axis, y_axis, z_axis]).reshape(-1))
    return quat


def build_scene_spec() -> mujoco.MjSpec:
    """The scene as an editable MjSpec (arm, table, objects, bowl, lights, cameras)."""
    spec = mujoco.MjSpec.from_file(arm_model_path())
    spec.modelname = "wx250s_tabletop"
    _configure_visual(spec)
    spec.add_texture(
        name="sky",
        type=mujoco.mjtTexture.mjTEXTURE_SKYBOX,
        builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.75, 0.78, 0.82],
        rgb2=[0.30, 0.32, 0.36],
        width=64,
        height=64,
    )
    world = spec.worldbody
    world.add_light(
        name="key",
        pos=[0.4, -0.6, 1.5],
        dir=[-0.1, 0.4, -1.0],
        castshadow=False,
        diffuse=[0.6, 0.6, 0.6],
        specular=[0.1, 0.1, 0.1],
    )
    world.add_light(
        name="fill",
        pos=[-0.3, 0.5, 1.2],
        dir=[0.4, -0.3, -1.0],
        castshadow=False,
        diffuse=[0.3, 0.3, 0.3],
        specular=[0.0, 0.0, 0.0],
    )
    world.add_geom(
        name="floor",
        type=mujoco.mjtGeom.mjGEOM_PLANE,
        size=[2, 2, 0.1],
        pos=[0, 0, -0.75],
        rgba=[0.35, 0.35, 0.38, 1],
        contype=0,
        conaffinity=0,
    )
    world.add_geom(
        name=TABLE_GEOM,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[0.45, 0.55, 0.02],
        pos=[0.22, 0.0, -0.02],
        rgba=[0.62, 0.50, 0.36, 1],
        friction=[0.8, 0.005, 0.0001],
        contype=_WORLD_CONTYPE,
        conaffinity=_WORLD_CONAFFINITY,
    )
    for index, obj in enumerate(tasks.OBJECTS):
        _add_object(spec, obj, parked_position(index))
    _add_bowl(spec)
    world.add_camera(
        name="third_person",
        pos=list(THIRD_PERSON_POS),
        quat=list(look_at_quat(THIRD_PERSON_POS, THIRD_PERSON_TARGET)),
        fovy=THIRD_PERSON_FOVY_DEG,
    )
    # In gripper_link the tool axis is +x and "up" (the top of the gripper) is +z.
    spec.body("gripper_link").add_camera(
        name="wrist",
        pos=list(WRIST_CAMERA_POS),
        quat=list(look_at_quat(WRIST_CAMERA_POS, WRIST_CAMERA_AIM)),
        fovy=WRIST_CAMERA_FOVY_DEG,
    )
    return spec


def build_scene_model() -> mujoco.MjModel:
    """Compile the scene."""
    return build_scene_spec().compile()


def parked_position(index: int) -> tuple[float, float, float]:
    """Where an object that is not in the episode waits: far below the table, out of every view."""
    return (-2.0, 0.2 * index, -3.0)


def _configure_visual(spec: mujoco.MjSpec) -> None:
    spec.visual.quality.shadowsize = 0
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 960
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]


def _add_object(spec: mujoco.MjSpec, obj: tasks.ObjectSpec, position: tuple[float, float, float]) -> None:
    body = spec.worldbody.add_body(name=obj.name, pos=list(position))
    body.add_freejoint(name=f"{obj.name}_joint")
    half = 0.5 * obj.size_m
    if obj.shape == "cube":
        geom_type, size = mujoco.mjtGeom.mjGEOM_BOX, [half, half, half]
    elif obj.shape == "cylinder":
        geom_type, size = mujoco.mjtGeom.mjGEOM_CYLINDER, [half, half, 0.0]
    else:
        raise ValueError(f"object {obj.name!r}: shape {obj.shape!r} is not supported; use cube or cylinder")
    body.add_geom(
        name=f"{obj.name}_geom",
        type=geom_type,
        size=size,
        mass=obj.mass_kg,
        rgba=list(tasks.COLOURS[obj.colour]),
        friction=list(_OBJECT_FRICTION),
        condim=4,
        contype=_WORLD_CONTYPE,
        conaffinity=_WORLD_CONAFFINITY,
    )


def _add_bowl(spec: mujoco.MjSpec, n_walls: int = 16) -> None:
    """A base disc and a ring of ``n_walls`` boxes; the body origin is the bottom centre."""
    bowl = spec.worldbody.add_body(name=BOWL_BODY, mocap=True, pos=[0.3, 0.25, 0.0])
    rgba = [0.92, 0.92, 0.90, 1.0]
    outer = tasks.BOWL_OUTER_RADIUS_M
    base_half = 0.5 * tasks.BOWL_BASE_THICKNESS_M
    bowl.add_geom(
        name="bowl_base",
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[outer, base_half, 0],
        pos=[0, 0, base_half],
        rgba=rgba,
        contype=_WORLD_CONTYPE,
        conaffinity=_WORLD_CONAFFINITY,
    )
    mid_radius = tasks.BOWL_INNER_RADIUS_M + 0.5 * tasks.BOWL_WALL_THICKNESS_M
    # Slightly longer than the arc so that neighbouring boxes overlap and leave no gaps.
    half_length = 1.1 * mid_radius * math.tan(math.pi / n_walls)
    half_height = 0.5 * tasks.BOWL_WALL_HEIGHT_M
    for k in range(n_walls):
        angle = 2 * math.pi * k / n_walls
        bowl.add_geom(
            name=f"bowl_wall_{k}",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[0.5 * tasks.BOWL_WALL_THICKNESS_M, half_length, half_height],
            pos=[mid_radius * math.cos(angle), mid_radius * math.sin(angle), half_height],
            quat=[math.cos(angle / 2), 0, 0, math.sin(angle / 2)],
            rgba=rgba,
            contype=_WORLD_CONTYPE,
            conaffinity=_WORLD_CONAFFINITY,
        )
