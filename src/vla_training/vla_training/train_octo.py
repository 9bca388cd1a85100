"""Train an Octo-style policy on sim demonstrations: diffusion on action chunks, frozen MiniLM text.

Octo's recipe at a small size: epsilon-prediction MSE on the normalised 4 x 7 chunk at a uniformly
drawn step of the 20-step cosine schedule, AdamW with linear warm-up and cosine decay, gradient
clipping, an exponential moving average of the weights (the EMA is what is saved), DrQ random
shifts of the images. The text encoder is frozen, so each instruction is encoded once up front.

Episodes can be drawn unevenly: ``train(config, episode_weight)`` takes a weight per (seed, family),
e.g. to show the scenes where only the instruction's shape word tells two objects apart more often.
With ``grounding_weight`` > 0 and ``episode_objects`` given, an auxiliary head on the readout also
learns where the named objects are (``training.grounding``); the head is not saved. With
``stem_pretraining`` set and an ``ObjectCatalogue`` given, the image stems first learn where every
object of the scene is (``training.object_localisation``) inside the same time limit.

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
from vla_training.demo_dataset import action_stats, load_demonstrations, sample_batch
from vla_training.grounding import EpisodeObjects, GroundingHead, gather_grounding, grounding_loss
from vla_training.object_localisation import (
    ObjectCatalogue,
    SlotLabels,
    StemPretraining,
    evaluate,
    first_ticks,
    localisation_loss,
    object_slot_labels,
    pretrain_stems,
    unseen_scenes,
)

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
    # More demonstration folders, e.g. decision frames (``CollectOptions.first_ticks``)
    extra_data_dirs: list[str] = field(default_factory=list)
    # Weight of the auxiliary grounding loss (0: off); needs train(..., episode_objects=...).
    grounding_weight: float = 0.0
    # Object-localisation pretraining of the image stems before the policy (a dict of
    # StemPretraining settings; None: off); needs train(..., catalogue=...).
    stem_pretraining: dict[str, Any] | None = None
    # Weight of the object slots' localisation loss (a model with object_slots > 0; needs the
    # catalogue), asked on each episode's first ``object_label_ticks`` ticks, before anything moves.
    object_loss_weight: float = 1.0
    object_label_ticks: int = 2

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
        if not (math.isfinite(self.grounding_weight) and self.grounding_weight >= 0):
            raise ValueError(f"train.grounding_weight: expected a number >= 0, got {self.grounding_weight!r}")
        if not (math.isfinite(self.object_loss_weight) and self.object_loss_weight >= 0):
            raise ValueError(
                f"train.object_loss_weight: expected a number >= 0, got {self.object_loss_weight!r}"
            )
        if int(self.object_label_ticks) < 1:
            raise ValueError(
                f"train.object_label_ticks: expected an integer >= 1, got {self.object_label_ticks!r}"
            )
        if self.stem_pretraining is not None:
            StemPretraining.from_dict(self.stem_pretraining)
            if self.init_from:
                raise ValueError(
                    "train.stem_pretraining: starts a new model's stems, but init_from continues trained ones"
                )

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


def diffusion_loss(
    model: OctoModel,
    readout: torch.Tensor,
    batch: dict,
    alpha_bars: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    norm_mask: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Octo's loss: MSE between the noise (or, for prediction_type "sample", the clean normalised
    chunk) and the head's prediction at a uniformly drawn diffusion step."""
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


