"""Object localisation from the sim's own labels: stem pretraining and the object slots' targets.

Stem pretraining: the image stems learn where every object of the scene is before the policy trains.

Behaviour cloning alone never taught the sim model the shape word: the stems kept where a colour is
but not which of two same-coloured blobs is the cube (a linear probe of the trained stem's tokens
told them apart in 51 % of scenes). Octo and OpenVLA start from vision encoders pretrained on
large image sets; with no model hub here, the stems are pretrained on the demonstrations' own first
frames instead: from one camera's tokens (and the arm's joints, which the wrist view needs), a
small head says for each object of the catalogue whether it is in the scene and where it stands on
the table (x, y). The scene is rebuilt from the episode's seed, so the labels cost nothing to
record; only the first ticks of an episode are used, before anything has moved. The head is then
dropped and the policy trains from the pretrained stems (the FiLM layers stay at their
zero start, so the stems' features reach the policy unchanged).

The same labels are the targets of the model's object slots (``backends.octo.object_slots``,
``SlotLabels``): slot k says whether object k is there and where, on the first ticks of each
episode, while the policy trains.

``ObjectCatalogue`` comes from the caller (the sim's task suite), so this module stays free of the
simulator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ObjectCatalogue:
    """Every object a scene can hold, and where a scene puts them."""

    names: tuple[str, ...]
    # (seed, family) -> (len(names), 3): 1 where the object is in the scene (else 0), its x, y (m)
    locate: Callable[[int, str], np.ndarray]
    # index pairs that only the shape tells apart (same colour): the which-is-which metric
    lookalike_pairs: tuple[tuple[int, int], ...] = ()


@dataclass
class StemPretraining:
    """The ``stem_pretraining`` settings of a train config."""

    cameras: list[str] = field(default_factory=lambda: ["primary"])
    minutes: float = 8.0
    steps: int | None = None  # stop after this many steps if the minutes have not run out first
    batch_size: int = 128
    learning_rate: float = 1e-3
    ticks_per_episode: int = 2  # the first ticks of each scene: nothing has moved yet
    shift_px: int = 4

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("train.stem_pretraining.cameras: expected at least one camera, got []")
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"train.stem_pretraining.minutes: expected a number > 0, got {self.minutes!r}")
        if self.steps is not None and int(self.steps) < 1:
            raise ValueError(
                f"train.stem_pretraining.steps: expected an integer >= 1 or null, got {self.steps!r}"
            )
        for name in ("batch_size", "ticks_per_episode"):
            if int(getattr(self, name)) < 1:
                value = getattr(self, name)
                raise ValueError(f"train.stem_pretraining.{name}: expected an integer >= 1, got {value!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(
                "train.stem_pretraining.learning_rate: expected a value in (0, 1), "
                f"got {self.learning_rate!r}"
            )
        if int(self.shift_px) < 0:
            raise ValueError(f"train.stem_pretraining.shift_px: expected >= 0, got {self.shift_px!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StemPretraining:
        known = sorted(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"train.stem_pretraining: unknown setting(s) {unknown}; known: {known}")
        return cls(**data)


@dataclass
class SceneLabels:
    """Per episode, each catalogue object's presence and x, y (``labels``, metres) and the same
    z-scored with the statistics of the objects present (``scaled``; 0 where absent)."""

    labels: np.ndarray  # (episodes, objects, 3)
    scaled: np.ndarray
    xy_mean: np.ndarray
    xy_std: np.ndarray

    @classmethod
    def of(cls, demos, catalogue: ObjectCatalogue) -> SceneLabels:
        pairs = zip(demos.episode_seeds, demos.families, strict=True)
        labels = np.stack([np.asarray(catalogue.locate(s, f), dtype=np.float32) for s, f in pairs])
        if labels.shape[1:] != (len(catalogue.names), 3):
            raise ValueError(
                f"catalogue.locate: expected ({len(catalogue.names)}, 3) per scene, got {labels.shape[1:]}"
            )
        present = labels[..., 0] > 0
        xy_mean = labels[..., 1:][present].mean(axis=0)
        xy_std = np.maximum(labels[..., 1:][present].std(axis=0), 1e-3)
        scaled = labels.copy()
        scaled[..., 1:] = np.where(present[..., None], (labels[..., 1:] - xy_mean) / xy_std, 0.0)
        return cls(labels, scaled.astype(np.float32), xy_mean, xy_std)


@dataclass
class SlotLabels:
    """Per tick: the z-scored object labels (N, slots, 3), whether the tick is labelled (N,), and
    the scene labels they come from."""

    targets: np.ndarray
    mask: np.ndarray
    scenes: SceneLabels


def object_slot_labels(demos, catalogue: ObjectCatalogue | None, slots: int, label_ticks: int) -> SlotLabels:
    if catalogue is None:
        raise ValueError("a model with object_slots needs the scenes' objects (train(..., catalogue=...))")
    if slots != len(catalogue.names):
        raise ValueError(
            f"OctoConfig.object_slots: {slots} slots for a catalogue of {len(catalogue.names)} objects "
            f"({list(catalogue.names)}); set it to {len(catalogue.names)}"
        )
    scenes = SceneLabels.of(demos, catalogue)
    ticks = np.arange(len(demos))
    episode = demos.episode_of_tick()
    at_reset = demos.starts_at_reset()[episode]  # carry frames: objects have moved
    mask = (ticks - demos.episode_start < label_ticks) & at_reset
    return SlotLabels(scenes.scaled[episode], mask, scenes)


class LocalisationHead(nn.Module):
    """tokens (B, n, dim) + z-scored proprio (B, P) -> (B, objects, 3): presence logit, z-scored x, y."""

    def __init__(self, tokens: int, dim: int, proprio_dim: int, objects: int, hidden: int = 512) -> None:
        super().__init__()
        self.objects = objects
        self.norm = nn.LayerNorm(tokens * dim)
        self.net = nn.Sequential(
            nn.Linear(tokens * dim + proprio_dim, hidden), nn.GELU(), nn.Linear(hidden, objects * 3)
        )

    def forward(self, tokens: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.norm(tokens.flatten(1)), proprio], dim=1)
        return self.net(x).reshape(-1, self.objects, 3)


def unseen_scenes(demos, val_episodes, train_episodes) -> np.ndarray:
    """The validation episodes whose scene (seed) no training episode shows: a counterfactual clip
    and its decision clip share the seed and the first frames, so one of them in training would
    leak the other's labels."""
    seen = {demos.episode_seeds[e] for e in train_episodes}
    return np.array([e for e in val_episodes if demos.episode_seeds[e] not in seen], dtype=int)


