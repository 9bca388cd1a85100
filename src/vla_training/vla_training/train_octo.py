"""Train an Octo-style policy on sim demonstrations: diffusion on action chunks, frozen MiniLM text.

Octo's recipe at a small size: epsilon-prediction MSE on the normalised 4 x 7 chunk at a uniformly
drawn step of the 20-step cosine schedule, AdamW with linear warm-up and cosine decay, gradient
clipping, an exponential moving average of the weights (the EMA is what is saved), DrQ random
shifts of the images. The text encoder is frozen, so each instruction is encoded once up front.

Episodes can be drawn unevenly: ``train(config, episode_weight)`` takes a weight per (seed, family),
e.g. to show the scenes where only the instruction's shape word tells two objects apart more often.
With ``grounding_weight`` > 0 and ``episode_objects`` given, an auxiliary head on the readout also
learns where the named objects are (``grounding``); the head is not saved. With
``stem_pretraining`` set and an ``ObjectCatalogue`` given, the image stems first learn where every
object of the scene is (``object_localisation``) inside the same time limit. ``sim_glue`` builds
these three from the sim's task suite. The losses are in ``losses``, the held-out measures in
``validation``, the options in ``train_config``.

``train(TrainConfig)`` writes ``<out_dir>/`` (config.json, model.safetensors, norm_stats.json: the
Octo checkpoint layout), ``training_log.json`` and a loss-curve PNG.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from vla_common.action_space import NormStats
from vla_policy.backends.octo.action_head import cosine_beta_schedule
from vla_policy.backends.octo.checkpoint import load_octo_checkpoint, save_octo_checkpoint
from vla_policy.backends.octo.config import OctoConfig, octo_preset
from vla_policy.backends.octo.model import OctoModel
from vla_policy.backends.octo.tokenizers import load_text_tokenizer, tokenize_instructions
from vla_training.demo_dataset import Demonstrations, action_stats, load_demonstrations, sample_batch
from vla_training.grounding import EpisodeObjects, GroundingHead, gather_grounding
from vla_training.losses import ChunkNormalisation, Objective
from vla_training.object_localisation import (
    ObjectCatalogue,
    SlotLabels,
    StemPretraining,
    first_ticks,
    object_slot_labels,
    pretrain_stems,
    unseen_scenes,
)
from vla_training.train_config import TrainConfig, lr_at
from vla_training.validation import grounding_error_cm, slot_metrics, validation_loss

STATS_KEY = "widowx_sim"
LOG_EVERY = 25  # steps between two entries of the training log
# Log names of the step's losses (``Objective.losses``)
LOG_NAMES = {"diffusion": "loss", "object": "object_loss", "grounding": "grounding_loss"}
# validation logs, each also in the summary as ``final_<name>``
VALIDATION_LOGS = ("val_loss", "val_grounding_cm", "val_objects")
LOG_KEYS = (
    "step",
    "loss",
    "val_step",
    "val_loss",
    "lr",
    "grounding_loss",
    "val_grounding_cm",
    "object_loss",
    "val_objects",
)

# (episode seed, family) -> how many times as often its ticks are drawn as an unweighted episode's
EpisodeWeight = Callable[[int, str], float]


@dataclass
class TrainingData:
    """The demonstrations split by whole episodes (validation never seen by the optimiser), and how
    the training ticks are drawn (``draw_p`` None: uniformly)."""

    demos: Demonstrations
    train_episodes: np.ndarray
    val_episodes: np.ndarray
    train_ticks: np.ndarray
    val_ticks: np.ndarray
    draw_p: np.ndarray | None = None
    weighting: dict | None = None  # what the episode weights did, for the log

    def draw(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        if self.draw_p is None:
            return self.train_ticks[rng.integers(len(self.train_ticks), size=batch_size)]
        return self.train_ticks[rng.choice(len(self.train_ticks), size=batch_size, p=self.draw_p)]


@dataclass
class Optimisation:
    """The weights being trained, their optimiser and their exponential moving average."""

    model: OctoModel
    ema: OctoModel
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer


def train(
    config: TrainConfig,
    episode_weight: EpisodeWeight | None = None,
    episode_objects: EpisodeObjects | None = None,
    catalogue: ObjectCatalogue | None = None,
) -> dict:
    """Train as ``config`` says, write the checkpoint, the log and the loss plot; return the summary."""
    check_inputs(config, episode_objects, catalogue)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config)
    data = load_training_data(config, model.config, rng, episode_weight)
    stats = action_stats(data.demos.actions[data.train_ticks])
    set_proprio_statistics(model, data)
    slots, val_slot_ticks = slot_labels(config, model.config, data, catalogue)
    start = time.monotonic()  # the time limit covers stem pretraining and the policy's training
    pretraining = run_stem_pretraining(config, model, data, catalogue, rng, slots)
    objective = build_objective(config, model, data, stats, generator, slots, episode_objects)
    n_params = sum(p.numel() for p in policy_parameters(model))
    run = make_optimisation(model, objective.head, config)
    print(
        f"[train] {n_params / 1e6:.2f} M trainable parameters; {len(data.train_ticks)} train / "
        f"{len(data.val_ticks)} val samples from {len(data.demos.episode_seeds)} episodes; "
        f"{len(data.demos.instructions)} instructions"
    )
    log, running, steps_done = fit(config, run, data, objective, rng, start, val_slot_ticks, catalogue)
    minutes = (time.monotonic() - start) / 60
    save_octo_checkpoint(run.ema, model.config, stats, Path(config.out_dir), stats_key=STATS_KEY)
    summary = {
        "config": asdict(config),
        "trainable_parameters": n_params,
        "episodes": len(data.demos.episode_seeds),
        "train_samples": int(len(data.train_ticks)),
        "val_samples": int(len(data.val_ticks)),
        "instructions": data.demos.instructions,
        "weighted_sampling": data.weighting,
        "stem_pretraining": pretraining,
        "steps_done": steps_done,
        "minutes": round(minutes, 1),
        "final_train_loss": running.get("diffusion"),
        **{f"final_{name}": log[name][-1] if log[name] else None for name in VALIDATION_LOGS},
        "log": log,
    }
    write_log(summary, config)
    return summary


def check_inputs(
    config: TrainConfig, episode_objects: EpisodeObjects | None, catalogue: ObjectCatalogue | None
) -> None:
    if config.grounding_weight > 0 and episode_objects is None:
        raise ValueError("train.grounding_weight > 0 needs the object positions (episode_objects)")
    if config.stem_pretraining is not None and catalogue is None:
        raise ValueError("train.stem_pretraining needs the scenes' objects (catalogue)")


def build_model(config: TrainConfig) -> OctoModel:
    """The checkpoint of ``init_from`` (architecture and weights), else a new model of the preset."""
    if config.init_from:
        print(f"[train] continuing from {config.init_from}")
        return load_octo_checkpoint(config.init_from).model
    return OctoModel(octo_preset(config.model_size, **config.model_overrides))


def load_training_data(
    config: TrainConfig,
    model_config: OctoConfig,
    rng: np.random.Generator,
    episode_weight: EpisodeWeight | None,
) -> TrainingData:
    """Every demonstration folder of ``config``, ``val_fraction`` of the episodes held out."""
    demos = load_demonstrations(
        [config.data_dir, *config.extra_data_dirs], model_config.cameras, config.max_episodes
    )
    n_episodes = len(demos.episode_seeds)
    n_val = int(round(n_episodes * config.val_fraction))
    order = rng.permutation(n_episodes)
    data = TrainingData(
        demos,
        train_episodes=order[n_val:],
        val_episodes=order[:n_val],
        train_ticks=demos.subset_episodes(order[n_val:]),
        val_ticks=demos.subset_episodes(order[:n_val]),
    )
    if episode_weight is not None:
        data.draw_p, data.weighting = weighted_draws(demos, data.train_ticks, episode_weight)
        print(f"[train] weighted sampling: {data.weighting}")
    return data


def weighted_draws(
    demos: Demonstrations, train_ticks: np.ndarray, episode_weight: EpisodeWeight
) -> tuple[np.ndarray, dict]:
    """Each training tick's draw probability, and how many episodes, draws and ticks weigh more."""
    pairs = zip(demos.episode_seeds, demos.families, strict=True)
    weights = np.array([episode_weight(seed, family) for seed, family in pairs])
    draw_p = demos.draw_probabilities(train_ticks, weights)
    heavier = weights[demos.episode_of_tick()[train_ticks]] > 1
    return draw_p, {
        "episodes_weighted_up": int((weights > 1).sum()),
        "share_of_draws": round(float(draw_p[heavier].sum()), 3),
        "share_of_ticks": round(float(heavier.mean()), 3),
    }


