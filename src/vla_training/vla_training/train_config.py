"""The ``train`` section of a training config: every option of a training run, validated on creation.

Pure Python (no torch), so that the ``vla-stack`` CLI can check a config without loading a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StemPretraining:
    """The ``stem_pretraining`` settings of a train config."""

    cameras: list[str] = field(default_factory=lambda: ["primary"])
    minutes: float = 8.0
    steps: int | None = None  # stop after this many steps if the minutes have not run out first
    batch_size: int = 128
    learning_rate: float = 1e-3
    ticks_per_episode: int = 2  # the first ticks of each scene: nothing has moved yet
    shift_px: int = 4

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("train.stem_pretraining.cameras: expected at least one camera, got []")
        if not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"train.stem_pretraining.minutes: expected a number > 0, got {self.minutes!r}")
        if self.steps is not None and int(self.steps) < 1:
            raise ValueError(
                f"train.stem_pretraining.steps: expected an integer >= 1 or null, got {self.steps!r}"
            )
        for name in ("batch_size", "ticks_per_episode"):
            if int(getattr(self, name)) < 1:
                value = getattr(self, name)
                raise ValueError(f"train.stem_pretraining.{name}: expected an integer >= 1, got {value!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(
                "train.stem_pretraining.learning_rate: expected a value in (0, 1), "
                f"got {self.learning_rate!r}"
            )
        if int(self.shift_px) < 0:
            raise ValueError(f"train.stem_pretraining.shift_px: expected >= 0, got {self.shift_px!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StemPretraining:
        known = sorted(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"train.stem_pretraining: unknown setting(s) {unknown}; known: {known}")
        return cls(**data)


@dataclass
class TrainConfig:
    """The ``train`` section: where the data and the checkpoint are, the model, the optimiser, the losses."""

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
    # How many times as often the ticks of an episode whose scene holds a look-alike of an object the
    # instruction names (same colour, other shape) are drawn (1: uniform draws); the train CLI turns
    # it into ``train(..., episode_weight=sim_glue.lookalike_episode_weight(...))``.
    lookalike_weight: float = 1.0
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
        for name in ("steps", "batch_size", "warmup_steps", "val_every", "threads", "object_label_ticks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name}: expected an integer >= 1, got {getattr(self, name)!r}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"train.learning_rate: expected a value in (0, 1), got {self.learning_rate!r}")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"train.val_fraction: expected [0, 0.5), got {self.val_fraction!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay: expected [0, 1), got {self.ema_decay!r}")
        for name in ("grounding_weight", "object_loss_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"train.{name}: expected a number >= 0, got {value!r}")
        if not (math.isfinite(self.lookalike_weight) and self.lookalike_weight > 0):
            raise ValueError(f"train.lookalike_weight: expected a number > 0, got {self.lookalike_weight!r}")
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
    """Linear warm-up to ``learning_rate``, then cosine decay to zero at ``steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
