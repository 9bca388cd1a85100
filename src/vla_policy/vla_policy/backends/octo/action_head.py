"""Octo's diffusion action head: an MLP-ResNet that predicts the noise, and its sampler.

Score network (``ScoreActor`` in Octo): learnable Fourier features of the diffusion step
t -> [cos(2 pi t W^T) | sin(2 pi t W^T)] (``time_dim`` = 32), then Dense 64 -> swish -> Dense 32;
the input [time | readout embedding | noisy actions (horizon * dim = 28)] goes through Dense 256,
3 x [LayerNorm -> Dense 1024 -> swish -> Dense 256, residual], swish, Dense 28: epsilon.

Schedule: the cosine schedule of Nichol & Dhariwal (2021), s = 0.008, betas clipped to 0.999
(``cosine_beta_schedule``). diffusers' ``squaredcos_cap_v2`` is the same discretisation: it skips
the normalisation by alpha_bar(0), which cancels in each ratio, and computes in float64 before
casting to float32 (Octo computes in float32), so the betas agree to about 1e-7.

Sampling, DDPM (Octo's ``predict_action``, written out here): x_T ~ N(0, I); for t = T-1 .. 0,
x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alphabar_t) eps) + [t > 0] sqrt(beta_t) z, then
clip to +-max_action, with the schedule's constants in float32 as Octo has them. That is DDPM with
the "fixed_large" variance (sigma_t^2 = beta_t) of diffusers' ``DDPMScheduler`` (which computes the
same mean through x0; on the cross-check's chunk the two agree to 3e-6), written out here so that the
draws can be given. With fewer steps than the schedule the steps are strided as there ("leading"
spacing) and alpha_t becomes alphabar_t / alphabar_prev. DDIM (eta = 0, deterministic; diffusers'
``DDIMScheduler``) with fewer steps is the faster alternative. The Gaussian draws come from a
torch.Generator, or are given (``noise``) to replay another implementation's draws exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_policy.backends.octo.config import SCHEDULERS, OctoConfig
from vla_policy.backends.octo.realtime_chunking import PrefixGuide, guided_step, pin_frozen


def cosine_beta_schedule(steps: int, s: float = 0.008, dtype: Any = np.float64) -> np.ndarray:
    """Octo's betas: alphabar(t) = cos^2((t/T + s) / (1 + s) * pi/2) / alphabar(0), clipped to 0.999,
    computed in ``dtype`` (Octo: float32)."""
    t = np.linspace(0.0, steps, steps + 1, dtype=dtype) / dtype(steps)
    alpha_bar = np.cos((t + s) / (1 + s) * np.pi * 0.5) ** 2
    alpha_bar = alpha_bar / alpha_bar[0]
    return np.clip(1.0 - alpha_bar[1:] / alpha_bar[:-1], 0.0, 0.999)


class FourierFeatures(nn.Module):
    """Learnable Fourier features of a scalar: (..., 1) -> (..., time_dim), in the input's dtype.

    Computed in float32 whatever the model's dtype, with the kernel kept in float32: the phase
    2 pi t w reaches ~100 rad for t = 19, so a bfloat16 kernel (8-bit mantissa) moves cos/sin by up
    to ~0.25, and a TF32 matmul (10 bits) by ~0.05; the product is elementwise (the inner dimension
    is 1), exact in float32.
    """

    def __init__(self, time_dim: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(time_dim // 2, 1) * 0.2)

    def _apply(self, fn: Any, recurse: bool = True) -> FourierFeatures:
        kernel = self.kernel.data
        super()._apply(fn, recurse)  # .to(device, dtype), .half(), ...: take the device only
        if self.kernel.dtype != torch.float32:
            self.kernel.data = kernel.to(device=self.kernel.device, dtype=torch.float32)
        return self

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * t.float() * self.kernel.T  # (..., 1) * (1, time_dim / 2)
        return torch.cat([torch.cos(f), torch.sin(f)], dim=-1).to(t.dtype)


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


class DDPMSteps:
    """Octo's DDPM step (see the module docstring) on ``num_steps`` of the ``diffusion_steps``
    schedule, strided as diffusers' "leading" spacing: timesteps T - r, ..., r, 0 with r = T // n."""

    def __init__(self, diffusion_steps: int, num_steps: int, prediction_type: str = "epsilon") -> None:
        if not 1 <= num_steps <= diffusion_steps:
            raise ValueError(
                f"num_steps must be in 1..{diffusion_steps} (the trained schedule), got {num_steps}"
            )
        self.prediction_type = prediction_type
        self.betas = cosine_beta_schedule(diffusion_steps, dtype=np.float32)
        self.alphas = np.float32(1.0) - self.betas
        self.alpha_hats = np.cumprod(self.alphas, dtype=np.float32)
        self.stride = diffusion_steps // num_steps
        self.timesteps = [int(t) for t in (np.arange(num_steps) * self.stride)[::-1]]

    def step(self, predicted: torch.Tensor, t: int, x: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """x_t -> x_{t-1} (before the clip); ``z`` the Gaussian draw, unused at t = 0."""
        alpha_hat = self.alpha_hats[t]
        if self.stride == 1:  # Octo's own constants
            alpha, beta = self.alphas[t], self.betas[t]
        else:
            previous = self.alpha_hats[t - self.stride] if t >= self.stride else np.float32(1.0)
            alpha = alpha_hat / previous
            beta = np.float32(1.0) - alpha
        eps = predicted
        if self.prediction_type == "sample":  # the head gave x0: the noise it implies
            eps = (x - float(np.sqrt(alpha_hat)) * predicted) / float(np.sqrt(1 - alpha_hat))
        alpha_1 = float(1 / np.sqrt(alpha))  # Octo's expressions, in float32
        alpha_2 = float((1 - alpha) / np.sqrt(1 - alpha_hat))
        x = alpha_1 * (x - alpha_2 * eps)
        if t > 0:
            x = x + float(np.sqrt(beta)) * z
        return x


class DiffusionSampler:
    """Draws action chunks from the head: Octo's DDPM, or DDIM through diffusers; Gaussian draws
    from a seeded torch.Generator or given."""

    def __init__(self, config: OctoConfig, kind: str | None = None, num_steps: int | None = None) -> None:
        self.kind = kind or config.scheduler
        self.num_steps = int(num_steps or config.num_inference_steps)
        self.max_action = config.max_action
        self.shape = (config.action_horizon, config.action_dim)
        if self.kind == "ddpm":
            self.ddpm = DDPMSteps(config.diffusion_steps, self.num_steps, config.prediction_type)
            self.timesteps = self.ddpm.timesteps
        else:
            self.scheduler = make_scheduler(
                self.kind, config.diffusion_steps, self.num_steps, config.prediction_type
            )
            self.timesteps = [int(t) for t in self.scheduler.timesteps]

    def noise_shape(self, batch: int) -> tuple[int, int, int]:
        """The draws one chunk takes: x_T, then one per step (the last step's is not used)."""
        return (len(self.timesteps) + 1, batch, self.shape[0] * self.shape[1])

    @torch.no_grad()
    def sample(
        self,
        head: DiffusionActionHead,
        embedding: torch.Tensor,
        generator: torch.Generator | None,
        noise: torch.Tensor | None = None,
        guide: PrefixGuide | None = None,
    ) -> torch.Tensor:
        """embedding (B, width) -> normalised actions (B, horizon, dim), float32.

        ``noise`` (``noise_shape(B)``): x_T and each step's z, used instead of drawing from
        ``generator`` (e.g. the sequence another implementation drew). ``guide``: real-time chunking,
        the chunk inpainted toward the previous chunk's frozen prefix and overlap after each step
        (``realtime_chunking``); it takes no extra draws."""
        batch, device = embedding.shape[0], embedding.device
        expected = self.noise_shape(batch)
        if noise is not None and tuple(noise.shape) != expected:
            raise ValueError(f"noise: expected shape {list(expected)}, got {list(noise.shape)}")
        if noise is None and generator is None:
            raise ValueError("DiffusionSampler.sample: give a generator or the noise")

        def draw(index: int) -> torch.Tensor:
            if noise is not None:
                return noise[index].to(device=device, dtype=torch.float32)
            return torch.randn(expected[1:], generator=generator, device=device, dtype=torch.float32)

        x = draw(0)
        if guide is not None:
            target, weights = guide.flat(batch, *self.shape, device)
            x_start = x
            x = guided_step(x, target, weights, self._alpha_bar(self.timesteps[0]), x_start)
        for index, t in enumerate(self.timesteps, start=1):
            time = torch.full((batch, 1), float(t), device=device, dtype=embedding.dtype)
            predicted = head(embedding, x.to(embedding.dtype), time).float()  # noise or clean chunk
            z = None
            if self.kind == "ddpm":
                z = draw(index) if t > 0 else None
                x = self.ddpm.step(predicted, t, x, z)
            else:  # DDIM, eta = 0: no draw after x_T
                x = self.scheduler.step(predicted, t, x).prev_sample
            x = x.clamp(-self.max_action, self.max_action)
            if guide is not None:  # x is now at the next timestep's level (clean after the last)
                level = self._alpha_bar(self.timesteps[index]) if index < len(self.timesteps) else 1.0
                x = guided_step(x, target, weights, level, x_start if z is None else z)
        if guide is not None:
            x = pin_frozen(x, target, guide.frozen, self.shape[1])
        return x.reshape(batch, *self.shape)

    def _alpha_bar(self, t: int) -> float:
        """alphabar_t of the schedule the sampler steps on (Octo's float32 constants for DDPM)."""
        if self.kind == "ddpm":
            return float(self.ddpm.alpha_hats[t])
        return float(self.scheduler.alphas_cumprod[t])
