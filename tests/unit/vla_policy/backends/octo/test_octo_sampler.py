"""The diffusion head's schedule and sampler against the published equations (Octo's predict_action)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.action_head import (
    DiffusionActionHead,
    DiffusionSampler,
    cosine_beta_schedule,
    make_scheduler,
)
from vla_policy.backends.octo.config import octo_preset


@pytest.fixture()
def head_and_embedding():
    config = octo_preset("tiny")
    torch.manual_seed(0)
    head = DiffusionActionHead(config).eval()
    embedding = torch.randn(2, config.width) * 0.5
    return config, head, embedding


def test_cosine_schedule_is_octos_and_equals_diffusers_squaredcos_cap_v2():
    betas = cosine_beta_schedule(20)
    # Octo: s = 0.008, alphabar normalised by alphabar(0), clipped to 0.999 (the last step hits the clip)
    assert betas[-1] == pytest.approx(0.999)
    assert betas[0] == pytest.approx(0.0079927, abs=1e-6)
    assert np.all(np.diff(betas) > 0)
    diffusers_betas = make_scheduler("ddpm", 20, 20).betas.numpy().astype(np.float64)
    # The only difference: diffusers rounds float64 -> float32 once (Octo computes in float32).
    np.testing.assert_allclose(diffusers_betas, betas, rtol=0, atol=1e-7)


def test_ddpm_sampler_follows_the_posterior_step_equation(head_and_embedding):
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config, "ddpm", 20)
    got = sampler.sample(head, embedding, torch.Generator().manual_seed(3))

    # Reference, written from the equation with the same noise sequence (x_T, then z per step t > 0):
    # x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alphabar_t) eps) + sqrt(beta_t) z, clip +-5.
    betas = cosine_beta_schedule(config.diffusion_steps)
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    generator = torch.Generator().manual_seed(3)
    x = torch.randn((2, 28), generator=generator).double()
    for t in range(config.diffusion_steps - 1, -1, -1):
        time = torch.full((2, 1), float(t))
        with torch.no_grad():
            eps = head(embedding, x.float(), time).double()
        x = (x - betas[t] / np.sqrt(1 - alpha_bars[t]) * eps) / np.sqrt(alphas[t])
        if t > 0:
            x = x + np.sqrt(betas[t]) * torch.randn((2, 28), generator=generator).double()
        x = x.clamp(-config.max_action, config.max_action)
    expected = x.reshape(2, config.action_horizon, config.action_dim).float()
    assert got.shape == (2, 4, 7)
    assert not torch.all(got.abs() == config.max_action), "every value clipped: the comparison says nothing"
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)


def test_sampler_is_deterministic_under_a_seed_and_varies_across_seeds(head_and_embedding):
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config)
    first = sampler.sample(head, embedding, torch.Generator().manual_seed(1))
    again = sampler.sample(head, embedding, torch.Generator().manual_seed(1))
    other = sampler.sample(head, embedding, torch.Generator().manual_seed(2))
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.allclose(first, other)


def test_ddim_with_10_steps_works_and_differs_from_ddpm(head_and_embedding):
    config, head, embedding = head_and_embedding
    ddim = DiffusionSampler(config, "ddim", 10)
    assert len(ddim.scheduler.timesteps) == 10
    a = ddim.sample(head, embedding, torch.Generator().manual_seed(0))
    b = ddim.sample(head, embedding, torch.Generator().manual_seed(0))
    ddpm = DiffusionSampler(config, "ddpm", 20).sample(head, embedding, torch.Generator().manual_seed(0))
    assert a.shape == (2, 4, 7) and torch.all(torch.isfinite(a))
    assert a.abs().max() <= config.max_action
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, ddpm)


def test_fewer_ddpm_steps_use_a_strided_schedule(head_and_embedding):
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config, "ddpm", 5)
    assert sampler.timesteps == [16, 12, 8, 4, 0]  # diffusers' "leading" spacing
    assert make_scheduler("ddpm", 20, 5).timesteps.tolist() == sampler.timesteps
    assert torch.all(torch.isfinite(sampler.sample(head, embedding, torch.Generator().manual_seed(0))))


def test_strided_ddpm_steps_are_diffusers_fixed_large_posterior(head_and_embedding):
    """With fewer steps than the schedule, each step is DDPM's posterior between the strided
    timesteps (alpha_t = alphabar_t / alphabar_prev), as diffusers' DDPMScheduler computes it."""
    config, head, embedding = head_and_embedding
    sampler = DiffusionSampler(config, "ddpm", 5)
    noise = torch.randn(sampler.noise_shape(2), generator=torch.Generator().manual_seed(5))
    got = sampler.sample(head, embedding, None, noise=noise)
    scheduler = make_scheduler("ddpm", 20, 5)
    x = noise[0].clone()
    for index, t in enumerate(scheduler.timesteps.tolist(), start=1):
        with torch.no_grad():
            eps = head(embedding, x, torch.full((2, 1), float(t)))
        mean = scheduler.step(eps, t, x, generator=torch.Generator().manual_seed(0)).prev_sample
        if t > 0:  # replace diffusers' own draw by ours: its variance is beta_t (fixed_large)
            beta = 1 - scheduler.alphas_cumprod[t] / scheduler.alphas_cumprod[t - 4]
            drawn = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
            mean = mean - beta.sqrt() * drawn + beta.sqrt() * noise[index]
        x = mean.clamp(-config.max_action, config.max_action)
    torch.testing.assert_close(got, x.reshape(2, 4, 7), atol=2e-4, rtol=1e-4)


