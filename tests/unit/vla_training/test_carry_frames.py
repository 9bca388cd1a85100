"""Carry frames: stack scenes from the grasp on, the base switched to its look-alike in half of them."""

from __future__ import annotations

import numpy as np
import pytest

from vla_sim import tasks
from vla_training.demo_dataset import load_demonstrations
from vla_training.demonstrations import CollectOptions, _collect_shard, base_twins, episode_plan
from vla_training.object_localisation import first_ticks

SIZES = {"primary": [64, 64], "wrist": [32, 32]}


def switched(seed: int) -> bool:  # the collector's seeded coin (demonstrations.carry_switch)
    return np.random.default_rng([seed, 17]).random() < 0.5


def test_the_plan_takes_only_stack_scenes_whose_base_has_a_look_alike():
    options = CollectOptions("x", 6, tasks.TRAIN_SEED_START, SIZES, carry_retarget=True)
    plan = episode_plan(options)
    assert len(plan) == 6 and {family for _, family, _ in plan} == {"stack"}
    assert len({seed for seed, _, _ in plan}) == 6
    for seed, family, _ in plan:
        spec = tasks.sample_episode(seed, family=family)
        twins = base_twins(spec)
        assert twins and all(
            tasks.OBJECTS_BY_NAME[t].colour == tasks.OBJECTS_BY_NAME[spec.base_object].colour for t in twins
        )
    skipped = set(range(plan[0][0], plan[-1][0])) - {seed for seed, _, _ in plan}
    assert skipped and not any(base_twins(tasks.sample_episode(s, family="stack")) for s in skipped)
    for clash in ({"first_ticks": 2}, {"counterfactual": True}):
        with pytest.raises(ValueError, match="carry_retarget"):
            CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, carry_retarget=True, **clash)


def test_carry_frames_start_at_the_grasp_and_follow_the_switched_base(tmp_path):
    options = CollectOptions(str(tmp_path), 40, tasks.TRAIN_SEED_START, SIZES, workers=1, carry_retarget=True)
    plan = episode_plan(options)
    one_each = [next(p for p in plan if switched(p[0])), next(p for p in plan if not switched(p[0]))]
    results = _collect_shard((options, one_each, 0))
    assert [r["switched"] for r in results] == [True, False]
    assert all(r["kept"] and r["success"] for r in results), results
    for r, (seed, _, template) in zip(results, one_each, strict=True):
        spec = tasks.sample_episode(seed, family="stack", template_index=template)
        with np.load(tmp_path / f"episode_{seed}.npz") as data:
            assert int(data["first_tick"]) == r["first_tick"] > 0
            assert len(data["proprio"]) == r["ticks"] > 0
            # from the grasp on: the first chunk keeps the fingers closed on the object
            assert np.all(data["actions"][0, :, 6] < 0.5)
            instruction = str(data["instruction"])
        if r["switched"]:  # the same scene, the look-alike named as the base: and it was stacked there
            assert instruction != spec.instruction
            named = [t for t in base_twins(spec) if t.replace("_", " ") in instruction]
            assert named, (instruction, base_twins(spec))
        else:
            assert instruction == spec.instruction

    demos = load_demonstrations(tmp_path, ("primary", "wrist"))
    assert demos.first_ticks == [r["first_tick"] for r in results]
    assert not demos.starts_at_reset().any()
    # the scene's layout (object labels) is not what a carry frame shows: no labels taken from them
    assert len(first_ticks(demos, np.arange(2), 2)) == 0
