"""Train an Octo-style policy on sim demonstrations: diffusion on action chunks, frozen MiniLM text.

Octo's recipe at a small size: epsilon-prediction MSE on the normalised 4 x 7 chunk at a uniformly
drawn step of the 20-step cosine schedule, AdamW with linear warm-up and cosine decay, gradient
clipping, an exponential moving average of the weights (the EMA is what is saved), DrQ random
shifts of the images. The text encoder is frozen, so each instruction is encoded once up front.

Episodes can be drawn unevenly: ``train(config, episode_weight)`` takes a weight per (seed, family),
e.g. to show the scenes where only the instruction's shape word tells two objects apart more often.

``train(TrainConfig)`` writes ``<out_dir>/`` (config.json, model.safetensors, norm_stats.json: the
Octo checkpoint layout), ``training_log.json`` and a loss-curve PNG.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vla_policy.backends.octo.action_head import cosine_beta_schedule
from vla_policy.backends.octo.checkpoint import save_octo_checkpoint
from vla_policy.backends.octo.config import octo_preset
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.tokenizers import load_text_tokenizer, tokenize_instructions
from vla_policy.training.demo_dataset import action_stats, load_demonstrations, sample_batch

STATS_KEY = "widowx_sim"


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    model_size: str = "sim"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    steps: int = 20000
    batch_size: int = 64
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    shift_px: dict[str, int] = field(default_factory=lambda: {"primary": 6, "wrist": 4})
    val_fraction: float = 0.05
    val_every: int = 500
    threads: int = 2
    seed: int = 0
    max_episodes: int | None = None
    time_limit_min: float | None = None  # stop early (and still save) after this much wall time
    # Start from this checkpoint's architecture and weights (fine-tuning / continuing a run) instead
    # of model_size + model_overrides at random initialisation; the action statistics are the data's.
    init_from: str | None = None
    loss_plot: str | None = None  # PNG path; default <out_dir>/loss.png

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "warmup_steps", "val_every", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"train.learning_rate: expected a value in (0, 1), got {self.learning_rate!r}")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"train.val_fraction: expected [0, 0.5), got {self.val_fraction!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay: expected [0, 1), got {self.ema_decay!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown train setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def diffusion_loss(
    model: OctoModel,
    batch: dict,
    text: torch.Tensor,
    text_mask: torch.Tensor,
    alpha_bars: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    norm_mask: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Octo's loss: MSE between the noise (or, for prediction_type "sample", the clean normalised
    chunk) and the head's prediction at a uniformly drawn diffusion step."""
    ids = batch["instruction_id"]
    readout = model(
        batch["images"], text[ids], batch["timestep_mask"], proprio=batch["proprio"], text_mask=text_mask[ids]
    )[:, -1]
    actions = batch["actions"]
    normalized = torch.where(norm_mask, (actions - mean) / std, actions)
    x0 = normalized.reshape(len(actions), -1)
    steps = torch.randint(0, len(alpha_bars), (len(actions), 1), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    ab = alpha_bars[steps]
    noisy = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    predicted = model.action_head(readout, noisy, steps.float())
    target = x0 if model.config.prediction_type == "sample" else noise
    return F.mse_loss(predicted, target)


# (episode seed, family) -> how many times as often its ticks are drawn as an unweighted episode's
EpisodeWeight = Callable[[int, str], float]


def train(config: TrainConfig, episode_weight: EpisodeWeight | None = None) -> dict:
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if config.init_from:
        from vla_policy.backends.octo.checkpoint import load_octo_checkpoint

        model = load_octo_checkpoint(config.init_from).model
        model_config = model.config
        print(f"[train] continuing from {config.init_from}")
    else:
        model_config = octo_preset(config.model_size, **config.model_overrides)
        model = OctoModel(model_config)
    demos = load_demonstrations(config.data_dir, model_config.cameras, config.max_episodes)

    # Validation: whole episodes, never seen by the optimiser.
    n_episodes = len(demos.episode_seeds)
    n_val = int(round(n_episodes * config.val_fraction))
    order = rng.permutation(n_episodes)
    val_ticks = demos.subset_episodes(order[:n_val])
    train_ticks = demos.subset_episodes(order[n_val:])
    draw_p, weighting = None, None
    if episode_weight is not None:
        pairs = zip(demos.episode_seeds, demos.families, strict=True)
        weights = np.array([episode_weight(seed, family) for seed, family in pairs])
        draw_p = demos.draw_probabilities(train_ticks, weights)
        heavier = weights[demos.episode_of_tick()[train_ticks]] > 1
        weighting = {
            "episodes_weighted_up": int((weights > 1).sum()),
            "share_of_draws": round(float(draw_p[heavier].sum()), 3),
            "share_of_ticks": round(float(heavier.mean()), 3),
        }
        print(f"[train] weighted sampling: {weighting}")
    stats = action_stats(demos.actions[train_ticks])
    mean = torch.tensor(stats.mean, dtype=torch.float32)
    std = torch.tensor(stats.std, dtype=torch.float32)
    norm_mask = torch.tensor(stats.mask)
    if model_config.proprio_dim:
        proprio = demos.proprio[train_ticks][:, : model_config.proprio_dim]
        model.proprio_mean.copy_(torch.from_numpy(proprio.mean(axis=0)))
        model.proprio_std.copy_(torch.from_numpy(np.maximum(proprio.std(axis=0), 1e-3)))

    tokenizer = load_text_tokenizer(model_config)
    tokens = tokenize_instructions(tokenizer, demos.instructions, model_config.text_tokens)
    text = model.encode_text(**tokens)  # frozen: once per distinct instruction
    text_mask = tokens["attention_mask"]
    alpha_bars = torch.from_numpy(
        np.cumprod(1.0 - cosine_beta_schedule(model_config.diffusion_steps))
    ).float()

    trainable = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("language.")]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    n_params = sum(p.numel() for p in trainable)
    print(
        f"[train] {n_params / 1e6:.2f} M trainable parameters; {len(train_ticks)} train / "
        f"{len(val_ticks)} val samples from {n_episodes} episodes; {len(demos.instructions)} instructions"
    )
    log: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": [], "lr": []}
    start = time.monotonic()
    model.train()
    running = None
    steps_done = 0
    bar = tqdm(range(config.steps), desc="training", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        if draw_p is None:
            ticks = train_ticks[rng.integers(len(train_ticks), size=config.batch_size)]
        else:
            ticks = train_ticks[rng.choice(len(train_ticks), size=config.batch_size, p=draw_p)]
        batch = sample_batch(demos, ticks, model_config.window, rng, config.shift_px)
        loss = diffusion_loss(model, batch, text, text_mask, alpha_bars, mean, std, norm_mask, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            decay_now = min(config.ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                if p.requires_grad:
                    e.lerp_(p, 1.0 - decay_now)
        value = loss.item()
        steps_done = step + 1
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 25 == 0:
            log["step"].append(step)
            log["loss"].append(running)
            log["lr"].append(lr_at(step, config))
            bar.set_postfix(loss=f"{running:.4f}")
        last = step == config.steps - 1
        out_of_time = (
            config.time_limit_min is not None and time.monotonic() - start > config.time_limit_min * 60
        )
        if len(val_ticks) and (step % config.val_every == 0 or last or out_of_time):
            val = validation_loss(
                ema, demos, val_ticks, text, text_mask, alpha_bars, mean, std, norm_mask, model_config
            )
            log["val_step"].append(step)
            log["val_loss"].append(val)
            tqdm.write(f"step {step}: train loss {running:.4f}  val loss (EMA) {val:.4f}")
        if out_of_time:
            tqdm.write(f"[train] time limit of {config.time_limit_min} min reached at step {step}")
            break
    bar.close()
    minutes = (time.monotonic() - start) / 60
    out = Path(config.out_dir)
    save_octo_checkpoint(ema, model_config, stats, out, stats_key=STATS_KEY)
    summary = {
        "config": asdict(config),
        "trainable_parameters": n_params,
        "episodes": n_episodes,
        "train_samples": int(len(train_ticks)),
        "val_samples": int(len(val_ticks)),
        "instructions": demos.instructions,
        "weighted_sampling": weighting,
        "steps_done": steps_done,
        "minutes": round(minutes, 1),
        "final_train_loss": running,
        "final_val_loss": log["val_loss"][-1] if log["val_loss"] else None,
        "log": log,
    }
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    plot_losses(log, Path(config.loss_plot) if config.loss_plot else out / "loss.png")
    return summary


@torch.no_grad()
def validation_loss(
    model, demos, ticks, text, text_mask, alpha_bars, mean, std, norm_mask, model_config
) -> float:
    """The diffusion loss on fixed validation samples with fixed noise (comparable across steps)."""
    rng = np.random.default_rng(1234)
    generator = torch.Generator().manual_seed(1234)
    chosen = ticks[rng.permutation(len(ticks))[: min(len(ticks), 512)]]
    losses = []
    for i in range(0, len(chosen), 128):
        batch = sample_batch(demos, chosen[i : i + 128], model_config.window, rng, None)
        loss = diffusion_loss(model, batch, text, text_mask, alpha_bars, mean, std, norm_mask, generator)
        losses.append(float(loss))
    return float(np.mean(losses))


def plot_losses(log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(log["step"], log["loss"], label="train (running mean)")
    if log["val_step"]:
        ax.plot(log["val_step"], log["val_loss"], "o-", label="validation (EMA weights)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("diffusion loss (noise MSE)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