def test_given_noise_replays_the_generators_draws_and_is_checked(head_and_embedding):
    config, head, embedding = head_and_embedding
    for kind, steps in (("ddpm", 20), ("ddim", 10)):
        sampler = DiffusionSampler(config, kind, steps)
        drawn = sampler.sample(head, embedding, torch.Generator().manual_seed(9))
        generator = torch.Generator().manual_seed(9)  # the same draws, in the sampler's order
        noise = torch.stack([torch.randn((2, 28), generator=generator) for _ in range(steps + 1)])
        if kind == "ddpm":  # no draw at t = 0
            noise[-1] = float("nan")
        given = sampler.sample(head, embedding, None, noise=noise)
        torch.testing.assert_close(drawn, given, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"noise: expected shape \[11, 2, 28\], got \[11, 1, 28\]"):
        sampler.sample(head, embedding, None, noise=torch.zeros(11, 1, 28))
    with pytest.raises(ValueError, match="generator or the noise"):
        sampler.sample(head, embedding, None)


def test_bad_scheduler_settings_name_the_value():
    with pytest.raises(ValueError, match="euler"):
        make_scheduler("euler", 20, 20)
    with pytest.raises(ValueError, match="num_steps"):
        make_scheduler("ddpm", 20, 21)


def test_head_layout_matches_octo(head_and_embedding):
    config = octo_preset("small")
    head = DiffusionActionHead(config)
    assert head.time_preprocess.kernel.shape == (16, 1)
    assert head.cond_encoder.dense_0.weight.shape == (64, 32)
    assert head.cond_encoder.dense_1.weight.shape == (32, 64)
    assert head.reverse_network.input.weight.shape == (256, 32 + 384 + 28)
    assert len(head.reverse_network.blocks) == 3
    assert head.reverse_network.blocks[0].dense_0.weight.shape == (1024, 256)
    assert head.reverse_network.output.weight.shape == (28, 256)


def test_sample_prediction_returns_the_heads_clean_chunk(head_and_embedding):
    """With prediction_type "sample" the head's output is x0: a head that always answers c makes
    the DDIM sampler land on c whatever the noise."""
    config, _, embedding = head_and_embedding
    config = octo_preset("tiny", prediction_type="sample", scheduler="ddim", num_inference_steps=10)
    target = torch.linspace(-1.0, 1.0, config.action_horizon * config.action_dim)

    class ConstantHead(torch.nn.Module):
        flat_dim = config.action_horizon * config.action_dim

        def forward(self, embedding, noisy, time):
            return target.expand(len(embedding), -1)

    sampler = DiffusionSampler(config)
    assert sampler.scheduler.config.prediction_type == "sample"
    out = sampler.sample(ConstantHead(), embedding, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.reshape(2, -1), target.expand(2, -1), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="prediction_type"):
        octo_preset("tiny", prediction_type="v")
