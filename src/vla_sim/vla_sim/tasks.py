"""Task families for the simulated WidowX: catalogue, seeded layouts and success detectors (pure).

Everything here is data and pure functions of numbers, so the layouts and the detectors are tested
without MuJoCo. The scene (scene.py) builds one body per entry of ``OBJECTS`` plus the bowl; an
episode activates a few of the objects and places them with ``sample_episode``.

Frames: the arm base frame, table top at z = 0, metres and radians.
"""

from __future__ import annotations

import dataclasses
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

DIRECTIONS: dict[str, float] = {"left": 1.0, "right": -1.0}  # sign along base y (the arm faces +x)


@dataclass(frozen=True)
class TaskFamily:
    """Instruction templates, where the target goes, and the step budget at 5 Hz.

    Templates are formatted with ``colour``, ``shape`` (the target), ``base_colour``, ``base_shape``
    (stack) and ``direction`` (push). The first template is the canonical one; the others are the
    phrasings demonstrations are also labelled with. Phrasings that appear in no template are what
    the paraphrase evaluation uses (config/eval/paraphrases.yaml).
    """

    name: str
    templates: tuple[str, ...]
    destination: str | None  # "bowl", "object" (stack on another object) or None
    max_steps: int

    @property
    def template(self) -> str:
        return self.templates[0]


FAMILIES: dict[str, TaskFamily] = {
    "pick_up": TaskFamily("pick_up", ("pick up the {colour} {shape}", "lift the {colour} {shape}"), None, 60),
    "place_in_bowl": TaskFamily(
        "place_in_bowl",
        ("put the {colour} {shape} in the bowl", "place the {colour} {shape} into the bowl"),
        "bowl",
        80,
    ),
    "push": TaskFamily(
        "push",
        ("push the {colour} {shape} to the {direction}", "slide the {colour} {shape} {direction}"),
        None,
        60,
    ),
    "stack": TaskFamily(
        "stack",
        (
            "stack the {colour} {shape} on the {base_colour} {base_shape}",
            "put the {colour} {shape} on top of the {base_colour} {base_shape}",
        ),
        "object",
        90,
    ),
}
FAMILY_ORDER: tuple[str, ...] = ("pick_up", "place_in_bowl", "push", "stack")

# Evaluation seeds are never used for demonstrations: held-out layouts, families round-robin.
HELDOUT_SEEDS: tuple[int, ...] = tuple(range(0, 400))
TRAIN_SEED_START = 100_000
# Validation layouts, for choosing settings (never reported as results): neither held out nor trained on.
VALIDATION_SEEDS: tuple[int, ...] = tuple(range(50_000, 50_400))


def heldout_episodes(count: int) -> list[tuple[int, str]]:
    """The first ``count`` held-out (seed, family) pairs: families in turn, so each gets a fair share."""
    return _episodes(HELDOUT_SEEDS, count, "held-out")


def validation_episodes(count: int) -> list[tuple[int, str]]:
    """The first ``count`` validation (seed, family) pairs, families in turn (settings are chosen here)."""
    return _episodes(VALIDATION_SEEDS, count, "validation")


def _episodes(seeds: tuple[int, ...], count: int, which: str) -> list[tuple[int, str]]:
    if not 1 <= count <= len(seeds):
        raise ValueError(f"episodes: expected 1..{len(seeds)} {which} episodes, got {count}")
    return [(seed, FAMILY_ORDER[i % len(FAMILY_ORDER)]) for i, seed in enumerate(seeds[:count])]


# --- Layout --------------------------------------------------------------------------------------

# Where objects and the bowl may be placed: the reachable part of the Bridge/OpenVLA workspace box.
LAYOUT_X_RANGE_M = (0.20, 0.40)
LAYOUT_Y_RANGE_M = (-0.15, 0.15)
# Clearances between centres: open fingers reach 45 mm either side of a grasped object's centre.
MIN_OBJECT_GAP_M = 0.09
MIN_OBJECT_BOWL_GAP_M = BOWL_OUTER_RADIUS_M + 0.05
DISTRACTOR_COUNTS = (2, 3)
# Push: the target starts within this |y| and the lane it is pushed along (from behind it to past its
# goal) is free of other objects and the bowl.
PUSH_START_Y_M = 0.08
PUSH_LANE_BEHIND_M = 0.08
PUSH_LANE_AHEAD_M = 0.14
PUSH_LANE_HALF_WIDTH_M = 0.07
PUSH_SUCCESS_M = 0.05  # displacement along the direction that counts as pushed
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
    placements: tuple[Placement, ...]  # the target first, then the distractors (stack: the base next)
    bowl_xy: tuple[float, float]
    base_object: str | None = None  # stack: the object to stack on
    direction: str | None = None  # push: "left" or "right"

    @property
    def active_objects(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.placements)


@dataclass(frozen=True)
class ParsedInstruction:
    family: str
    target_object: str
    base_object: str | None = None
    direction: str | None = None


