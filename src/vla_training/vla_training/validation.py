"""Held-out measures of a training run, on the EMA weights: the diffusion loss with fixed noise, the
grounding head's error in centimetres, and what the object slots say of each object."""

from __future__ import annotations

import numpy as np
import torch

from vla_policy.backends.octo.model import OctoModel
from vla_training.demo_dataset import Demonstrations, sample_batch
from vla_training.grounding import GroundingHead
from vla_training.losses import Objective, diffusion_loss, last_readout
from vla_training.object_localisation import ObjectCatalogue, evaluate

VALIDATION_SAMPLES = 512  # at most this many validation ticks per measure
BATCH = 128


@torch.no_grad()
def validation_loss(
    model: OctoModel, demos: Demonstrations, ticks: np.ndarray, objective: Objective
) -> float:
    """The diffusion loss on fixed validation samples with fixed noise (comparable across steps)."""
    rng = np.random.default_rng(1234)
    generator = torch.Generator().manual_seed(1234)
    chosen = ticks[rng.permutation(len(ticks))[: min(len(ticks), VALIDATION_SAMPLES)]]
    losses = []
    for i in range(0, len(chosen), BATCH):
        batch = sample_batch(demos, chosen[i : i + BATCH], model.config.window, rng, None)
        readout = last_readout(model, batch, objective.text, objective.text_mask)
        loss = diffusion_loss(model, readout, batch, objective.alpha_bars, objective.normalise, generator)
        losses.append(float(loss))
    return float(np.mean(losses))


@torch.no_grad()
def grounding_error_cm(
    ema: OctoModel, head: GroundingHead, demos: Demonstrations, ticks: np.ndarray, objective: Objective
) -> dict:
    """Median distance (cm) between the predicted and true mover / destination positions on the
    validation ticks where the objects are in place (EMA trunk, the training head)."""
    grounding = objective.grounding
    ticks = ticks[grounding.mask[ticks, 0] > 0][:VALIDATION_SAMPLES]
    if not len(ticks):
        return {}
    predicted = []
    for i in range(0, len(ticks), BATCH):
        chunk = ticks[i : i + BATCH]
        batch = sample_batch(demos, chunk, ema.config.window, np.random.default_rng(0), None)
        predicted.append(head(last_readout(ema, batch, objective.text, objective.text_mask)).numpy())
    error = grounding.metres(np.concatenate(predicted)) - grounding.metres(grounding.targets[ticks])
    mask = grounding.mask[ticks] > 0
    out = {}
    for name, cols in (("mover", slice(0, 2)), ("destination", slice(2, 4))):
        rows = mask[:, cols].all(axis=1)
        if rows.any():
            out[name] = round(float(np.median(np.linalg.norm(error[rows, cols], axis=1)) * 100), 1)
    return out


@torch.no_grad()
def slot_metrics(
    ema: OctoModel, demos: Demonstrations, ticks: np.ndarray, objective: Objective, catalogue: ObjectCatalogue
) -> dict:
    """Held-out first ticks: what the object slots say of each object (``object_localisation.evaluate``)."""
    rng = np.random.default_rng(0)

    def predict(chunk: np.ndarray, shift: bool) -> dict:
        batch = sample_batch(demos, chunk, ema.config.window, rng)
        _, objects = last_readout(ema, batch, objective.text, objective.text_mask, with_objects=True)
        return {"slots": ema.object_slots.locate(objects)}

    scenes = objective.slots.scenes
    labels = scenes.labels[demos.episode_of_tick()[ticks]]
    return evaluate(predict, ticks, labels, scenes.xy_mean, scenes.xy_std, catalogue)["slots"]
