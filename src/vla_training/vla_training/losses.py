"""The losses of one training step and their weighted sum.

Octo's diffusion loss on the normalised action chunk always; the object slots' localisation loss
(``object_localisation``) when the model has object slots; the auxiliary grounding loss
(``grounding``) when its weight is above zero. The total is the diffusion loss plus each auxiliary
loss times its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vla_policy.backends.octo.model import OctoModel
from vla_training.grounding import GroundingHead, GroundingTargets, grounding_loss
from vla_training.object_localisation import SlotLabels, localisation_loss


def last_readout(
    model: OctoModel, batch: dict, text: torch.Tensor, text_mask: torch.Tensor, with_objects: bool = False
):
    """(B, width): the readout of each sample's last timestep; with ``with_objects`` also its object
    slots (B, slots, width)."""
    ids = batch["instruction_id"]
    out = model(
        batch["images"],
        text[ids],
        batch["timestep_mask"],
        proprio=batch["proprio"],
        text_mask=text_mask[ids],
        return_object_tokens=with_objects,
    )
    return (out[0][:, -1], out[1][:, -1]) if with_objects else out[:, -1]


@dataclass(frozen=True)
class ChunkNormalisation:
    """How the action chunk is normalised before the diffusion loss: (a - mean) / std where ``mask``."""

    mean: torch.Tensor
    std: torch.Tensor
    mask: torch.Tensor

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.where(self.mask, (actions - self.mean) / self.std, actions)


def diffusion_loss(
    model: OctoModel,
    readout: torch.Tensor,
    batch: dict,
    alpha_bars: torch.Tensor,
    normalise: ChunkNormalisation,
    generator: torch.Generator,
) -> torch.Tensor:
    """Octo's loss: MSE between the noise (or, for prediction_type "sample", the clean normalised
    chunk) and the head's prediction at a uniformly drawn diffusion step."""
    actions = batch["actions"]
    x0 = normalise(actions).reshape(len(actions), -1)
    steps = torch.randint(0, len(alpha_bars), (len(actions), 1), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    ab = alpha_bars[steps]
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    predicted = model.action_head(readout, noisy, steps.float())
    target = x0 if model.config.prediction_type == "sample" else noise
    return F.mse_loss(predicted, target)


def total_loss(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``losses["diffusion"]`` plus every other loss of ``losses`` times its weight in ``weights``."""
    unweighted = sorted(set(losses) - {"diffusion"} - set(weights))
    if unweighted:
        raise ValueError(f"total_loss: no weight for the loss(es) {unweighted}; weights: {weights}")
    total = losses["diffusion"]
    for name, value in losses.items():
        if name != "diffusion":
            total = total + weights[name] * value
    return total


@dataclass
class Objective:
    """What a training step's losses need besides the model and the batch: the frozen instruction
    embeddings, the diffusion schedule, the chunk normalisation and the optional auxiliary targets."""

    text: torch.Tensor  # (instructions, tokens, width): frozen, encoded once
    text_mask: torch.Tensor
    alpha_bars: torch.Tensor  # the cumulative products of the noise schedule
    normalise: ChunkNormalisation
    generator: torch.Generator  # diffusion steps and noise
    slots: SlotLabels | None = None  # object-slot targets (a model with object slots)
    grounding: GroundingTargets | None = None  # with ``head``: the auxiliary grounding loss
    head: GroundingHead | None = None
    object_loss_weight: float = 1.0
    grounding_weight: float = 0.0

    def losses(self, model: OctoModel, batch: dict, ticks) -> dict[str, torch.Tensor]:
        """ "diffusion" always; "object" with object slots when the batch holds labelled ticks;
        "grounding" with the grounding head."""
        if self.slots is None:
            readout = last_readout(model, batch, self.text, self.text_mask)
        else:
            readout, objects = last_readout(model, batch, self.text, self.text_mask, with_objects=True)
        out = {
            "diffusion": diffusion_loss(
                model, readout, batch, self.alpha_bars, self.normalise, self.generator
            )
        }
        if self.slots is not None:
            labelled = torch.from_numpy(self.slots.mask[ticks])
            if labelled.any():
                located = model.object_slots.locate(objects[labelled])
                out["object"] = localisation_loss(
                    located, torch.from_numpy(self.slots.targets[ticks])[labelled]
                )
        if self.head is not None:
            out["grounding"] = grounding_loss(self.head(readout), *self.grounding.batch(ticks))
        return out

    def total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return total_loss(losses, {"object": self.object_loss_weight, "grounding": self.grounding_weight})