def instruction_for(
    family: str,
    target_object: str,
    base_object: str | None = None,
    direction: str | None = None,
    template_index: int = 0,
) -> str:
    """The instruction text of ``family`` (its ``template_index``-th phrasing) for these objects."""
    fam = _family(family)
    spec = OBJECTS_BY_NAME[target_object]
    fields = {"colour": spec.colour, "shape": spec.shape, "direction": direction or ""}
    if base_object is not None:
        base = OBJECTS_BY_NAME[base_object]
        fields.update(base_colour=base.colour, base_shape=base.shape)
    return fam.templates[template_index % len(fam.templates)].format(**fields)


def _template_pattern(template: str) -> str:
    pattern = re.escape(template)
    for name in ("colour", "shape", "base_colour", "base_shape", "direction"):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>\\w+)")
    return pattern


def parse_instruction(instruction: str) -> ParsedInstruction:
    """Read family, target (and base object or direction) back from a templated instruction."""
    text = " ".join(instruction.lower().strip().rstrip(".!").split())
    for family in FAMILIES.values():
        for template in family.templates:
            match = re.fullmatch(_template_pattern(template), text)
            if not match:
                continue
            fields = match.groupdict()
            target = f"{fields['colour']}_{fields['shape']}"
            base = f"{fields['base_colour']}_{fields['base_shape']}" if "base_colour" in fields else None
            direction = fields.get("direction")
            if target not in OBJECTS_BY_NAME or (base is not None and base not in OBJECTS_BY_NAME):
                continue
            if base == target or (direction is not None and direction not in DIRECTIONS):
                continue
            return ParsedInstruction(family.name, target, base, direction)
    forms = "; ".join(t for f in FAMILIES.values() for t in f.templates)
    raise ValueError(
        f"instruction {instruction!r} matches no task; use one of: {forms} "
        f"(colour in {sorted(COLOURS)}, shape in {list(SHAPES)}, direction in {sorted(DIRECTIONS)})"
    )


def sample_episode(
    seed: int,
    family: str | None = None,
    target_object: str | None = None,
    rng: np.random.Generator | None = None,
    base_object: str | None = None,
    direction: str | None = None,
    template_index: int = 0,
) -> EpisodeSpec:
    """A deterministic episode for ``seed``: family, target, distractors, positions and yaws.

    ``family``, ``target_object``, ``base_object`` (stack) and ``direction`` (push) default to
    seeded random choices. ``rng`` overrides the generator made from ``seed`` (the seed is still
    recorded in the spec). ``template_index`` picks the phrasing of the instruction.
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
    if family_name == "stack":
        if base_object is None:
            base_object = distractors[0]
        elif base_object not in OBJECTS_BY_NAME or base_object == target_object:
            raise ValueError(f"base_object: expected another known object, got {base_object!r}")
        distractors = [base_object, *[d for d in distractors if d != base_object]][:n_distractors]
    else:
        base_object = None
    if family_name == "push":
        direction = str(rng.choice(sorted(DIRECTIONS))) if direction is None else direction
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: expected one of {sorted(DIRECTIONS)}, got {direction!r}")
    else:
        direction = None
    bowl_xy, centres = _sample_layout(rng, 1 + n_distractors, direction)
    placements = tuple(
        Placement(name, float(x), float(y), float(rng.uniform(-math.pi / 4, math.pi / 4)))
        for name, (x, y) in zip([target_object, *distractors], centres, strict=True)
    )
    fam = FAMILIES[family_name]
    return EpisodeSpec(
        seed=int(seed),
        family=fam.name,
        instruction=instruction_for(fam.name, target_object, base_object, direction, template_index),
        target_object=target_object,
        destination=fam.destination,
        max_steps=fam.max_steps,
        placements=placements,
        bowl_xy=(float(bowl_xy[0]), float(bowl_xy[1])),
        base_object=base_object,
        direction=direction,
    )


def lookalikes(spec: EpisodeSpec) -> tuple[str, ...]:
    """Objects in the scene that share a colour with one the instruction names (the target, and the
    base when stacking) but not its shape: only the shape word tells them apart."""
    named = [OBJECTS_BY_NAME[spec.target_object]]
    if spec.base_object is not None:
        named.append(OBJECTS_BY_NAME[spec.base_object])
    names = {obj.name for obj in named}
    return tuple(
        name
        for name in spec.active_objects
        if name not in names and any(OBJECTS_BY_NAME[name].colour == obj.colour for obj in named)
    )


def retarget(
    spec: EpisodeSpec, target_object: str, base_object: str | None = None, template_index: int = 0
) -> EpisodeSpec:
    """The same scene (every position and yaw, the bowl, the push direction) with the instruction
    naming other objects of it: ``target_object`` to move and, when stacking, ``base_object``."""
    present = spec.active_objects
    if target_object not in present:
        raise ValueError(f"target_object: {target_object!r} is not in the scene {list(present)}")
    if spec.family == "stack":
        if base_object not in present or base_object == target_object:
            raise ValueError(f"base_object: expected another object of the scene, got {base_object!r}")
    elif base_object is not None:
        raise ValueError(f"base_object: only stack has one, got {base_object!r} for {spec.family}")
    first = [target_object] + ([base_object] if base_object is not None else [])
    by_name = {p.name: p for p in spec.placements}
    placements = tuple(by_name[n] for n in first) + tuple(p for p in spec.placements if p.name not in first)
    return dataclasses.replace(
        spec,
        instruction=instruction_for(spec.family, target_object, base_object, spec.direction, template_index),
        target_object=target_object,
        base_object=base_object,
        placements=placements,
    )


def counterfactual_targets(spec: EpisodeSpec) -> tuple[tuple[str, str | None], ...]:
    """(target, base) pairs whose instruction differs from ``spec``'s by one word or by word
    order, in the same scene: the target's look-alike instead of the target, the base's look-alike
    instead of the base (stack) and the two stack objects swapped. From the same first frame the
    expert then moves somewhere else, and only the instruction says why."""

    def twins(name: str, exclude: str | None) -> list[str]:
        colour = OBJECTS_BY_NAME[name].colour
        alike = [n for n in spec.active_objects if OBJECTS_BY_NAME[n].colour == colour]
        return [n for n in alike if n not in (name, exclude)]

    base = spec.base_object
    pairs = [(twin, base) for twin in twins(spec.target_object, base)]
    if base is not None:
        pairs += [(spec.target_object, twin) for twin in twins(base, spec.target_object)]
        pairs.append((base, spec.target_object))
    return tuple(pairs)


def _sample_layout(
    rng: np.random.Generator, n_objects: int, push_direction: str | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bowl centre and ``n_objects`` object centres with the clearances above (rejection sampling).

    With ``push_direction`` the first centre (the target) is pushable: near the middle in y, with
    its lane clear of the other objects and the bowl.
    """
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
            if push_direction is not None:
                if not centres and abs(candidate[1]) > PUSH_START_Y_M:
                    continue
                if centres and _in_push_lane(candidate, centres[0], push_direction, 0.0):
                    continue
            centres.append(candidate)
            if len(centres) == n_objects:
                break
        if len(centres) < n_objects:
            continue
        if push_direction is not None and _in_push_lane(
            bowl, centres[0], push_direction, BOWL_OUTER_RADIUS_M
        ):
            continue
        return bowl, centres
    raise RuntimeError(f"no layout with {n_objects} objects and the bowl after {_MAX_LAYOUT_TRIES} tries")


