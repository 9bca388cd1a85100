"""Demonstrations in memory, sampled as Octo trains: a window of observations -> the chunk at its end.

Reads the ``episode_<seed>.npz`` files ``vla-stack collect`` writes (see
``vla_training.demonstrations``). A sample at tick t of an episode holds the frames and proprio of
ticks t-window+1 .. t (before the first tick: the first frame repeated and masked out, as
``ObservationHistory`` pads at inference), the instruction, and the expert's chunk at t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vla_common.action_space import NormStats


@dataclass
class Demonstrations:
    cameras: tuple[str, ...]
    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8, every tick of every episode
    proprio: np.ndarray  # (N, P) float32
    actions: np.ndarray  # (N, horizon, 7) float32
    episode_start: np.ndarray  # (N,) index of the tick's episode's first tick
    instruction_id: np.ndarray  # (N,) index into instructions
    instructions: list[str]
    episode_seeds: list[int]
    families: list[str]  # per episode
    # per episode: the tick of its scene its frames start at (carry frames start at the grasp; 0
    # for everything recorded from the reset, where the scene's layout is still untouched)
    first_ticks: list[int] = field(default_factory=list)

    def starts_at_reset(self) -> np.ndarray:
        """(episodes,) whether each episode's frames start at its scene's reset."""
        if not self.first_ticks:
            return np.ones(len(self.episode_seeds), dtype=bool)
        return np.asarray(self.first_ticks) == 0

    def __len__(self) -> int:
        return len(self.proprio)

    def episode_of_tick(self) -> np.ndarray:
        """(N,) each tick's episode: its index in ``episode_seeds``."""
        return np.searchsorted(np.unique(self.episode_start), self.episode_start)

    def subset_episodes(self, keep: np.ndarray) -> np.ndarray:
        """Tick indices of the episodes whose index in ``episode_seeds`` is in ``keep``."""
        return np.flatnonzero(np.isin(self.episode_of_tick(), keep))

    def draw_probabilities(self, ticks: np.ndarray, episode_weights: np.ndarray) -> np.ndarray:
        """P(draw) over ``ticks`` when each episode's ticks are drawn ``episode_weights[e]`` times as
        often as an unweighted episode's (one weight per entry of ``episode_seeds``)."""
        weights = np.asarray(episode_weights, dtype=np.float64)
        if weights.shape != (len(self.episode_seeds),):
            raise ValueError(
                f"episode_weights: expected {len(self.episode_seeds)} values (one per episode), "
                f"got shape {weights.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(weights) | (weights <= 0))
        if len(bad):
            raise ValueError(
                f"episode_weights: expected finite values > 0, got {float(weights[bad[0]])!r} "
                f"for the episode with seed {self.episode_seeds[bad[0]]}"
            )
        per_tick = weights[self.episode_of_tick()[ticks]]
        return per_tick / per_tick.sum()


def episode_files(directory: str | Path | list, max_episodes: int | None = None) -> list[Path]:
    """Every ``episode_*.npz`` under ``directory`` (or each of a list of them, in turn), by seed
    within each folder; the first ``max_episodes`` of them."""
    directories = directory if isinstance(directory, list | tuple) else [directory]
    files = []
    for folder in directories:
        found = sorted(Path(folder).glob("episode_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
        if not found:
            raise FileNotFoundError(f"no episode_*.npz demonstrations under {folder}; run vla-stack collect")
        files += found
    return files if max_episodes is None else files[:max_episodes]


def read_episode(path: Path, cameras: tuple[str, ...]) -> dict:
    """One episode file's frames of ``cameras``, proprio, actions and scalars."""
    with np.load(path) as data:
        missing = [c for c in cameras if c not in data]
        if missing:
            raise KeyError(f"{path}: camera(s) {missing} not recorded; recorded: {sorted(data.keys())}")
        return {
            "images": {c: data[c] for c in cameras},
            "proprio": data["proprio"],
            "actions": data["actions"],
            "instruction": str(data["instruction"]),
            "seed": int(data["seed"]),
            "family": str(data["family"]),
            "first_tick": int(data["first_tick"]) if "first_tick" in data else 0,
        }


def load_demonstrations(
    directory: str | Path | list, cameras: tuple[str, ...], max_episodes: int | None = None
) -> Demonstrations:
    """Every ``episode_*.npz`` under ``directory`` (or each of a list of them; by seed within
    each), concatenated."""
    files = episode_files(directory, max_episodes)
    episodes = [read_episode(path, cameras) for path in tqdm(files, desc="loading demonstrations", unit="ep")]
    lengths = [len(e["proprio"]) for e in episodes]
    instructions = list(dict.fromkeys(e["instruction"] for e in episodes))  # first-seen order
    return Demonstrations(
        cameras=tuple(cameras),
        images={c: np.concatenate([e["images"][c] for e in episodes]) for c in cameras},
        proprio=np.concatenate([e["proprio"] for e in episodes]).astype(np.float32),
        actions=np.concatenate([e["actions"] for e in episodes]).astype(np.float32),
        episode_start=np.repeat(np.cumsum([0, *lengths[:-1]]), lengths),
        instruction_id=np.repeat([instructions.index(e["instruction"]) for e in episodes], lengths),
        instructions=instructions,
        episode_seeds=[e["seed"] for e in episodes],
        families=[e["family"] for e in episodes],
        first_ticks=[e["first_tick"] for e in episodes],
    )


def action_stats(actions: np.ndarray) -> NormStats:
    """Octo's normalisation statistics over every step of every chunk; the gripper is left as is."""
    flat = actions.reshape(-1, actions.shape[-1]).astype(np.float64)
    std = np.maximum(flat.std(axis=0), 1e-4)
    mask = [True] * (flat.shape[1] - 1) + [False]
    return NormStats(
        q01=np.quantile(flat, 0.01, axis=0).tolist(),
        q99=np.quantile(flat, 0.99, axis=0).tolist(),
        mask=mask,
        mean=flat.mean(axis=0).tolist(),
        std=std.tolist(),
    )


def sample_batch(
    demos: Demonstrations,
    ticks: np.ndarray,
    window: int,
    rng: np.random.Generator,
    shift_px: dict[str, int] | None = None,
) -> dict:
    """A batch at ``ticks``: images (B, window, H, W, 3) uint8 tensors, masks, proprio, actions."""
    offsets = np.arange(-window + 1, 1)
    index = ticks[:, None] + offsets[None, :]
    valid = index >= demos.episode_start[ticks][:, None]
    first = np.broadcast_to(demos.episode_start[ticks][:, None], index.shape)
    # Before the episode's first tick: that first tick repeated, masked out (ObservationHistory).
    index = np.where(valid, index, first)
    pad = ~valid
    images = {}
    for camera in demos.cameras:
        frames = demos.images[camera][index]  # (B, T, H, W, 3)
        shift = (shift_px or {}).get(camera, 0)
        if shift:
            frames = random_shift(frames, shift, rng)
        images[camera] = torch.from_numpy(frames)
    return {
        "images": images,
        "timestep_mask": torch.from_numpy(~pad),
        "proprio": torch.from_numpy(demos.proprio[index]),
        "actions": torch.from_numpy(demos.actions[ticks]),
        "instruction_id": torch.from_numpy(demos.instruction_id[ticks]),
    }


def random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """DrQ's augmentation: edge-pad by ``pad`` px and crop back at a random offset, the same for
    every frame of a sample's window."""
    batch, window, height, width, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    dy = rng.integers(0, 2 * pad + 1, size=batch)
    dx = rng.integers(0, 2 * pad + 1, size=batch)
    out = np.empty_like(frames)
    for i in range(batch):
        out[i] = padded[i, :, dy[i] : dy[i] + height, dx[i] : dx[i] + width]
    return out
