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

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vla_training.demo_dataset import random_shift
from vla_training.train_config import StemPretraining


@dataclass(frozen=True)
class ObjectCatalogue:
    """Every object a scene can hold, and where a scene puts them."""

    names: tuple[str, ...]
    # (seed, family) -> (len(names), 3): 1 where the object is in the scene (else 0), its x, y (m)
    locate: Callable[[int, str], np.ndarray]
    # index pairs that only the shape tells apart (same colour): the which-is-which metric
    lookalike_pairs: tuple[tuple[int, int], ...] = ()


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
    unknown = [c for c in options.cameras if c not in model.image_tokenizers]
    if unknown:
        raise ValueError(
            f"train.stem_pretraining.cameras: {unknown} not among the model's cameras "
            f"{list(model.image_tokenizers)}"
        )
    if scenes is None:
        scenes = SceneLabels.of(demos, catalogue)
    train_ticks = first_ticks(demos, train_episodes, options.ticks_per_episode)
    val_ticks = first_ticks(
        demos, unseen_scenes(demos, val_episodes, train_episodes), options.ticks_per_episode
    )
    heads, params = _localisation_heads(model, demos, options.cameras, len(catalogue.names))
    predict = _stem_predictor(model, demos, heads, options.shift_px, train_ticks, rng)
    optimizer = torch.optim.AdamW(params, lr=options.learning_rate, weight_decay=1e-4)
    targets = scenes.scaled[demos.episode_of_tick()]
    metrics = _fit_stems(predict, optimizer, model, train_ticks, targets, options, rng)
    if len(val_ticks):
        episode = demos.episode_of_tick()
        labels = scenes.labels[episode[val_ticks]]
        metrics.update(evaluate(predict, val_ticks, labels, scenes.xy_mean, scenes.xy_std, catalogue))
    return metrics


def _film_dim(model) -> int:
    return model.language.dim if model.config.film else 0


def _localisation_heads(model, demos, cameras: list[str], objects: int) -> tuple[dict, list]:
    """One ``LocalisationHead`` per camera, sized by a probe through its stem, and the parameters to
    train: the heads and the stems without their FiLM layers."""
    film_dim = _film_dim(model)
    heads, params = {}, []
    for camera in cameras:
        tokenizer = model.image_tokenizers[camera]
        with torch.no_grad():
            probe = torch.from_numpy(demos.images[camera][:1])[None]
            n, dim = tokenizer(probe, torch.zeros(1, film_dim) if film_dim else None).shape[2:]
        heads[camera] = LocalisationHead(n, dim, demos.proprio.shape[1], objects)
        params += [p for name, p in tokenizer.named_parameters() if ".films." not in name]
        params += list(heads[camera].parameters())
    return heads, params


def _stem_predictor(model, demos, heads: dict, shift_px: int, train_ticks: np.ndarray, rng) -> Callable:
    """``predict(ticks, shift) -> {camera: (B, objects, 3)}`` from each camera's stem tokens and the
    proprio, z-scored with the training ticks' statistics."""
    p_mean = demos.proprio[train_ticks].mean(axis=0)
    p_std = np.maximum(demos.proprio[train_ticks].std(axis=0), 1e-3)
    film_dim = _film_dim(model)

    def predict(ticks: np.ndarray, shift: bool) -> dict[str, torch.Tensor]:
        proprio = torch.from_numpy((demos.proprio[ticks] - p_mean) / p_std)
        cond = torch.zeros(len(ticks), film_dim) if film_dim else None  # FiLM at its zero start: identity
        out = {}
        for camera, head in heads.items():
            frames = demos.images[camera][ticks][:, None]
            if shift and shift_px:
                frames = random_shift(frames, shift_px, rng)
            tokens = model.image_tokenizers[camera](torch.from_numpy(frames), cond)[:, 0]
            out[camera] = head(tokens, proprio)
        return out

    return predict


def _fit_stems(predict, optimizer, model, train_ticks, targets, options: StemPretraining, rng) -> dict:
    """The pretraining loop: until ``options.minutes`` run out or ``options.steps`` are done."""
    start = time.monotonic()
    steps = 0
    running = first = None
    bar = tqdm(desc="stem pretraining", unit="step", total=options.steps)
    model.train()
    while time.monotonic() - start < options.minutes * 60 and steps != options.steps:
        ticks = train_ticks[rng.integers(len(train_ticks), size=options.batch_size)]
        target = torch.from_numpy(targets[ticks])
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
    return {
        "steps": steps,
        "minutes": round((time.monotonic() - start) / 60, 1),
        "first_loss": first,
        "train_loss": running,
    }


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