def _in_push_lane(point: np.ndarray, start: np.ndarray, direction: str, radius: float) -> bool:
    """Whether a disc of ``radius`` at ``point`` intrudes on the lane the target is pushed along."""
    sign = DIRECTIONS[direction]
    along = (point[1] - start[1]) * sign
    across = abs(point[0] - start[0])
    return (
        -PUSH_LANE_BEHIND_M - radius < along < PUSH_LANE_AHEAD_M + radius
        and across < PUSH_LANE_HALF_WIDTH_M + radius
    )


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


def is_pushed(
    object_position: Sequence[float],
    start_xy: Sequence[float],
    direction: str,
    half_height_m: float,
    min_distance_m: float = PUSH_SUCCESS_M,
) -> bool:
    """True when the object slid at least ``min_distance_m`` along ``direction`` and is on the table."""
    along = (object_position[1] - start_xy[1]) * DIRECTIONS[direction]
    on_table = abs(object_position[2] - half_height_m) < 0.01
    return along >= min_distance_m and on_table


def is_stacked(
    object_position: Sequence[float],
    base_position: Sequence[float],
    stack_height_m: float,
    xy_tolerance_m: float = 0.02,
) -> bool:
    """True when the object rests on the base: centred within ``xy_tolerance_m``, one height above."""
    dx = object_position[0] - base_position[0]
    dy = object_position[1] - base_position[1]
    dz = object_position[2] - base_position[2]
    return math.hypot(dx, dy) < xy_tolerance_m and abs(dz - stack_height_m) < 0.01


def episode_success(
    spec: EpisodeSpec, object_positions: Mapping[str, Sequence[float]], bowl_position: Sequence[float]
) -> bool:
    """The success detector of ``spec.family`` on the current object and bowl positions."""
    target = object_positions[spec.target_object]
    target_spec = OBJECTS_BY_NAME[spec.target_object]
    if spec.family == "place_in_bowl":
        return is_in_bowl(target, bowl_position)
    if spec.family == "pick_up":
        return is_lifted(target, target_spec.half_height_m)
    if spec.family == "push":
        start = spec.placements[0]
        return is_pushed(target, (start.x, start.y), spec.direction or "", target_spec.half_height_m)
    if spec.family == "stack":
        base_spec = OBJECTS_BY_NAME[spec.base_object or ""]
        height = base_spec.half_height_m + target_spec.half_height_m
        return is_stacked(target, object_positions[base_spec.name], height)
    raise ValueError(f"family: no success detector for {spec.family!r}; known: {sorted(FAMILIES)}")
