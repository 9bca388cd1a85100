"""Task families for the simulated WidowX: catalogue, seeded layouts and success detectors (pure).

Everything here is data and pure functions of numbers, so the layouts and the detectors are tested
without MuJoCo. The scene (scene.py) builds one body per entry of ``OBJECTS`` plus the bowl; an
episode activates a few of the objects and places them with ``sample_episode``.

Frames: the arm base frame, table top at z = 0, metres and radians.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# --- Catalogue -----------------------------------------------------------------------------------

COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.12, 0.10, 1.0),
    "green": (0.15, 0.65, 0.20, 1.0),
    "blue": (0.12, 0.30, 0.85, 1.0),
    "yellow": (0.95, 0.80, 0.10, 1.0),
}
SHAPES: tuple[str, ...] = ("cube", "cylinder")


@dataclass(frozen=True)
class ObjectSpec:
    """One graspable object of the scene."""

    name: str  # body name in the scene, "<colour>_<shape>"
    colour: str
    shape: str  # "cube" (edge size_m) or "cylinder" (diameter and height size_m)
    size_m: float
    mass_kg: float

    @property
    def half_height_m(self) -> float:
        return 0.5 * self.size_m


OBJECT_SIZE_M = 0.04  # fingers close to 30 mm and open to 74 mm: 40 mm is a firm, easy grasp
OBJECTS: tuple[ObjectSpec, ...] = tuple(
    ObjectSpec(f"{colour}_{shape}", colour, shape, OBJECT_SIZE_M, 0.035 if shape == "cube" else 0.03)
    for shape in SHAPES
    for colour in COLOURS
)
OBJECTS_BY_NAME: dict[str, ObjectSpec] = {spec.name: spec for spec in OBJECTS}

# The bowl: a base disc and a ring of low wall boxes.
BOWL_INNER_RADIUS_M = 0.065
BOWL_WALL_THICKNESS_M = 0.008
BOWL_WALL_HEIGHT_M = 0.03  # above the table
BOWL_BASE_THICKNESS_M = 0.004
BOWL_OUTER_RADIUS_M = BOWL_INNER_RADIUS_M + BOWL_WALL_THICKNESS_M

# --- Families ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFamily:
    """An instruction template, where the target goes, and the step budget at 5 Hz."""

    name: str
    template: str  # formatted with colour and shape
    destination: str | None
    max_steps: int


FAMILIES: dict[str, TaskFamily] = {
    "place_in_bowl": TaskFamily("place_in_bowl", "put the {colour} {shape} in the bowl", "bowl", 80),
    "pick_up": TaskFamily("pick_up", "pick up the {colour} {shape}", None, 60),
}

# --- Layout --------------------------------------------------------------------------------------

# Where objects and the bowl may be placed: the reachable part of the Bridge/OpenVLA workspace box.
LAYOUT_X_RANGE_M = (0.20, 0.40)
LAYOUT_Y_RANGE_M = (-0.15, 0.15)
# Clearances between centres: open fingers reach 45 mm either side of a grasped object's centre.
MIN_OBJECT_GAP_M = 0.09
MIN_OBJECT_BOWL_GAP_M = BOWL_OUTER_RADIUS_M + 0.05
DISTRACTOR_COUNTS = (2, 3)
_MAX_LAYOUT_TRIES = 200


@dataclass(frozen=True)
class Placement:
    """Where one active object starts: centre x, y on the table and yaw about z."""

    name: str
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode: the instruction, what has to move where, and the seeded layout."""

    seed: int
    family: str
    instruction: str
    target_object: str
    destination: str | None
    max_steps: int
    placements: tuple[Placement, ...]  # the target first, then the distractors
    bowl_xy: tuple[float, float]

    @property
    def active_objects(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.placements)


def instruction_for(family: str, target_object: str) -> str:
    """The instruction text of ``family`` for ``target_object`` (a name in OBJECTS)."""
    spec = OBJECTS_BY_NAME[target_object]
    return _family(family).template.format(colour=spec.colour, shape=spec.shape)


def parse_instruction(instruction: str) -> tuple[str, str]:
    """Read ``(family, target_object)`` back from an instruction written from a template."""
    text = " ".join(instruction.lower().strip().rstrip(".!").split())
    for family in FAMILIES.values():
        pattern = re.escape(family.template).replace(r"\{colour\}", "(?P<colour>\\w+)")
        pattern = pattern.replace(r"\{shape\}", "(?P<shape>\\w+)")
        match = re.fullmatch(pattern, text)
        if match and f"{match['colour']}_{match['shape']}" in OBJECTS_BY_NAME:
            return family.name, f"{match['colour']}_{match['shape']}"
    forms = "; ".join(f.template for f in FAMILIES.values())
    raise ValueError(
        f"instruction {instruction!r} matches no task; use one of: {forms} "
        f"(colour in {sorted(COLOURS)}, shape in {list(SHAPES)})"
    )


