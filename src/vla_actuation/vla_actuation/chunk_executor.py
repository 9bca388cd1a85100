"""Execute single actions or action chunks on a fixed control period (pure numpy).

Timing semantics
----------------
- Time is in seconds on one clock (the caller's, e.g. ROS time). ``step_dt_s`` is the control period.
- ``submit(chunk, chunk_start_s, now_s)``: ``chunk_start_s`` is the time of the observation the
  chunk was computed from; ``chunk[k]`` is the action for the control step that starts at
  ``chunk_start_s + k * step_dt_s``. ``now_s`` is the arrival time.
- A control tick at time ``t`` belongs to step ``k = floor((t - chunk_start_s) / step_dt_s + 1/2)``
  (half-step tolerance: ticks may jitter by up to half a period). At submission the steps with an
  index below the step of ``now_s`` are already in the past and are dropped
  (``SubmitResult.dropped_steps``); if no step remains, the chunk is rejected. This is how a late
  chunk joins without a jump: execution starts at the step that belongs to now.
- Open-loop bound: only steps that end within ``max_open_loop_s`` of the chunk start are executed,
  i.e. ``(k + 1) * step_dt_s <= max_open_loop_s``. Applies to both chunk modes, so a policy that
  stops sending leads to a hold after at most ``max_open_loop_s`` since its last observation.
- A chunk whose start is not newer than the newest accepted one is rejected (out of order, or a
  duplicate delivery), as is non-finite data or a width that differs from the stored chunks.
- ``next_action(t)`` returns the action for the tick at ``t`` or ``None`` (= hold). Each tick's
  action is returned once: a second call within half a period of the last returned tick gives
  ``None``, and within one chunk a step index is never executed twice.
- ``next_step(t)`` is ``next_action(t)`` that also says what the tick was (:class:`TickResult`):
  whether the action is the first one taken from a newly accepted chunk (``boundary``: a chunk
  join, or the first chunk after a reset; in temporal ensembling, the first action to which a newer
  chunk than before contributes; every single-step action), and whether a ``None`` means that
  nothing is left to execute (``idle``: no chunk, all exhausted or past the open-loop bound, the
  chunk not started yet) rather than that this tick was already served (a call within half a
  period of the last served tick, or a step index of the chunk already executed): what the
  execution statistics count as idle (``execution_stats``).

Modes
-----
- ``single_step``: one action per observation (OpenVLA, RT-2 style). Only ``chunk[0]`` is used. It
  is executed once, at the first tick after it arrives, as long as it is no older than
  ``max_open_loop_s`` (the half-step rule would reject every action whose inference takes more than
  half a period, so the age bound is used instead); it is never repeated.
- ``receding_horizon``: follow the newest chunk only; a new chunk cancels the old one at once
  (continuous hand-off at the step that belongs to now).
- ``temporal_ensembling``: every stored chunk that covers the tick contributes its prediction for
  it; predictions are averaged with weights ``exp(-ensemble_decay * i)``, ``i = 0`` being the
  OLDEST (ACT's convention; Octo uses uniform weights, ``ensemble_decay = 0``). Chunks that no
  longer cover now are dropped. All action dimensions are averaged, the gripper included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

MODES = ("single_step", "receding_horizon", "temporal_ensembling")
_EPS = 1e-9  # guards against floating-point noise at exact step boundaries


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of :meth:`ChunkExecutor.submit`."""

    accepted: bool
    dropped_steps: int
    reason: str


@dataclass(frozen=True)
class TickResult:
    """What :meth:`ChunkExecutor.next_step` did at one control tick (see the module docstring)."""

    action: np.ndarray | None
    boundary: bool = False  # the action is the first one taken from a newly accepted chunk
    idle: bool = False  # no action because nothing is left to execute (not: the tick was already served)


_SERVED = TickResult(None)  # this tick (or the step it belongs to) was already served
_IDLE = TickResult(None, idle=True)


@dataclass
class _StoredChunk:
    start_s: float
    actions: np.ndarray  # H x D
    next_index: int = 0  # receding horizon: the first step not yet executed or dropped
    executed: bool = field(default=False)  # single step: already sent


