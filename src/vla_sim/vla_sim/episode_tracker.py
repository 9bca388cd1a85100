"""When an episode ends: success held for a while, or the step budget spent (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpisodeResult:
    success: bool
    steps: int
    duration_s: float


class EpisodeTracker:
    """Counts control steps of ``step_dt_s`` from ``start_s``; success must hold ``success_hold_s``."""

    def __init__(self, start_s: float, max_steps: int, step_dt_s: float, success_hold_s: float = 0.4) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not step_dt_s > 0:
            raise ValueError(f"step_dt_s must be > 0 (the control period), got {step_dt_s}")
        self.start_s = start_s
        self.max_steps = max_steps
        self.step_dt_s = step_dt_s
        self.success_hold_s = success_hold_s
        self._success_since: float | None = None

    def steps_at(self, now_s: float) -> int:
        return int((now_s - self.start_s) / self.step_dt_s + 1e-9)

    def update(self, now_s: float, success: bool) -> EpisodeResult | None:
        """Feed the detector's verdict at ``now_s``; returns the result once the episode is over."""
        if success:
            if self._success_since is None:
                self._success_since = now_s
            if now_s - self._success_since >= self.success_hold_s:
                return EpisodeResult(True, self.steps_at(self._success_since), now_s - self.start_s)
        else:
            self._success_since = None
        if self.steps_at(now_s) >= self.max_steps:
            return EpisodeResult(False, self.max_steps, now_s - self.start_s)
        return None
