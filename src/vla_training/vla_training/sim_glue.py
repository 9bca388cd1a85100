"""What the trainer asks of the sim's task suite: each demonstration's scene, rebuilt from its seed.

The collector resets a scene from (seed, family) alone, so ``tasks.sample_episode`` rebuilds exactly
the scene an episode was recorded in. The trainer takes these as plain callables
(``train_octo.EpisodeWeight``, ``grounding.EpisodeObjects``, ``object_localisation.ObjectCatalogue``)
and stays free of the simulator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from vla_sim import tasks
from vla_training.object_localisation import ObjectCatalogue


def lookalike_episode_weight(weight: float) -> Callable[[int, str], float]:
    """(seed, family) -> ``weight`` for the demonstrations whose scene holds a look-alike of an object
    the instruction names (same colour, other shape: see ``tasks.lookalikes``), else 1."""
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"train.lookalike_weight: expected a number > 0, got {weight!r}")

    def episode_weight(seed: int, family: str) -> float:
        return weight if tasks.lookalikes(tasks.sample_episode(seed, family=family)) else 1.0

    return episode_weight


def episode_objects(seed: int, family: str) -> np.ndarray:
    """(4,) where the scene of (seed, family) puts the object to move and where it goes (x, y in
    metres; the bowl for place, the base for stack, NaN for pick and push), for the grounding loss."""
    spec = tasks.sample_episode(seed, family=family)
    mover = spec.placements[0]
    if spec.base_object is not None:
        base = next(p for p in spec.placements if p.name == spec.base_object)
        destination = (base.x, base.y)
    elif spec.destination == "bowl":
        destination = spec.bowl_xy
    else:
        destination = (math.nan, math.nan)
    return np.array([mover.x, mover.y, *destination])


def object_catalogue() -> ObjectCatalogue:
    """The sim's eight objects and where a (seed, family) scene puts them, for stem pretraining and
    the object slots; the look-alike pairs are the objects of one colour."""
    names = tuple(obj.name for obj in tasks.OBJECTS)

    def locate(seed: int, family: str) -> np.ndarray:
        out = np.zeros((len(names), 3))
        for placement in tasks.sample_episode(seed, family=family).placements:
            out[names.index(placement.name)] = (1.0, placement.x, placement.y)
        return out

    pairs = tuple(
        (a, b)
        for a, first in enumerate(tasks.OBJECTS)
        for b, second in enumerate(tasks.OBJECTS)
        if a < b and first.colour == second.colour
    )
    return ObjectCatalogue(names, locate, pairs)
