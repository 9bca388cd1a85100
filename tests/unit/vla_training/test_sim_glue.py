"""The sim glue: each demonstration's scene rebuilt from (seed, family), as the trainer asks for it."""

from __future__ import annotations

import numpy as np
import pytest

from vla_sim import tasks
from vla_training.object_localisation import ObjectCatalogue
from vla_training.sim_glue import episode_objects, lookalike_episode_weight, object_catalogue


def test_lookalike_weight_matches_the_rebuilt_scene():
    weight = lookalike_episode_weight(2.5)
    seeds = range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 40)
    values = {s: weight(s, "place_in_bowl") for s in seeds}
    assert set(values.values()) == {1.0, 2.5}
    for s, value in values.items():
        assert (value == 2.5) == bool(tasks.lookalikes(tasks.sample_episode(s, family="place_in_bowl")))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"train.lookalike_weight: expected a number > 0, got {bad!r}"):
            lookalike_episode_weight(bad)


def test_episode_objects_are_where_the_sim_puts_them():
    seed = tasks.TRAIN_SEED_START + 3
    for family in tasks.FAMILY_ORDER:
        spec = tasks.sample_episode(seed, family=family)
        where = episode_objects(seed, family)
        mover = next(p for p in spec.placements if p.name == spec.target_object)
        assert where[:2].tolist() == [mover.x, mover.y]
        if family == "stack":
            base = next(p for p in spec.placements if p.name == spec.base_object)
            assert where[2:].tolist() == [base.x, base.y]
        elif family == "place_in_bowl":
            assert where[2:].tolist() == list(spec.bowl_xy)
        else:
            assert np.isnan(where[2:]).all()


def test_the_catalogue_holds_every_object_and_locates_each_scenes():
    catalogue = object_catalogue()
    assert isinstance(catalogue, ObjectCatalogue)
    assert catalogue.names == tuple(obj.name for obj in tasks.OBJECTS)
    colour = {obj.name: obj.colour for obj in tasks.OBJECTS}
    for a, b in catalogue.lookalike_pairs:  # the pairs only the shape tells apart: one colour each
        assert colour[catalogue.names[a]] == colour[catalogue.names[b]] and a < b
    assert len(catalogue.lookalike_pairs) == len(set(colour.values()))  # a cube and a cylinder per colour
    seed = tasks.TRAIN_SEED_START + 5
    for family in tasks.FAMILY_ORDER:
        located = catalogue.locate(seed, family)
        placements = {p.name: p for p in tasks.sample_episode(seed, family=family).placements}
        assert located.shape == (len(catalogue.names), 3)
        for i, name in enumerate(catalogue.names):
            if name in placements:
                assert located[i].tolist() == [1.0, placements[name].x, placements[name].y]
            else:
                assert located[i].tolist() == [0.0, 0.0, 0.0]