def first_ticks(demos, episodes: np.ndarray, ticks_per_episode: int) -> np.ndarray:
    """Tick indices of the first ``ticks_per_episode`` ticks of each of ``episodes``, one episode per
    seed (a counterfactual clip repeats its decision clip's frames under the same seed), of the
    episodes recorded from the reset (a carry clip starts with the object in the gripper)."""
    episode = demos.episode_of_tick()
    at_reset = demos.starts_at_reset()
    seen: set[int] = set()
    keep = []
    for e in episodes:
        seed = demos.episode_seeds[e]
        if seed in seen or not at_reset[e]:
            continue
        seen.add(seed)
        ticks = np.flatnonzero(episode == e)[:ticks_per_episode]
        keep.append(ticks)
    return np.concatenate(keep) if keep else np.zeros(0, dtype=int)


def localisation_loss(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Presence BCE + the squared z-scored x, y error of the objects present."""
    present = labels[..., 0]
    xy = ((predicted[..., 1:] - labels[..., 1:]) ** 2).sum(-1)
    return F.binary_cross_entropy_with_logits(predicted[..., 0], present) + (
        xy * present
    ).sum() / present.sum().clamp(min=1.0)


def which_is_which(
    predicted_xy: np.ndarray, true_xy: np.ndarray, present: np.ndarray, pairs
) -> tuple[int, int]:
    """(right, total): for each scene holding both objects of a look-alike pair, each one's predicted
    position nearer its own true position than its twin's."""
    right = total = 0
    for a, b in pairs:
        both = present[:, a] & present[:, b]
        for i, j in ((a, b), (b, a)):
            own = np.linalg.norm(predicted_xy[both, i] - true_xy[both, i], axis=1)
            other = np.linalg.norm(predicted_xy[both, i] - true_xy[both, j], axis=1)
            right += int((own < other).sum())
            total += int(both.sum())
    return right, total


def pretrain_stems(
    model,
    demos,
    catalogue: ObjectCatalogue,
    options: StemPretraining,
    train_episodes: np.ndarray,
    val_episodes: np.ndarray,
    rng: np.random.Generator,
    scenes: SceneLabels | None = None,
) -> dict:
    """Train ``model``'s stems (not their FiLM layers) on object localisation; returns held-out metrics.

    ``scenes``: the demonstrations' scene labels when the caller already has them (object slots).
    """
    from tqdm import tqdm

    from vla_training.demo_dataset import random_shift

    unknown = [c for c in options.cameras if c not in model.image_tokenizers]
    if unknown:
        raise ValueError(
            f"train.stem_pretraining.cameras: {unknown} not among the model's cameras "
            f"{list(model.image_tokenizers)}"
        )
    if scenes is None:
        scenes = SceneLabels.of(demos, catalogue)
    labels, scaled, xy_mean, xy_std = scenes.labels, scenes.scaled, scenes.xy_mean, scenes.xy_std
    train_ticks = first_ticks(demos, train_episodes, options.ticks_per_episode)
    val_ticks = first_ticks(
        demos, unseen_scenes(demos, val_episodes, train_episodes), options.ticks_per_episode
    )
    episode = demos.episode_of_tick()
    proprio_dim = demos.proprio.shape[1]
    p_mean = demos.proprio[train_ticks].mean(axis=0)
    p_std = np.maximum(demos.proprio[train_ticks].std(axis=0), 1e-3)
    film_dim = model.language.dim if model.config.film else 0

    heads, params = {}, []
    for camera in options.cameras:
        tokenizer = model.image_tokenizers[camera]
        with torch.no_grad():
            probe = torch.from_numpy(demos.images[camera][:1])[None]
            n, dim = tokenizer(probe, torch.zeros(1, film_dim) if film_dim else None).shape[2:]
        heads[camera] = LocalisationHead(n, dim, proprio_dim, len(catalogue.names))
        params += [p for name, p in tokenizer.named_parameters() if ".films." not in name]
        params += list(heads[camera].parameters())
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=1e-4)

    def predict(ticks: np.ndarray, shift: bool) -> dict[str, torch.Tensor]:
        proprio = torch.from_numpy((demos.proprio[ticks] - p_mean) / p_std)
        cond = torch.zeros(len(ticks), film_dim) if film_dim else None  # FiLM at its zero start: identity
        out = {}
        for camera in options.cameras:
            frames = demos.images[camera][ticks][:, None]
            if shift and options.shift_px:
                frames = random_shift(frames, options.shift_px, rng)
            tokens = model.image_tokenizers[camera](torch.from_numpy(frames), cond)[:, 0]
            out[camera] = heads[camera](tokens, proprio)
        return out

    start = time.monotonic()
    steps = 0
    running = first = None
    bar = tqdm(desc="stem pretraining", unit="step", total=options.steps)
    model.train()
    while time.monotonic() - start < options.minutes * 60 and steps != options.steps:
        ticks = train_ticks[rng.integers(len(train_ticks), size=options.batch_size)]
        target = torch.from_numpy(scaled[episode[ticks]])
        loss = sum(localisation_loss(p, target) for p in predict(ticks, shift=True).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        first = loss.item() if first is None else first
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update()
        if steps % 25 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
    bar.close()
    metrics = {
        "steps": steps,
        "minutes": round((time.monotonic() - start) / 60, 1),
        "first_loss": first,
        "train_loss": running,
    }
    if len(val_ticks):
        metrics.update(evaluate(predict, val_ticks, labels[episode[val_ticks]], xy_mean, xy_std, catalogue))
    return metrics


@torch.no_grad()
def evaluate(predict, ticks, labels, xy_mean, xy_std, catalogue: ObjectCatalogue) -> dict:
    """Per camera on held-out first frames: presence accuracy, median x, y error (cm), which-is-which."""
    chunks = [predict(ticks[i : i + 256], shift=False) for i in range(0, len(ticks), 256)]
    present = labels[..., 0] > 0
    result = {}
    for camera in chunks[0]:
        predicted = torch.cat([c[camera] for c in chunks]).numpy()
        xy = predicted[..., 1:] * xy_std + xy_mean
        right, total = which_is_which(xy, labels[..., 1:], present, catalogue.lookalike_pairs)
        result[camera] = {
            "presence_accuracy": round(float(((predicted[..., 0] > 0) == present).mean()), 3),
            "median_error_cm": round(
                float(np.median(np.linalg.norm(xy - labels[..., 1:], axis=-1)[present]) * 100), 2
            ),
            "which_is_which": round(right / total, 3) if total else None,
            "lookalike_cases": total,
        }
    return result
