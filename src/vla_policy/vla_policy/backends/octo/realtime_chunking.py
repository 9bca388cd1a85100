"""Training-free real-time chunking (RTC) for Octo's diffusion head: inpaint the new chunk toward
the previous chunk's actions that will run while this inference runs.

While a chunk is being sampled the robot keeps executing the previous one. When the new chunk
arrives a latency L after its frame, the actuation starts it at the step its arrival belongs to
(the chunk executor's half-step rule: d = floor(L / dt + 1/2),
``vla_policy.inference_schedule.frozen_prefix_steps``), so its first d actions are already
decided: the previous chunk's actions at those times (the *frozen prefix*). The steps after them
that the previous chunk also covers (the *overlap*) should bend toward it, so that the join is
smooth, while the rest (the *fresh tail*) is the policy's own. ``soft_mask`` (defined in
``vla_policy.chunk_join``, shared with the blend of backends that do not guide) gives the weight of
each chunk step: 1 on the frozen prefix, decaying exponentially over the overlap as in Black et al.
(2025), "Real-Time Execution of Action Chunking Flow Policies", eq. 5:
w_i = c_i (e^{c_i} - 1) / (e - 1), c_i = (d + overlap - i) / (overlap + 1), and 0 on the tail.

Guidance here is diffusion inpainting in the *replacement* form (RePaint-style, without
resampling): after each denoising step, whose result x sits at the noise level alphabar of the
next timestep (1 after the last step),
    x <- w * (sqrt(alphabar) * target + sqrt(1 - alphabar) * eps) + (1 - w) * x,
with eps the Gaussian draw the sampler used for that step (DDPM's z; x_T itself for the initial
noise and for DDIM, which draws nothing after x_T), so the constrained steps carry the same noise
as the rest of the chunk and no extra draws are taken (the generator's stream is unchanged). At
the end the frozen prefix is set to the target exactly: those actions run whatever the sampler says.

This is the training-free replacement variant, *not* the pi-GDM gradient guidance of the paper:
pi-GDM back-propagates through the score network at every denoising step (a vector-Jacobian
product per step, with the activations kept), which on this 2-core CPU would cost about as much
again as the sampling itself and defeat the point of hiding latency. Replacement guidance costs
one blend per step and needs no gradients; it is weaker on the overlap (the network sees the
constraint only through the noisy input, not through its own prediction), which the soft mask's
decay partly compensates by pinning the overlap's clean end directly.

Everything here works in the *normalised* action space the head samples in: normalise the
previous chunk with the checkpoint's statistics (``normalize_actions``, the inverse of
``processor.unnormalize_actions``) before building the guide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vla_common.action_space import NormStats
from vla_policy.chunk_join import JoinExtent, check_committed_dim, join_extent, soft_mask
from vla_policy.contract import CommittedActions

__all__ = ["PrefixGuide", "guided_step", "normalize_actions", "pin_frozen", "soft_mask"]


def normalize_actions(actions: np.ndarray, stats: NormStats) -> np.ndarray:
    """The inverse of ``processor.unnormalize_actions``: (a - mean) / std where the stats' mask is
    True, else a (the gripper, absolute 0..1); float64."""
    if not stats.mean or not stats.std:
        raise ValueError("norm stats lack mean/std, which Octo's normalisation needs ((a - mean) / std)")
    actions = np.asarray(actions, dtype=np.float64)
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    if actions.shape[-1] != mean.shape[0]:
        raise ValueError(f"action dim {actions.shape[-1]} does not match the {mean.shape[0]} norm stats")
    if np.any(std[np.asarray(stats.mask, dtype=bool)] <= 0):
        raise ValueError(f"norm stats std must be > 0 where normalised, got {stats.std}")
    safe_std = np.where(std > 0, std, 1.0)
    return np.where(np.asarray(stats.mask, dtype=bool), (actions - mean) / safe_std, actions)


@dataclass(frozen=True)
class PrefixGuide:
    """What the sampler is guided toward: ``target`` (horizon, dim) or (batch, horizon, dim), in
    normalised action space, and the per-step ``weights`` (horizon,) of ``soft_mask``; the first
    ``frozen`` steps come out equal to the target. Rows of the target past the frozen prefix and
    overlap (weight 0) are ignored; fill them with anything finite."""

    target: torch.Tensor
    weights: torch.Tensor
    frozen: int

    @classmethod
    def build(cls, target: np.ndarray | torch.Tensor, frozen: int, overlap: int) -> PrefixGuide:
        target = torch.as_tensor(np.asarray(target, dtype=np.float32))
        if target.ndim not in (2, 3):
            raise ValueError(
                f"PrefixGuide: target must be (horizon, dim) or (batch, horizon, dim), got shape "
                f"{list(target.shape)}"
            )
        if not torch.all(torch.isfinite(target)):
            bad = torch.nonzero(~torch.isfinite(target))[0].tolist()
            raise ValueError(
                f"PrefixGuide: target must be finite, got {target[tuple(bad)].item()} at index {bad}; "
                "normalise the previous chunk with the checkpoint's mean/std"
            )
        weights = soft_mask(frozen, overlap, target.shape[-2])
        return cls(target=target, weights=torch.as_tensor(weights, dtype=torch.float32), frozen=frozen)

    @classmethod
    def from_previous(
        cls, previous: np.ndarray | torch.Tensor, executed: int, frozen: int, horizon: int
    ) -> PrefixGuide:
        """Guide from the previous chunk (normalised, (horizon_prev, dim)) of which ``executed``
        actions had run when this inference started: the new chunk's step i lines up with the
        previous chunk's step executed + i. The first ``frozen`` of them are frozen and the rest of
        the previous chunk is the overlap."""
        previous = np.asarray(previous, dtype=np.float32)
        if previous.ndim != 2:
            raise ValueError(f"previous chunk must be (horizon, dim), got shape {list(previous.shape)}")
        if not 0 <= executed <= previous.shape[0]:
            raise ValueError(f"executed={executed} must be in 0..{previous.shape[0]} (the previous chunk)")
        remaining = previous[executed:]
        if frozen > remaining.shape[0]:
            raise ValueError(
                f"frozen={frozen} steps but the previous chunk has only {remaining.shape[0]} left after "
                f"executed={executed}: the robot would run out of actions during inference"
            )
        overlap = min(remaining.shape[0], horizon) - frozen
        target = np.zeros((horizon, previous.shape[1]), dtype=np.float32)
        target[: min(remaining.shape[0], horizon)] = remaining[:horizon]
        return cls.build(target, frozen, overlap)

    @classmethod
    def from_committed(
        cls, committed: CommittedActions, stats: NormStats, horizon: int
    ) -> tuple[PrefixGuide, JoinExtent]:
        """Guide a chunk of the model's ``horizon`` steps toward the committed actions
        (``contract.CommittedActions``, unnormalised: normalised here with ``stats``), with the
        frozen prefix and overlap of ``chunk_join.join_extent`` (a frozen prefix covering the whole
        chunk is clamped to ``horizon - 1``: the extent says so)."""
        check_committed_dim(committed, len(stats.mean))
        extent = join_extent(committed, horizon)
        covered = extent.frozen + extent.overlap
        target = np.zeros((horizon, committed.actions.shape[1]), dtype=np.float32)
        target[:covered] = normalize_actions(committed.actions[:covered], stats)
        return cls.build(target, extent.frozen, extent.overlap), extent

    def flat(
        self, batch: int, horizon: int, dim: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target (batch, horizon * dim), weights (horizon * dim,)) on ``device``, checked against
        the sampler's chunk shape."""
        if tuple(self.target.shape[-2:]) != (horizon, dim) or (
            self.target.ndim == 3 and self.target.shape[0] != batch
        ):
            raise ValueError(
                f"PrefixGuide: target shape {list(self.target.shape)} does not match the sampler's "
                f"chunk ({horizon}, {dim}) for a batch of {batch}"
            )
        target = self.target.to(device).reshape(-1, horizon * dim).expand(batch, -1)
        weights = self.weights.to(device).repeat_interleave(dim)
        return target, weights


def guided_step(
    x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, alpha_bar: float, eps: torch.Tensor
) -> torch.Tensor:
    """One replacement-inpainting blend: x <- w q(target | alphabar, eps) + (1 - w) x, where
    q = sqrt(alphabar) target + sqrt(1 - alphabar) eps is the target noised to x's level with the
    step's own draw. With w = 0 everywhere x comes back bit for bit."""
    noised = math.sqrt(alpha_bar) * target + math.sqrt(max(0.0, 1.0 - alpha_bar)) * eps
    return weights * noised + (1.0 - weights) * x


def pin_frozen(x: torch.Tensor, target: torch.Tensor, frozen: int, dim: int) -> torch.Tensor:
    """The frozen prefix (the first ``frozen`` steps, flat (batch, horizon * dim)) set to the target
    exactly."""
    out = x.clone()
    out[:, : frozen * dim] = target[:, : frozen * dim]
    return out