def train(
    config: TrainConfig,
    episode_weight: EpisodeWeight | None = None,
    episode_objects: EpisodeObjects | None = None,
    catalogue: ObjectCatalogue | None = None,
) -> dict:
    from tqdm import tqdm

    if config.grounding_weight > 0 and episode_objects is None:
        raise ValueError("train.grounding_weight > 0 needs the object positions (episode_objects)")
    if config.stem_pretraining is not None and catalogue is None:
        raise ValueError("train.stem_pretraining needs the scenes' objects (catalogue)")
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
    demos = load_demonstrations(
        [config.data_dir, *config.extra_data_dirs], model_config.cameras, config.max_episodes
    )

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

    slots = None
    if model_config.object_slots:
        slots = object_slot_labels(demos, catalogue, model_config.object_slots, config.object_label_ticks)
        unseen = unseen_scenes(demos, order[:n_val], order[n_val:])
        val_slot_ticks = first_ticks(demos, unseen, config.object_label_ticks)
        print(
            f"[train] object slots: localisation loss x{config.object_loss_weight} on "
            f"{slots.mask.mean():.0%} of the ticks"
        )

    start = time.monotonic()  # the time limit covers stem pretraining and the policy's training
    pretraining = None
    if config.stem_pretraining is not None:
        options = StemPretraining.from_dict(config.stem_pretraining)
        pretraining = pretrain_stems(
            model,
            demos,
            catalogue,
            options,
            order[n_val:],
            order[:n_val],
            rng,
            scenes=slots.scenes if slots is not None else None,
        )
        print(f"[train] stem pretraining: {pretraining}")

    tokenizer = load_text_tokenizer(model_config)
    tokens = tokenize_instructions(tokenizer, demos.instructions, model_config.text_tokens)
    text = model.encode_text(**tokens)  # frozen: once per distinct instruction
    text_mask = tokens["attention_mask"]
    alpha_bars = torch.from_numpy(
        np.cumprod(1.0 - cosine_beta_schedule(model_config.diffusion_steps))
    ).float()

    trainable = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("language.")]
    n_params = sum(p.numel() for p in trainable)
    grounding, head = None, None
    if config.grounding_weight > 0:
        grounding = gather_grounding(demos, episode_objects)
        head = GroundingHead(model_config.width)
        trainable += list(head.parameters())
        print(
            f"[train] grounding loss x{config.grounding_weight} on "
            f"{grounding.mask[train_ticks, 0].mean():.0%} of the training ticks"
        )
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    print(
        f"[train] {n_params / 1e6:.2f} M trainable parameters; {len(train_ticks)} train / "
        f"{len(val_ticks)} val samples from {n_episodes} episodes; {len(demos.instructions)} instructions"
    )
    log: dict[str, list] = {
        "step": [],
        "loss": [],
        "val_step": [],
        "val_loss": [],
        "lr": [],
        "grounding_loss": [],
        "val_grounding_cm": [],
        "object_loss": [],
        "val_objects": [],
    }
    model.train()
    running, aux_running, object_running = None, None, None
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
        if slots is None:
            readout = last_readout(model, batch, text, text_mask)
        else:
            readout, objects = last_readout(model, batch, text, text_mask, with_objects=True)
        loss = diffusion_loss(model, readout, batch, alpha_bars, mean, std, norm_mask, generator)
        total = loss
        if slots is not None:
            labelled = torch.from_numpy(slots.mask[ticks])
            if labelled.any():
                located = model.object_slots.locate(objects[labelled])
                object_loss = localisation_loss(located, torch.from_numpy(slots.targets[ticks])[labelled])
                value_o = object_loss.item()
                object_running = value_o if object_running is None else 0.98 * object_running + 0.02 * value_o
                total = total + config.object_loss_weight * object_loss
        if head is not None:
            aux = grounding_loss(head(readout), *grounding.batch(ticks))
            aux_running = aux.item() if aux_running is None else 0.98 * aux_running + 0.02 * aux.item()
            total = loss + config.grounding_weight * aux
        optimizer.zero_grad(set_to_none=True)
        total.backward()
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
            if aux_running is not None:
                log["grounding_loss"].append(aux_running)
            if object_running is not None:
                log["object_loss"].append(object_running)
            bar.set_postfix(
                loss=f"{running:.4f}", **({} if aux_running is None else {"ground": f"{aux_running:.3f}"})
            )
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
            note = ""
            if head is not None:
                cm = grounding_error_cm(ema, head, demos, val_ticks, text, text_mask, grounding, model_config)
                log["val_grounding_cm"].append(cm)
                note = f"  val grounding error (training head) {cm}"
            if slots is not None and len(val_slot_ticks):
                found = slot_metrics(
                    ema, demos, val_slot_ticks, text, text_mask, slots, catalogue, model_config
                )
                log["val_objects"].append(found)
                note += f"  val object slots {found}"
            tqdm.write(f"step {step}: train loss {running:.4f}  val loss (EMA) {val:.4f}{note}")
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
        "stem_pretraining": pretraining,
        "steps_done": steps_done,
        "minutes": round(minutes, 1),
        "final_train_loss": running,
        "final_val_loss": log["val_loss"][-1] if log["val_loss"] else None,
        "final_val_grounding_cm": log["val_grounding_cm"][-1] if log["val_grounding_cm"] else None,
        "final_val_objects": log["val_objects"][-1] if log["val_objects"] else None,
        "log": log,
    }
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    plot_losses(log, Path(config.loss_plot) if config.loss_plot else out / "loss.png")
    return summary


