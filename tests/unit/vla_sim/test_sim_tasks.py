"""Task families, seeded layouts and success detectors (pure, no MuJoCo)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from vla_sim import tasks


def test_same_seed_same_episode() -> None:
    assert tasks.sample_episode(3) == tasks.sample_episode(3)
    assert tasks.sample_episode(3, family="pick_up") == tasks.sample_episode(3, family="pick_up")


def test_different_seeds_different_layouts() -> None:
    layouts = {
        (tasks.sample_episode(seed).placements, tasks.sample_episode(seed).bowl_xy) for seed in range(20)
    }
    assert len(layouts) == 20


@pytest.mark.parametrize("seed", range(0, 300, 7))
def test_layout_inside_workspace_with_clearances(seed: int) -> None:
    spec = tasks.sample_episode(seed)
    (x_low, x_high), (y_low, y_high) = tasks.LAYOUT_X_RANGE_M, tasks.LAYOUT_Y_RANGE_M
    points = [(p.x, p.y) for p in spec.placements]
    for x, y in [*points, spec.bowl_xy]:
        assert x_low <= x <= x_high and y_low <= y <= y_high
    for a, b in itertools.combinations(points, 2):
        assert math.dist(a, b) >= tasks.MIN_OBJECT_GAP_M
    for point in points:
        assert math.dist(point, spec.bowl_xy) >= tasks.MIN_OBJECT_BOWL_GAP_M
    assert spec.placements[0].name == spec.target_object
    assert len(spec.placements) - 1 in tasks.DISTRACTOR_COUNTS
    assert len(set(spec.active_objects)) == len(spec.placements)


def test_families_and_instructions() -> None:
    spec = tasks.sample_episode(11, family="place_in_bowl", target_object="red_cube")
    assert spec.instruction == "put the red cube in the bowl"
    assert spec.destination == "bowl" and spec.max_steps == 80
    spec = tasks.sample_episode(11, family="pick_up", target_object="blue_cylinder")
    assert spec.instruction == "pick up the blue cylinder"
    assert spec.destination is None
    assert {tasks.sample_episode(seed).family for seed in range(20)} == set(tasks.FAMILIES)


def test_parse_instruction_round_trip_and_errors() -> None:
    parsed = tasks.parse_instruction("Put the yellow cylinder in the bowl.")
    assert (parsed.family, parsed.target_object) == ("place_in_bowl", "yellow_cylinder")
    assert tasks.parse_instruction("pick up the green cube") == tasks.ParsedInstruction(
        "pick_up", "green_cube"
    )
    assert tasks.parse_instruction("slide the red cube left") == tasks.ParsedInstruction(
        "push", "red_cube", None, "left"
    )
    assert tasks.parse_instruction("stack the red cube on the blue cylinder") == tasks.ParsedInstruction(
        "stack", "red_cube", "blue_cylinder"
    )
    with pytest.raises(ValueError, match="purple"):
        tasks.parse_instruction("pick up the purple cube")
    with pytest.raises(ValueError, match="matches no task"):
        tasks.parse_instruction("stack the red cube on the red cube")
    with pytest.raises(ValueError, match="matches no task"):
        tasks.parse_instruction("push the red cube to the top")
    with pytest.raises(ValueError, match="family"):
        tasks.sample_episode(0, family="juggle")
    with pytest.raises(ValueError, match="target_object"):
        tasks.sample_episode(0, target_object="red_sphere")


def test_in_bowl_detector() -> None:
    bowl = (0.3, 0.0, 0.0)
    assert tasks.is_in_bowl((0.3, 0.0, 0.024), bowl)
    assert tasks.is_in_bowl((0.35, 0.02, 0.024), bowl)
    assert not tasks.is_in_bowl((0.38, 0.0, 0.024), bowl)  # outside the inner radius
    assert not tasks.is_in_bowl((0.3, 0.0, 0.08), bowl)  # above the rim (still held)
    assert not tasks.is_in_bowl((0.3, 0.2, 0.02), bowl)


def test_lifted_detector_and_dispatch() -> None:
    assert tasks.is_lifted((0.3, 0.0, 0.08), half_height_m=0.02)
    assert not tasks.is_lifted((0.3, 0.0, 0.06), half_height_m=0.02)
    assert not tasks.is_lifted((0.3, 0.0, 0.02), half_height_m=0.02)
    spec = tasks.sample_episode(5, family="pick_up")
    positions = {p.name: np.array([p.x, p.y, 0.02]) for p in spec.placements}
    bowl = (*spec.bowl_xy, 0.0)
    assert not tasks.episode_success(spec, positions, bowl)
    positions[spec.target_object] = positions[spec.target_object] + (0.0, 0.0, 0.1)
    assert tasks.episode_success(spec, positions, bowl)
    spec = tasks.sample_episode(5, family="place_in_bowl")
    positions = {p.name: np.array([p.x, p.y, 0.02]) for p in spec.placements}
    assert not tasks.episode_success(spec, positions, bowl)
    positions[spec.target_object] = np.array([*spec.bowl_xy, 0.024])
    assert tasks.episode_success(spec, positions, bowl)


@pytest.mark.parametrize("family", tasks.FAMILY_ORDER)
def test_every_template_parses_back_to_its_task(family) -> None:
    for seed in range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 10):
        for index in range(len(tasks.FAMILIES[family].templates)):
            spec = tasks.sample_episode(seed, family=family, template_index=index)
            parsed = tasks.parse_instruction(spec.instruction)
            assert parsed == tasks.ParsedInstruction(
                family, spec.target_object, spec.base_object, spec.direction
            )


def test_stack_base_is_in_the_scene_and_push_lane_is_clear() -> None:
    for seed in range(50):
        spec = tasks.sample_episode(seed, family="stack")
        assert spec.base_object in spec.active_objects[1:] and spec.base_object != spec.target_object
        assert spec.instruction.endswith(spec.base_object.replace("_", " "))
        push = tasks.sample_episode(seed, family="push")
        start = np.array([push.placements[0].x, push.placements[0].y])
        assert abs(start[1]) <= tasks.PUSH_START_Y_M and push.direction in tasks.DIRECTIONS
        for other in push.placements[1:]:
            assert not tasks._in_push_lane(np.array([other.x, other.y]), start, push.direction, 0.0)
        assert not tasks._in_push_lane(
            np.array(push.bowl_xy), start, push.direction, tasks.BOWL_OUTER_RADIUS_M
        )


def test_push_and_stack_detectors() -> None:
    assert tasks.is_pushed((0.3, 0.06, 0.02), (0.3, 0.0), "left", 0.02)
    assert not tasks.is_pushed((0.3, 0.06, 0.02), (0.3, 0.0), "right", 0.02)  # wrong way
    assert not tasks.is_pushed((0.3, 0.03, 0.02), (0.3, 0.0), "left", 0.02)  # not far enough
    assert not tasks.is_pushed((0.3, 0.08, 0.09), (0.3, 0.0), "left", 0.02)  # carried, not pushed
    assert tasks.is_pushed((0.3, -0.07, 0.02), (0.3, 0.0), "right", 0.02)
    base = (0.3, 0.1, 0.02)
    assert tasks.is_stacked((0.305, 0.1, 0.06), base, 0.04)
    assert not tasks.is_stacked((0.33, 0.1, 0.06), base, 0.04)  # off centre: it would fall
    assert not tasks.is_stacked((0.3, 0.1, 0.09), base, 0.04)  # still above it
    assert not tasks.is_stacked((0.3, 0.1, 0.02), base, 0.04)  # next to it on the table
    spec = tasks.sample_episode(3, family="stack")
    positions = {p.name: np.array([p.x, p.y, 0.02]) for p in spec.placements}
    bowl = (*spec.bowl_xy, 0.0)
    assert not tasks.episode_success(spec, positions, bowl)
    positions[spec.target_object] = positions[spec.base_object] + (0.0, 0.0, 0.04)
    assert tasks.episode_success(spec, positions, bowl)


def test_heldout_episodes_rotate_families_and_never_overlap_training_seeds() -> None:
    episodes = tasks.heldout_episodes(60)
    assert [f for _, f in episodes[:4]] == list(tasks.FAMILY_ORDER)
    assert {f: sum(g == f for _, g in episodes) for f in tasks.FAMILY_ORDER} == dict.fromkeys(
        tasks.FAMILY_ORDER, 15
    )
    assert max(seed for seed, _ in episodes) < tasks.TRAIN_SEED_START
    with pytest.raises(ValueError, match="episodes"):
        tasks.heldout_episodes(0)


def test_lookalikes_are_the_objects_only_the_shape_word_tells_apart() -> None:
    # The same seed with a named target: scenes with and without its same-colour twin.
    found = {True: None, False: None}
    for seed in range(200):
        spec = tasks.sample_episode(seed, family="pick_up", target_object="red_cube")
        found[bool(tasks.lookalikes(spec))] = spec
    with_twin, without = found[True], found[False]
    assert with_twin is not None and without is not None
    assert tasks.lookalikes(with_twin) == ("red_cylinder",)
    assert "red_cylinder" not in without.active_objects

    # Stacking names two objects: the base's twin is a look-alike too; the named ones never are.
    for seed in range(400):
        spec = tasks.sample_episode(seed, family="stack", target_object="red_cube", base_object="blue_cube")
        if "blue_cylinder" in spec.active_objects:
            assert "blue_cylinder" in tasks.lookalikes(spec)
            assert not {"red_cube", "blue_cube"} & set(tasks.lookalikes(spec))
            break
    else:
        pytest.fail("no stack scene with the base's twin in 400 seeds")


def test_retarget_names_other_objects_of_the_same_scene() -> None:
    spec = tasks.sample_episode(7, family="stack", template_index=1)
    other = next(n for n in spec.active_objects if n not in (spec.target_object, spec.base_object))
    moved = tasks.retarget(spec, other, spec.target_object, template_index=1)
    # the layout is untouched, only who is named (and so the order of the placements) changes
    assert sorted(moved.placements, key=lambda p: p.name) == sorted(spec.placements, key=lambda p: p.name)
    assert moved.placements[0].name == other and moved.placements[1].name == spec.target_object
    assert (moved.bowl_xy, moved.seed, moved.family) == (spec.bowl_xy, spec.seed, spec.family)
    parsed = tasks.parse_instruction(moved.instruction)
    assert (parsed.target_object, parsed.base_object) == (other, spec.target_object)

    push = tasks.sample_episode(8, family="push")
    assert tasks.retarget(push, push.active_objects[1]).direction == push.direction
    with pytest.raises(ValueError, match="target_object: 'green_cube' is not in the scene"):
        tasks.retarget(dataclasses.replace(push, placements=push.placements[:1]), "green_cube")
    with pytest.raises(ValueError, match="base_object: only stack"):
        tasks.retarget(push, push.target_object, push.active_objects[1])
    with pytest.raises(ValueError, match="base_object: expected another object"):
        tasks.retarget(spec, spec.target_object, spec.target_object)


def test_counterfactual_targets_differ_by_the_shape_word_or_the_order() -> None:
    # a pick scene with the target's twin: the twin is the one alternative
    spec = next(
        s
        for s in (tasks.sample_episode(i, family="pick_up", target_object="red_cube") for i in range(200))
        if "red_cylinder" in s.active_objects
    )
    assert tasks.counterfactual_targets(spec) == (("red_cylinder", None),)
    twin = tasks.retarget(spec, "red_cylinder")
    assert twin.instruction == spec.instruction.replace("cube", "cylinder")
    plain = next(
        s
        for s in (tasks.sample_episode(i, family="pick_up", target_object="red_cube") for i in range(200))
        if not tasks.lookalikes(s)
    )
    assert tasks.counterfactual_targets(plain) == ()

    # stack: always the swap; the base's twin when it is in the scene (never the target itself)
    for seed in range(400):
        spec = tasks.sample_episode(seed, family="stack", target_object="red_cube", base_object="blue_cube")
        pairs = tasks.counterfactual_targets(spec)
        assert ("blue_cube", "red_cube") in pairs and len(pairs) == len(tasks.lookalikes(spec)) + 1
        if "red_cylinder" in spec.active_objects:
            assert ("red_cylinder", "blue_cube") in pairs
        if "blue_cylinder" in spec.active_objects:
            assert ("red_cube", "blue_cylinder") in pairs
            break
    else:
        pytest.fail("no stack scene with the base's twin in 400 seeds")
