"""An auxiliary grounding loss: the readout must also say where the named objects are on the table.

Behaviour cloning alone let the sim model ignore the instruction's shape word: where two objects
share a colour it headed for the look-alike as often as a model that never reads the word. A small
linear head on the readout, trained alongside the diffusion loss and dropped from the checkpoint,
regresses the table (x, y) of the object to move and of where it goes (the bowl, the base of a
stack), z-scored. It is only asked while those objects still stand where the scene put them: up to
the tick the gripper first closes (pick, place, stack) or the push stroke begins (push).

Positions come from the caller (``EpisodeObjects``: the sim rebuilds each scene from its seed), so
this module stays free of the simulator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

# (episode seed, family) -> (4,) mover x, y and destination x, y in metres; NaN where not defined
EpisodeObjects = Callable[[int, str], np.ndarray]

PUSH_STROKE_STEP_M = 0.02  # the push stroke's steps; the approach ends slow over the object


def objects_still_in_place(actions: np.ndarray, family: str) -> np.ndarray:
    """(ticks,) True at the ticks whose observation still shows the objects where they started.

    ``actions`` (ticks, horizon, 7) is one episode's expert chunks (gripper absolute, 0 = close). A
    grasp moves nothing until the gripper closes: the ticks up to the first close command. A push
    moves the object in its last run of fast steps: the ticks up to that run's first one. Meant for
    whole episodes: in a decision-frame clip (the first ticks only) the approach's fast opening
    steps would pass for the stroke.
    """
    ticks = len(actions)
    first = actions[:, 0]
    if family == "push":
        fast = np.linalg.norm(first[:, :2], axis=1) >= PUSH_STROKE_STEP_M
        if not fast.any():
            return np.ones(ticks, dtype=bool)
        slow_before = np.flatnonzero(~fast[: np.flatnonzero(fast)[-1]])
        last = int(slow_before[-1]) + 1 if len(slow_before) else 0
    else:
        closed = np.flatnonzero(first[:, 6] < 0.5)
        last = int(closed[0]) if len(closed) else ticks - 1
    return np.arange(ticks) <= last


class GroundingTargets:
    """Per-tick z-scored targets (N, 4) and their mask (N, 4), from each episode's object positions."""

    def __init__(self, positions: np.ndarray, in_place: np.ndarray, episode_of_tick: np.ndarray) -> None:
        positions = np.asarray(positions, dtype=np.float64)  # (episodes, 4), NaN = undefined
        if positions.ndim != 2 or positions.shape[1] != 4:
            raise ValueError(f"positions: expected (episodes, 4), got shape {positions.shape}")
        defined = np.isfinite(positions)
        if not defined[:, :2].all():
            bad = int(np.flatnonzero(~defined[:, :2].all(axis=1))[0])
            raise ValueError(f"positions: episode {bad} has no mover position ({positions[bad].tolist()})")
        xy = np.concatenate([positions[:, :2], positions[:, 2:][defined[:, 2:].all(axis=1)]])
        self.mean = np.tile(xy.mean(axis=0), 2)
        self.std = np.tile(np.maximum(xy.std(axis=0), 1e-3), 2)
        scaled = np.where(defined, (positions - self.mean) / self.std, 0.0)
        self.targets = scaled[episode_of_tick].astype(np.float32)
        self.mask = (defined[episode_of_tick] & np.asarray(in_place, dtype=bool)[:, None]).astype(np.float32)

    def batch(self, ticks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.targets[ticks]), torch.from_numpy(self.mask[ticks])

    def metres(self, scaled: np.ndarray) -> np.ndarray:
        return scaled * self.std + self.mean


class GroundingHead(nn.Module):
    """readout (B, width) -> (B, 4) z-scored mover and destination (x, y)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 4))

    def forward(self, readout: torch.Tensor) -> torch.Tensor:
        return self.net(readout)


def grounding_loss(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE; zero (with a gradient path) when nothing in the batch is masked in."""
    return ((predicted - targets) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)


def gather_grounding(demos, episode_objects: EpisodeObjects) -> GroundingTargets:
    """The targets of every tick of ``demos`` (a ``Demonstrations``)."""
    positions = np.stack(
        [
            np.asarray(episode_objects(seed, family), dtype=np.float64)
            for seed, family in zip(demos.episode_seeds, demos.families, strict=True)
        ]
    )
    episode = demos.episode_of_tick()
    in_place = np.zeros(len(demos), dtype=bool)
    for e, family in enumerate(demos.families):
        ticks = np.flatnonzero(episode == e)
        in_place[ticks] = objects_still_in_place(demos.actions[ticks], family)
    return GroundingTargets(positions, in_place, episode)
