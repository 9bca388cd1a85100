"""Octo's diffusion action head: an MLP-ResNet that predicts the noise, and its sampler.

Score network (``ScoreActor`` in Octo): learnable Fourier features of the diffusion step
t -> [cos(2 pi t W^T) | sin(2 pi t W^T)] (``time_dim`` = 32), then Dense 64 -> swish -> Dense 32;
the input [time | readout embedding | noisy actions (horizon * dim = 28)] goes through Dense 256,
3 x [LayerNorm -> Dense 1024 -> swish -> Dense 256, residual], swish, Dense 28: epsilon.

Schedule: the cosine schedule of Nichol & Dhariwal (2021), s = 0.008, betas clipped to 0.999
(``cosine_beta_schedule``). diffusers' ``squaredcos_cap_v2`` is the same discretisation: it skips
the normalisation by alpha_bar(0), which cancels in each ratio, and computes in float64 before
casting to float32 (Octo computes in float32), so the betas agree to about 1e-7.

Sampling (Octo's ``predict_action``): x_T ~ N(0, I); for t = T-1 .. 0,
x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alphabar_t) eps) + [t > 0] sqrt(beta_t) z, then
clip to +-max_action. That is DDPM with the "fixed_large" variance (sigma_t^2 = beta_t), which
diffusers' ``DDPMScheduler(variance_type="fixed_large", clip_sample=False)`` computes through the
x0 form of the same posterior mean; the +-max_action clip is applied here after each step. DDIM
(eta = 0, deterministic) with fewer steps is the faster alternative.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_policy.backends.octo.config import SCHEDULERS, OctoConfig


def cosine_beta_schedule(steps: int, s: float = 0.008) -> np.ndarray:
    """Octo's betas: alphabar(t) = cos^2((t/T + s) / (1 + s) * pi/2) / alphabar(0), clipped to 0.999."""
    t = np.linspace(0.0, steps, steps + 1) / steps
    alpha_bar = np.cos((t + s) / (1 + s) * np.pi * 0.5) ** 2
    alpha_bar = alpha_bar / alpha_bar[0]
    return np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)


class FourierFeatures(nn.Module):
    """Learnable Fourier features of a scalar: (..., 1) -> (..., time_dim)."""

    def __init__(self, time_dim: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(time_dim // 2, 1) * 0.2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t @ self.kernel.T
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class TimeMLP(nn.Module):
    """Dense(2 * time_dim) -> swish -> Dense(time_dim) (no activation after the last layer)."""

    def __init__(self, time_dim: int) -> None:
        super().__init__()
        self.dense_0 = nn.Linear(time_dim, 2 * time_dim)
        self.dense_1 = nn.Linear(2 * time_dim, time_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_1(F.silu(self.dense_0(x)))


class MLPResNetBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(features, eps=1e-6)
        self.dense_0 = nn.Linear(features, 4 * features)
        self.dense_1 = nn.Linear(4 * features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dense_1(F.silu(self.dense_0(self.norm(x))))


class MLPResNet(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, num_blocks: int, out_dim: int) -> None:
        super().__init__()
        self.input = nn.Linear(in_dim, hidden_dim)
        self.blocks = nn.ModuleList(MLPResNetBlock(hidden_dim) for _ in range(num_blocks))
        self.output = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        for block in self.blocks:
            x = block(x)
        return self.output(F.silu(x))


class DiffusionActionHead(nn.Module):
    """(readout embedding, noisy flat actions, diffusion step) -> the predicted noise, or the
    predicted clean chunk when ``OctoConfig.prediction_type`` is "sample"."""

    def __init__(self, config: OctoConfig) -> None:
        super().__init__()
        self.flat_dim = config.action_horizon * config.action_dim
        self.time_preprocess = FourierFeatures(config.time_dim)
        self.cond_encoder = TimeMLP(config.time_dim)
        self.reverse_network = MLPResNet(
            config.time_dim + config.width + self.flat_dim,
            config.head_hidden_dim,
            config.head_num_blocks,
            self.flat_dim,
        )

    def forward(
        self, embedding: torch.Tensor, noisy_actions: torch.Tensor, time: torch.Tensor
    ) -> torch.Tensor:
        """embedding (B, width), noisy_actions (B, horizon * dim), time (B, 1) as float step indices."""
        time_features = self.cond_encoder(self.time_preprocess(time))
        return self.reverse_network(torch.cat([time_features, embedding, noisy_actions], dim=-1))


def make_scheduler(
    kind: str, diffusion_steps: int, num_inference_steps: int, prediction_type: str = "epsilon"
) -> Any:
    """A diffusers scheduler on the cosine schedule with Octo's variance; the head predicts
    ``prediction_type`` ("epsilon": the noise, as Octo; "sample": the clean chunk)."""
    # lazy: diffusers takes over a second to import and only the sampler needs it; training imports
    # this module without sampling
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind not in SCHEDULERS:
        raise ValueError(f"scheduler '{kind}' is not one of {SCHEDULERS}")
    if not 1 <= num_inference_steps <= diffusion_steps:
        raise ValueError(
            f"num_steps must be in 1..{diffusion_steps} (the trained schedule), got {num_inference_steps}"
        )
    common = dict(
        num_train_timesteps=diffusion_steps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,
        clip_sample=False,  # Octo clips the sample (+-max_action) after each step, not x0
    )
    if kind == "ddpm":
        scheduler = DDPMScheduler(variance_type="fixed_large", **common)
    else:
        scheduler = DDIMScheduler(set_alpha_to_one=True, **common)
    scheduler.set_timesteps(num_inference_steps)
    return scheduler


class DiffusionSampler:
    """Draws action chunks from the head with a diffusers scheduler and a seeded torch.Generator."""

    def __init__(self, config: OctoConfig, kind: str | None = None, num_steps: int | None = None) -> None:
        self.kind = kind or config.scheduler
        self.num_steps = int(num_steps or config.num_inference_steps)
        self.max_action = config.max_action
        self.shape = (config.action_horizon, config.action_dim)
        self.scheduler = make_scheduler(
            self.kind, config.diffusion_steps, self.num_steps, config.prediction_type
        )

    @torch.no_grad()
    def sample(
        self, head: DiffusionActionHead, embedding: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """embedding (B, width) -> normalised actions (B, horizon, dim), float32."""
        batch = embedding.shape[0]
        x = torch.randn(
            (batch, head.flat_dim), generator=generator, device=embedding.device, dtype=torch.float32
        )
        for t in self.scheduler.timesteps:
            time = torch.full((batch, 1), float(t), device=embedding.device, dtype=embedding.dtype)
            predicted = head(embedding, x.to(embedding.dtype), time).float()  # noise or clean chunk
            x = self.scheduler.step(predicted, int(t), x, generator=generator).prev_sample
            x = x.clamp(-self.max_action, self.max_action)
        return x.reshape(batch, *self.shape)