class ChunkExecutor:
    """Turns actions or action chunks into one action per control tick (see the module docstring)."""

    def __init__(
        self, mode: str, step_dt_s: float, max_open_loop_s: float = 0.8, ensemble_decay: float = 0.0
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: '{mode}' is not supported; use one of {', '.join(MODES)}")
        for name, value in (("step_dt_s", step_dt_s), ("max_open_loop_s", max_open_loop_s)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        if max_open_loop_s + _EPS < step_dt_s:
            raise ValueError(
                f"max_open_loop_s: {max_open_loop_s} is shorter than one step ({step_dt_s} s); "
                "nothing could run"
            )
        if not (
            isinstance(ensemble_decay, (int, float)) and math.isfinite(ensemble_decay) and ensemble_decay >= 0
        ):
            raise ValueError(f"ensemble_decay: expected a finite number >= 0, got {ensemble_decay!r}")
        self.mode = mode
        self.step_dt_s = float(step_dt_s)
        self.max_open_loop_s = float(max_open_loop_s)
        self.ensemble_decay = float(ensemble_decay)
        # Steps k = 0 .. open_loop_steps - 1 end within max_open_loop_s of the chunk start.
        self.open_loop_steps = int(math.floor(self.max_open_loop_s / self.step_dt_s + _EPS))
        self._chunks: list[_StoredChunk] = []
        self._newest_start_s: float | None = None
        self._last_tick_s: float | None = None
        self._dim: int | None = None
        self._source_start_s: float | None = None  # the newest chunk that the last action came from

    def reset(self) -> None:
        """Forget every chunk and the tick history (episode start, e-stop, resume)."""
        self._chunks.clear()
        self._newest_start_s = None
        self._last_tick_s = None
        self._dim = None
        self._source_start_s = None

    @property
    def stored_chunks(self) -> int:
        """How many chunks are held (for diagnostics)."""
        return len(self._chunks)

    def _step_index(self, start_s: float, now_s: float) -> int:
        return int(math.floor((now_s - start_s) / self.step_dt_s + 0.5 + _EPS))

    def _validate(self, chunk: object, chunk_start_s: float, now_s: float) -> tuple[np.ndarray | None, str]:
        if not (math.isfinite(chunk_start_s) and math.isfinite(now_s)):
            return None, f"chunk_start_s/now_s: expected finite times, got {chunk_start_s}, {now_s}"
        try:
            actions = np.asarray(chunk, dtype=float)
        except (TypeError, ValueError):
            return None, f"chunk: not an array of numbers ({type(chunk).__name__})"
        if actions.ndim == 1:
            actions = actions[None, :]
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < 1:
            return None, f"chunk: expected an H x D array with H, D >= 1, got shape {actions.shape}"
        if not np.all(np.isfinite(actions)):
            bad = np.argwhere(~np.isfinite(actions))[0]
            return None, f"chunk[{bad[0]}][{bad[1]}]: non-finite value {actions[bad[0], bad[1]]}"
        if self._dim is not None and actions.shape[1] != self._dim:
            return None, f"chunk: expected {self._dim} values per step, got {actions.shape[1]}"
        if self._newest_start_s is not None and chunk_start_s <= self._newest_start_s:
            return None, (
                f"chunk_start_s: {chunk_start_s:.3f} is not newer than the newest accepted chunk "
                f"({self._newest_start_s:.3f})"
            )
        return actions.copy(), ""

    def submit(self, chunk: np.ndarray, chunk_start_s: float, now_s: float) -> SubmitResult:
        """Offer an H x D chunk (1-D = one action) computed from the observation at ``chunk_start_s``."""
        actions, problem = self._validate(chunk, chunk_start_s, now_s)
        if actions is None:
            return SubmitResult(False, 0, problem)
        if self.mode == "single_step":
            age_s = now_s - chunk_start_s
            if age_s > self.max_open_loop_s:
                return SubmitResult(
                    False, 0, f"action is {age_s:.3f} s old (max_open_loop_s {self.max_open_loop_s})"
                )
            self._accept(_StoredChunk(chunk_start_s, actions[:1]), replace=True)
            return SubmitResult(True, 0, "")
        past_steps = max(0, self._step_index(chunk_start_s, now_s))
        usable_steps = min(actions.shape[0], self.open_loop_steps)
        if past_steps >= actions.shape[0]:
            return SubmitResult(
                False,
                actions.shape[0],
                f"all {actions.shape[0]} steps are in the past ({now_s - chunk_start_s:.3f} s late)",
            )
        if past_steps >= usable_steps:
            return SubmitResult(
                False,
                past_steps,
                f"every remaining step ends more than max_open_loop_s ({self.max_open_loop_s} s) "
                "after the chunk start",
            )
        stored = _StoredChunk(chunk_start_s, actions, next_index=past_steps)
        self._accept(stored, replace=self.mode == "receding_horizon")
        reason = f"dropped {past_steps} step(s) already in the past" if past_steps else ""
        return SubmitResult(True, past_steps, reason)

    def _accept(self, stored: _StoredChunk, replace: bool) -> None:
        if replace:
            self._chunks = [stored]
        else:  # chunks that end before the new one starts never act again: bounded while held
            self._chunks = [c for c in self._chunks if not self._ended(c, stored.start_s)] + [stored]
        self._newest_start_s = stored.start_s
        self._dim = stored.actions.shape[1]

    def _ended(self, stored: _StoredChunk, now_s: float) -> bool:
        """Whether ``stored`` covers no step at ``now_s`` or later (exhausted or past the open-loop bound)."""
        return self._step_index(stored.start_s, now_s) >= min(stored.actions.shape[0], self.open_loop_steps)

    def next_action(self, now_s: float) -> np.ndarray | None:
        """The action for the control tick at ``now_s``, or ``None`` to hold."""
        return self.next_step(now_s).action

    def next_step(self, now_s: float) -> TickResult:
        """``next_action`` with what the tick was: a chunk boundary, idle, or already served."""
        if not math.isfinite(now_s):
            return _SERVED  # not a tick on this clock: nothing said about it
        if not self._chunks:
            return _IDLE
        if self._last_tick_s is not None and now_s - self._last_tick_s < 0.5 * self.step_dt_s:
            return _SERVED  # this tick (or an earlier one) was already served
        if self.mode == "single_step":
            result = self._next_single(now_s)
        elif self.mode == "receding_horizon":
            result = self._next_receding(now_s)
        else:
            result = self._next_ensembled(now_s)
        if isinstance(result, TickResult):
            return result
        action, source_start_s = result
        self._last_tick_s = now_s
        boundary = self._source_start_s is None or source_start_s > self._source_start_s
        self._source_start_s = source_start_s
        return TickResult(action, boundary=boundary)

    def _next_single(self, now_s: float) -> tuple[np.ndarray, float] | TickResult:
        stored = self._chunks[0]
        if stored.executed or now_s - stored.start_s > self.max_open_loop_s:
            self._chunks.clear()
            return _IDLE
        stored.executed = True
        return stored.actions[0].copy(), stored.start_s

    def _next_receding(self, now_s: float) -> tuple[np.ndarray, float] | TickResult:
        stored = self._chunks[0]
        index = self._step_index(stored.start_s, now_s)
        if index >= min(stored.actions.shape[0], self.open_loop_steps):
            self._chunks.clear()  # exhausted or past the open-loop bound: hold
            return _IDLE
        if index < stored.next_index:  # not started yet, or this step was already executed
            return _IDLE if index < 0 else _SERVED
        stored.next_index = index + 1
        return stored.actions[index].copy(), stored.start_s

    def _next_ensembled(self, now_s: float) -> tuple[np.ndarray, float] | TickResult:
        live = []
        predictions = []
        newest_start_s = -math.inf
        for stored in self._chunks:  # oldest first: chunks are appended in start order
            if self._ended(stored, now_s):
                continue  # no longer covers now: drop it
            index = self._step_index(stored.start_s, now_s)
            live.append(stored)
            if index >= max(0, stored.next_index):
                predictions.append(stored.actions[index])
                newest_start_s = stored.start_s
        self._chunks = live
        if not predictions:
            return _IDLE
        weights = np.exp(-self.ensemble_decay * np.arange(len(predictions)))
        action = (weights[:, None] * np.asarray(predictions)).sum(axis=0) / weights.sum()
        return action, newest_start_s