def set_proprio_statistics(model: OctoModel, data: TrainingData) -> None:
    """The proprio normalisation the model carries, from the training ticks."""
    if not model.config.proprio_dim:
        return
    proprio = data.demos.proprio[data.train_ticks][:, : model.config.proprio_dim]
    model.proprio_mean.copy_(torch.from_numpy(proprio.mean(axis=0)))
    model.proprio_std.copy_(torch.from_numpy(np.maximum(proprio.std(axis=0), 1e-3)))


def slot_labels(
    config: TrainConfig, model_config: OctoConfig, data: TrainingData, catalogue: ObjectCatalogue | None
) -> tuple[SlotLabels | None, np.ndarray]:
    """The object slots' targets (None without slots) and the held-out ticks they are measured on:
    the first ticks of validation scenes that no training episode shows."""
    if not model_config.object_slots:
        return None, np.zeros(0, dtype=int)
    slots = object_slot_labels(data.demos, catalogue, model_config.object_slots, config.object_label_ticks)
    unseen = unseen_scenes(data.demos, data.val_episodes, data.train_episodes)
    print(
        f"[train] object slots: localisation loss x{config.object_loss_weight} on "
        f"{slots.mask.mean():.0%} of the ticks"
    )
    return slots, first_ticks(data.demos, unseen, config.object_label_ticks)