@torch.no_grad()
def slot_metrics(ema, demos, ticks, text, text_mask, slots: SlotLabels, catalogue, model_config) -> dict:
    """Held-out first ticks: what the object slots say of each object (``object_localisation.evaluate``)."""
    rng = np.random.default_rng(0)

    def predict(chunk: np.ndarray, shift: bool) -> dict:
        batch = sample_batch(demos, chunk, model_config.window, rng)
        _, objects = last_readout(ema, batch, text, text_mask, with_objects=True)
        return {"slots": ema.object_slots.locate(objects)}

    episode = demos.episode_of_tick()
    scenes = slots.scenes
    return evaluate(predict, ticks, scenes.labels[episode[ticks]], scenes.xy_mean, scenes.xy_std, catalogue)[
        "slots"
    ]


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
        readout = last_readout(model, batch, text, text_mask)
        loss = diffusion_loss(model, readout, batch, alpha_bars, mean, std, norm_mask, generator)
        losses.append(float(loss))
    return float(np.mean(losses))


@torch.no_grad()
def grounding_error_cm(ema, head, demos, ticks, text, text_mask, grounding, model_config) -> dict:
    """Median distance (cm) between the predicted and true mover / destination positions on the
    validation ticks where the objects are in place (EMA trunk, the training head)."""
    ticks = ticks[grounding.mask[ticks, 0] > 0][:512]
    if not len(ticks):
        return {}
    predicted = []
    for i in range(0, len(ticks), 128):
        batch = sample_batch(demos, ticks[i : i + 128], model_config.window, np.random.default_rng(0), None)
        predicted.append(head(last_readout(ema, batch, text, text_mask)).numpy())
    error = grounding.metres(np.concatenate(predicted)) - grounding.metres(grounding.targets[ticks])
    mask = grounding.mask[ticks] > 0
    out = {}
    for name, cols in (("mover", slice(0, 2)), ("destination", slice(2, 4))):
        rows = mask[:, cols].all(axis=1)
        if rows.any():
            out[name] = round(float(np.median(np.linalg.norm(error[rows, cols], axis=1)) * 100), 1)
    return out


def plot_losses(log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(log["step"], log["loss"], label="train (running mean)")
    if log["val_step"]:
        ax.plot(log["val_step"], log["val_loss"], "o-", label="validation (EMA weights)")
    if log.get("grounding_loss"):
        ax.plot(log["step"], log["grounding_loss"], "--", label="auxiliary grounding (z-scored x, y MSE)")
    if log.get("object_loss"):
        steps = log["step"][-len(log["object_loss"]) :]
        ax.plot(steps, log["object_loss"], ":", label="object slots (presence BCE + z-scored x, y)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