def sample_episode(
    seed: int,
    family: str | None = None,
    target_object: str | None = None,
    rng: np.random.Generator | None = None,
) -> EpisodeSpec:
    """A deterministic episode for ``seed``: family, target, distractors, positions and yaws.

    ``family`` and ``target_object`` default to seeded random choices. ``rng`` overrides the
    generator made from ``seed`` (the seed is still recorded in the spec).
    """
    rng = np.random.default_rng(seed) if rng is None else rng
    family_name = str(rng.choice(sorted(FAMILIES))) if family is None else _family(family).name
    names = [spec.name for spec in OBJECTS]
    if target_object is None:
        target_object = names[int(rng.integers(len(names)))]
    elif target_object not in OBJECTS_BY_NAME:
        raise ValueError(f"target_object: unknown object {target_object!r}; known: {names}")
    others = [name for name in names if name != target_object]
    n_distractors = int(rng.choice(DISTRACTOR_COUNTS))
    distractors = [others[i] for i in rng.permutation(len(others))[:n_distractors]]
    bowl_xy, centres = _sample_layout(rng, 1 + n_distractors)
    placements = tuple(
        Placement(name, float(x), float(y), float(rng.uniform(-math.pi / 4, math.pi / 4)))
        for name, (x, y) in zip([target_object, *distractors], centres, strict=True)
    )
    fam = FAMILIES[family_name]
    return EpisodeSpec(
        seed=int(seed),
        family=fam.name,
        instruction=instruction_for(fam.name, target_object),
        target_object=target_object,
        destination=fam.destination,
        max_steps=fam.max_steps,
        placements=placements,
        bowl_xy=(float(bowl_xy[0]), float(bowl_xy[1])),
    )


def _sample_layout(rng: np.random.Generator, n_objects: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bowl centre and ``n_objects`` object centres with the clearances above (rejection sampling)."""
    low = np.array([LAYOUT_X_RANGE_M[0], LAYOUT_Y_RANGE_M[0]])
    high = np.array([LAYOUT_X_RANGE_M[1], LAYOUT_Y_RANGE_M[1]])
    for _ in range(_MAX_LAYOUT_TRIES):
        bowl = rng.uniform(low, high)
        centres: list[np.ndarray] = []
        for _ in range(30 * n_objects):
            candidate = rng.uniform(low, high)
            if np.linalg.norm(candidate - bowl) < MIN_OBJECT_BOWL_GAP_M:
                continue
            if any(np.linalg.norm(candidate - c) < MIN_OBJECT_GAP_M for c in centres):
                continue
            centres.append(candidate)
            if len(centres) == n_objects:
                return bowl, centres
    raise RuntimeError(f"no layout with {n_objects} objects and the bowl after {_MAX_LAYOUT_TRIES} tries")


def _family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        raise ValueError(f"family: unknown task family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


# --- Success detectors ---------------------------------------------------------------------------


def is_in_bowl(
    object_position: Sequence[float],
    bowl_position: Sequence[float],
    inner_radius_m: float = BOWL_INNER_RADIUS_M,
    rim_height_m: float = BOWL_WALL_HEIGHT_M,
) -> bool:
    """True when the object's centre is inside the bowl's inner radius and below its rim.

    ``bowl_position`` is the bowl's origin on the table (the bottom of its base disc).
    """
    dx = object_position[0] - bowl_position[0]
    dy = object_position[1] - bowl_position[1]
    height = object_position[2] - bowl_position[2]
    return math.hypot(dx, dy) < inner_radius_m and -0.005 < height < rim_height_m


def is_lifted(
    object_position: Sequence[float], half_height_m: float, table_z: float = 0.0, min_lift_m: float = 0.05
) -> bool:
    """True when the object's bottom is more than ``min_lift_m`` above the table top."""
    return object_position[2] - half_height_m - table_z > min_lift_m


def episode_success(
    spec: EpisodeSpec, object_positions: Mapping[str, Sequence[float]], bowl_position: Sequence[float]
) -> bool:
    """The success detector of ``spec.family`` on the current object and bowl positions."""
    target = object_positions[spec.target_object]
    if spec.family == "place_in_bowl":
        return is_in_bowl(target, bowl_position)
    if spec.family == "pick_up":
        return is_lifted(target, OBJECTS_BY_NAME[spec.target_object].half_height_m)
    raise ValueError(f"family: no success detector for {spec.family!r}; known: {sorted(FAMILIES)}")