def run_stem_pretraining(
    config: TrainConfig,
    model: OctoModel,
    data: TrainingData,
    catalogue: ObjectCatalogue | None,
    rng: np.random.Generator,
    slots: SlotLabels | None,
) -> dict | None:
    """The stems' object-localisation pretraining if ``config`` asks for it; its metrics."""
    if config.stem_pretraining is None:
        return None
    options = StemPretraining.from_dict(config.stem_pretraining)
    scenes = slots.scenes if slots is not None else None
    metrics = pretrain_stems(
        model, data.demos, catalogue, options, data.train_episodes, data.val_episodes, rng, scenes=scenes
    )
    print(f"[train] stem pretraining: {metrics}")
    return metrics


def build_objective(
    config: TrainConfig,
    model: OctoModel,
    data: TrainingData,
    stats: NormStats,
    generator: torch.Generator,
    slots: SlotLabels | None,
    episode_objects: EpisodeObjects | None,
) -> Objective:
    """The instructions encoded once (the text encoder is frozen), the noise schedule, the chunk
    normalisation and, with ``grounding_weight`` > 0, the grounding targets and a new head."""
    tokenizer = load_text_tokenizer(model.config)
    tokens = tokenize_instructions(tokenizer, data.demos.instructions, model.config.text_tokens)
    alpha_bars = np.cumprod(1.0 - cosine_beta_schedule(model.config.diffusion_steps))
    objective = Objective(
        text=model.encode_text(**tokens),
        text_mask=tokens["attention_mask"],
        alpha_bars=torch.from_numpy(alpha_bars).float(),
        normalise=ChunkNormalisation(
            torch.tensor(stats.mean, dtype=torch.float32),
            torch.tensor(stats.std, dtype=torch.float32),
            torch.tensor(stats.mask),
        ),
        generator=generator,
        slots=slots,
        object_loss_weight=config.object_loss_weight,
        grounding_weight=config.grounding_weight,
    )
    if config.grounding_weight > 0:
        objective.grounding = gather_grounding(data.demos, episode_objects)
        objective.head = GroundingHead(model.config.width)
        share = objective.grounding.mask[data.train_ticks, 0].mean()
        print(f"[train] grounding loss x{config.grounding_weight} on {share:.0%} of the training ticks")
    return objective


def policy_parameters(model: OctoModel) -> list[torch.nn.Parameter]:
    """The model's trainable parameters: all but the frozen text encoder's."""
    return [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("language.")]


def make_optimisation(model: OctoModel, head: GroundingHead | None, config: TrainConfig) -> Optimisation:
    """AdamW (no weight decay on biases and norms) over the model and the grounding head, and the EMA."""
    trainable = policy_parameters(model) + (list(head.parameters()) if head is not None else [])
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return Optimisation(model, ema, trainable, optimizer)


def training_step(
    run: Optimisation, objective: Objective, batch: dict, ticks: np.ndarray, lr: float, config: TrainConfig
) -> dict[str, float]:
    """One optimiser step on the weighted total of the step's losses, then the EMA; the losses' values."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    losses = objective.losses(run.model, batch, ticks)
    total = objective.total(losses)
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(run.parameters, config.grad_clip)
    run.optimizer.step()
    return {name: loss.item() for name, loss in losses.items()}


@torch.no_grad()
def update_ema(ema: OctoModel, model: OctoModel, step: int, ema_decay: float) -> None:
    """Move the EMA towards the weights; a shorter memory over the first steps (Octo's warm-up)."""
    decay_now = min(ema_decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        if p.requires_grad:
            e.lerp_(p, 1.0 - decay_now)


def fit(
    config: TrainConfig,
    run: Optimisation,
    data: TrainingData,
    objective: Objective,
    rng: np.random.Generator,
    start: float,
    val_slot_ticks: np.ndarray,
    catalogue: ObjectCatalogue | None,
) -> tuple[dict[str, list], dict[str, float], int]:
    """The training loop, validated every ``val_every`` steps, at the last step and when the time
    limit stops it; (the log, the losses' running means, the steps done)."""
    log: dict[str, list] = {name: [] for name in LOG_KEYS}
    running: dict[str, float] = {}
    steps_done = 0
    run.model.train()
    bar = tqdm(range(config.steps), desc="training", unit="step")
    for step in bar:
        ticks = data.draw(rng, config.batch_size)
        batch = sample_batch(data.demos, ticks, run.model.config.window, rng, config.shift_px)
        values = training_step(run, objective, batch, ticks, lr_at(step, config), config)
        update_ema(run.ema, run.model, step, config.ema_decay)
        for name, value in values.items():
            running[name] = running_mean(running[name], value) if name in running else value
        steps_done = step + 1
        if step % LOG_EVERY == 0:
            log_step(log, bar, step, running, config)
        out_of_time = (
            config.time_limit_min is not None and time.monotonic() - start > config.time_limit_min * 60
        )
        validating = step % config.val_every == 0 or step == config.steps - 1 or out_of_time
        if len(data.val_ticks) and validating:
            note = validate(log, run.ema, data, objective, val_slot_ticks, catalogue, step)
            tqdm.write(f"step {step}: train loss {running['diffusion']:.4f}  val loss (EMA) {note}")
        if out_of_time:
            tqdm.write(f"[train] time limit of {config.time_limit_min} min reached at step {step}")
            break
    bar.close()
    return log, running, steps_done


def running_mean(previous: float, value: float) -> float:
    """The logged losses' exponential running mean (0.98 of the previous mean)."""
    return 0.98 * previous + 0.02 * value


def log_step(log: dict[str, list], bar, step: int, running: dict[str, float], config: TrainConfig) -> None:
    log["step"].append(step)
    log["lr"].append(lr_at(step, config))
    for name, value in running.items():
        log[LOG_NAMES[name]].append(value)
    ground = {"ground": f"{running['grounding']:.3f}"} if "grounding" in running else {}
    bar.set_postfix(loss=f"{running['diffusion']:.4f}", **ground)


def validate(
    log: dict[str, list],
    ema: OctoModel,
    data: TrainingData,
    objective: Objective,
    val_slot_ticks: np.ndarray,
    catalogue: ObjectCatalogue | None,
    step: int,
) -> str:
    """The held-out measures of the EMA weights, appended to ``log``; a line saying them."""
    val = validation_loss(ema, data.demos, data.val_ticks, objective)
    log["val_step"].append(step)
    log["val_loss"].append(val)
    note = f"{val:.4f}"
    if objective.head is not None:
        cm = grounding_error_cm(ema, objective.head, data.demos, data.val_ticks, objective)
        log["val_grounding_cm"].append(cm)
        note += f"  val grounding error (training head) {cm}"
    if objective.slots is not None and len(val_slot_ticks):
        found = slot_metrics(ema, data.demos, val_slot_ticks, objective, catalogue)
        log["val_objects"].append(found)
        note += f"  val object slots {found}"
    return note


def write_log(summary: dict, config: TrainConfig) -> None:
    """``training_log.json`` beside the checkpoint and the loss plot (``loss_plot`` or loss.png there)."""
    out = Path(config.out_dir)
    (out / "training_log.json").write_text(json.dumps(summary, indent=1))
    plot_losses(summary["log"], Path(config.loss_plot) if config.loss_plot else out / "loss.png")


def plot_losses(log: dict, path: Path) -> None:
    """The running training losses and the validation loss against the step, log scale."""
    fig = Figure(figsize=(7, 4))  # no pyplot: nothing is shown, no GUI backend is needed
    ax = fig.subplots()
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
