"""When to start the next inference, and on which observation (pure).

Asynchronous inference replaces the fixed inference tick: the actuation node keeps playing the
committed chunk, and the policy starts its next inference early enough that the new chunk arrives
before the committed steps run out. Three pieces, each independent of ROS:

- :class:`LatencyEstimate`: a conservative inference latency from recent measurements (a high
  quantile of a bounded window plus a margin), robust to warm-up spikes (the first inferences of a
  model compile kernels and fill caches: Octo's first call takes seconds, later ones ~200 ms). It
  keeps its samples in fixed numpy buffers: recording never allocates, so a long-running node's
  memory stays flat.
- :func:`refill_due` / :func:`frozen_prefix_steps`: the refill trigger (the committed steps left
  cover less time than latency plus margin) and the number of steps that will have run by the time
  the new chunk arrives (the frozen prefix of real-time chunking).
- :class:`InferenceScheduler`: the three together, as the policy node and the graph replica use
  them: whether an inference starts now on the newest observation (first, refill, replan) and what
  the committed chunk contributes to the next one (real-time chunking).
- :class:`NewestObservation`: a one-slot mailbox between the perception callbacks and the
  inference thread: a newer observation replaces the pending one, an older one is dropped, and the
  inference thread takes the newest when it is free.

Times are in seconds, stamps in integer nanoseconds (as on the ROS header), on one clock.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

# Samples the estimate looks at: the last 32 inferences (~6 s of Octo-Small on this CPU, ~0.6 s of a
# 20 ms model): recent enough to follow a load change, long enough for a stable p90.
DEFAULT_WINDOW = 32
# The quantile (percent) of the window used as the latency: one inference in ten may be slower.
DEFAULT_QUANTILE_PCT = 90.0
# Measurements ignored at start: the first inference compiles/allocates (seconds for Octo).
DEFAULT_WARMUP_SAMPLES = 1
# Added to the quantile: transport of the chunk and scheduling jitter of the inference thread.
DEFAULT_MARGIN_S = 0.02

_EPS = 1e-9  # floating-point noise at exact step multiples (0.3 / 0.1 = 2.9999999999999996)


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number of seconds, got {value!r}")
    if value < 0.0:
        raise ValueError(f"{name}: must be >= 0 s, got {value!r}")
    return float(value)


def _check_period(step_dt_s: float) -> float:
    step_dt_s = _check_seconds("step_dt_s", step_dt_s)
    if step_dt_s == 0.0:
        raise ValueError("step_dt_s: must be > 0 s (the control period), got 0")
    return step_dt_s


class LatencyEstimate:
    """Conservative inference latency: the ``quantile_pct`` quantile of the last ``window``
    measurements (after the first ``warmup_samples``), plus ``margin_s``.

    The quantile is the nearest-rank one rounded up (an actual measurement, never an interpolation
    below it). A spike stops counting once ``window`` newer samples have been recorded, and in a
    full window the ``window - ceil(window * quantile_pct / 100)`` slowest measurements (3 of 32 by
    default) never count. Before the first counted measurement the estimate is ``initial_s + margin_s``:
    choose ``initial_s`` as the model's expected latency (or the warm-up measurement, see
    :attr:`last_warmup_s`), so the first refill is not started too late.
    """

    def __init__(
        self,
        initial_s: float,
        window: int = DEFAULT_WINDOW,
        quantile_pct: float = DEFAULT_QUANTILE_PCT,
        warmup_samples: int = DEFAULT_WARMUP_SAMPLES,
        margin_s: float = DEFAULT_MARGIN_S,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"LatencyEstimate: window {window!r} must be an integer >= 1")
        if not (isinstance(quantile_pct, (int, float)) and 0.0 < quantile_pct <= 100.0):
            raise ValueError(f"LatencyEstimate: quantile_pct {quantile_pct!r} must be in (0, 100]")
        if isinstance(warmup_samples, bool) or not isinstance(warmup_samples, int) or warmup_samples < 0:
            raise ValueError(f"LatencyEstimate: warmup_samples {warmup_samples!r} must be an integer >= 0")
        self.initial_s = _check_seconds("initial_s", initial_s)
        self.margin_s = _check_seconds("margin_s", margin_s)
        self.window = window
        self.quantile_pct = float(quantile_pct)
        self.warmup_samples = warmup_samples
        self._values = np.zeros(window)  # the ring; filled (resident) now, not as samples arrive
        self._scratch = np.zeros(window)  # sorted copy for the quantile, reused
        self._next = 0
        self._count = 0
        self.seen = 0  # every recorded measurement, warm-up included
        self.last_warmup_s = math.nan  # the newest ignored warm-up measurement

    def record(self, latency_s: float) -> None:
        """Add one measured inference latency (seconds). Allocates nothing."""
        latency_s = _check_seconds("latency_s", latency_s)
        self.seen += 1
        if self.seen <= self.warmup_samples:
            self.last_warmup_s = latency_s
            return
        self._values[self._next] = latency_s
        self._next = (self._next + 1) % self.window
        self._count = min(self._count + 1, self.window)

    @property
    def count(self) -> int:
        """Measurements in the window (warm-up excluded)."""
        return self._count

    def quantile_s(self) -> float:
        """The window's ``quantile_pct`` quantile (nearest rank, rounded up), or ``initial_s``
        before any counted measurement."""
        n = self._count
        if n == 0:
            return self.initial_s
        scratch = self._scratch[:n]
        scratch[:] = self._values[:n]
        scratch.sort()
        rank = max(1, math.ceil(self.quantile_pct / 100.0 * n - _EPS))
        return float(scratch[rank - 1])

    def estimate_s(self) -> float:
        """The latency to plan with: :meth:`quantile_s` plus ``margin_s``."""
        return self.quantile_s() + self.margin_s


def refill_due(steps_left: int, step_dt_s: float, latency_estimate_s: float, margin_s: float) -> bool:
    """True when the next inference must start now: the ``steps_left`` committed steps, played one
    per ``step_dt_s``, cover less time than the inference will take (``latency_estimate_s``) plus
    ``margin_s``, i.e. ``steps_left * step_dt_s < latency_estimate_s + margin_s``. Always true with
    no step left (nothing would run while waiting)."""
    if isinstance(steps_left, bool) or not isinstance(steps_left, (int, np.integer)) or steps_left < 0:
        raise ValueError(f"refill_due: steps_left {steps_left!r} must be an integer >= 0")
    step_dt_s = _check_period(step_dt_s)
    needed_s = _check_seconds("latency_estimate_s", latency_estimate_s) + _check_seconds("margin_s", margin_s)
    return steps_left == 0 or steps_left * step_dt_s < needed_s


def frozen_prefix_steps(latency_s: float, step_dt_s: float) -> int:
    """Leading steps of a new chunk that the arm takes from the committed chunk because the new one
    arrives ``latency_s`` after its observation's stamp: the actuation starts a late chunk at the
    step its arrival belongs to by the chunk executor's half-step rule (``floor(latency / dt +
    1/2)``, see vla_actuation.chunk_executor) and drops the ones before it, which the committed
    chunk has run meanwhile. Real-time chunking freezes this many steps to the committed ones."""
    latency_s = _check_seconds("latency_s", latency_s)
    return max(0, step_offset(0.0, latency_s, step_dt_s))


T = TypeVar("T")


@dataclass(frozen=True)
class OfferResult:
    """Outcome of :meth:`NewestObservation.offer`: ``kept`` and why (``stored``: the slot was empty,
    ``replaced``: it held an older observation, ``stale``: not newer than the newest one seen)."""

    kept: bool
    reason: str


class NewestObservation(Generic[T]):
    """Holds at most one pending observation: the newest by stamp.

    ``offer`` from the perception side: an observation newer than every one offered before replaces
    the pending one (counted in ``replaced`` when one was pending); one not newer (older or equal
    stamp, including one older than an observation already taken: the arm must never act on an older
    frame than the last inference did) is dropped and counted in ``dropped_stale``. ``take`` from
    the inference thread when it is free: the pending observation, or None, and the slot is empty
    again. Thread-safe (one lock, held for a few assignments).
    """

    STORED = "stored"
    REPLACED = "replaced"
    STALE = "stale"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[int, T] | None = None
        self._newest_ns: int | None = None  # newest stamp accepted, pending or already taken
        self.replaced = 0
        self.dropped_stale = 0

    def offer(self, stamp_ns: int, observation: T) -> OfferResult:
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise ValueError(f"NewestObservation.offer: stamp_ns {stamp_ns!r} must be an integer (ns)")
        stamp_ns = int(stamp_ns)
        with self._lock:
            if self._newest_ns is not None and stamp_ns <= self._newest_ns:
                self.dropped_stale += 1
                return OfferResult(False, self.STALE)
            reason = self.STORED if self._pending is None else self.REPLACED
            if self._pending is not None:
                self.replaced += 1
            self._pending = (stamp_ns, observation)
            self._newest_ns = stamp_ns
            return OfferResult(True, reason)

    def pending_stamp_ns(self) -> int | None:
        """The stamp of the pending observation (None when none is pending), left in the slot."""
        with self._lock:
            return None if self._pending is None else self._pending[0]

    def clear(self) -> None:
        """Drop the pending observation and forget the newest stamp (an episode start: a restarted
        simulation's clock may begin again below the old stamps)."""
        with self._lock:
            self._pending = None
            self._newest_ns = None

    def take(self) -> tuple[int, T] | None:
        """The pending ``(stamp_ns, observation)``, removed from the slot; None when none is pending."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._pending is not None


def committed_steps_left(chunk_start_s: float, usable_steps: int, step_dt_s: float, now_s: float) -> int:
    """Steps of a committed chunk that no control tick at or before ``now_s`` has taken: a tick at
    ``t`` runs the step it belongs to by the chunk executor's half-step rule (:func:`step_offset`),
    so the step ``now_s`` belongs to counts as begun, and only the first ``usable_steps`` run at all
    (the chunk's length within the actuation's open-loop bound). The actuation's ticks fall anywhere
    within a step, so the committed chunk may run out as soon as ``steps_left`` periods from the
    start of that step: the refill trigger (``steps_left * step_dt_s`` against the latency) plans
    with exactly that, and fires early by at most a step, never late."""
    step_dt_s = _check_period(step_dt_s)
    if isinstance(usable_steps, bool) or not isinstance(usable_steps, (int, np.integer)) or usable_steps < 0:
        raise ValueError(f"committed_steps_left: usable_steps {usable_steps!r} must be an integer >= 0")
    begun = max(0, step_offset(chunk_start_s, now_s, step_dt_s) + 1)
    return max(0, int(usable_steps) - begun)


def step_offset(from_stamp_s: float, to_stamp_s: float, step_dt_s: float) -> int:
    """The step of a chunk stamped ``from_stamp_s`` that covers the control step starting at
    ``to_stamp_s``, by the chunk executor's half-step rule (a tick belongs to the nearest step)."""
    return math.floor((to_stamp_s - from_stamp_s) / _check_period(step_dt_s) + 0.5 + _EPS)


# Replanning waits for an observation stamped this fraction of a control period short of the replan
# period: camera stamps jitter by a sim clock tick (10 ms) around their period.
REPLAN_STAMP_TOLERANCE = 0.25


def replan_min_gap_s(step_dt_s: float) -> float:
    """How much newer than the committed chunk's an observation must be to start any inference: a
    control period, less the stamp tolerance (a faster camera does not multiply the inferences)."""
    return (1 - REPLAN_STAMP_TOLERANCE) * _check_period(step_dt_s)


# Why an inference starts (InferenceScheduler.due), as the policy node counts them in /diagnostics.
FIRST = "first"  # nothing committed: the arm holds until a chunk arrives
REFILL = "refill"  # the committed steps run out within the latency estimate
REPLAN = "replan"  # the observation is replan_steps periods newer than the one the chunk came from


@dataclass(frozen=True)
class CommittedChunk:
    """The last chunk the policy published: its observation stamp (s), its continuous actions
    (H x D, as the actuation executes them) and how many of its steps can run (``usable_steps``)."""

    start_s: float
    actions: np.ndarray
    usable_steps: int


class InferenceScheduler:
    """When the policy starts an inference and what real-time chunking freezes (pure; used by the
    policy node and by the graph replica alike).

    An inference starts on the newest observation when nothing is committed (``first``), when the
    committed steps left cover less time than the latency estimate plus its margin (``refill``:
    the new chunk arrives before the arm runs out), or when the observation is ``replan_steps``
    control periods newer than the committed chunk's (``replan``: closed-loop replanning at a
    fixed execution horizon; 1 = every control step, a slow model then infers back to back on the
    newest frame whenever it is free). ``committed_for`` gives the actions the arm will run while
    the inference runs, on the new chunk's step grid, with the frozen prefix (the steps that will
    have begun when the chunk arrives) for real-time chunking.

    An observation less than a control period newer than the committed chunk's never starts one:
    cameras faster than the control rate do not multiply the inferences of a fast model.

    ``open_loop_s`` is the actuation's ``max_open_loop_s``: a chunk's step ``k`` runs only if it
    ends within that bound of the chunk's stamp.
    """

    def __init__(
        self, step_dt_s: float, open_loop_s: float, latency: LatencyEstimate, replan_steps: int = 1
    ) -> None:
        self.step_dt_s = _check_period(step_dt_s)
        self.open_loop_steps = math.floor(_check_seconds("open_loop_s", open_loop_s) / self.step_dt_s + _EPS)
        if isinstance(replan_steps, bool) or not isinstance(replan_steps, int) or replan_steps < 1:
            raise ValueError(f"InferenceScheduler: replan_steps {replan_steps!r} must be an integer >= 1")
        self.latency = latency
        self.replan_steps = replan_steps
        self.committed: CommittedChunk | None = None

    def reset(self) -> None:
        """A new episode: nothing is committed (the latency estimate is kept: same model)."""
        self.committed = None

    def on_chunk(self, start_s: float, actions: np.ndarray) -> None:
        """The policy published ``actions`` (H x D, continuous) computed from the observation at
        ``start_s``; the actuation replaces what it ran with it (receding horizon)."""
        actions = np.atleast_2d(np.asarray(actions, dtype=np.float64))
        usable = min(actions.shape[0], self.open_loop_steps)
        self.committed = CommittedChunk(float(start_s), actions, usable)

    def steps_left(self, now_s: float) -> int:
        if self.committed is None:
            return 0
        c = self.committed
        return committed_steps_left(c.start_s, c.usable_steps, self.step_dt_s, now_s)

    def refill_due(self, now_s: float) -> bool:
        return refill_due(
            self.steps_left(now_s), self.step_dt_s, self.latency.quantile_s(), self.latency.margin_s
        )

    def due(self, now_s: float, observation_stamp_s: float) -> str | None:
        """Why an inference on the observation stamped ``observation_stamp_s`` starts at ``now_s``
        (:data:`FIRST`, :data:`REFILL`, :data:`REPLAN`), or None: keep waiting."""
        if self.committed is None:
            return FIRST
        if observation_stamp_s - self.committed.start_s < replan_min_gap_s(self.step_dt_s) - _EPS:
            return None  # not a control step newer than what the committed chunk saw: no new plan
        newer_by = (observation_stamp_s - self.committed.start_s) / self.step_dt_s
        if self.refill_due(now_s):
            return REFILL
        if newer_by >= self.replan_steps - REPLAN_STAMP_TOLERANCE:
            return REPLAN
        return None

    def refill_at_s(self) -> float | None:
        """The earliest time at which :meth:`refill_due` turns true (None: nothing committed), for
        a caller that sleeps until then."""
        if self.committed is None:
            return None
        c = self.committed
        needed_s = self.latency.quantile_s() + self.latency.margin_s
        # due once steps_left <= max(0, ceil(needed_s / dt) - 1) (refill_due: always at 0 left), i.e.
        # once the steps begun reach usable - max(1, ceil(needed_s / dt)) + 1; b >= 1 steps have
        # begun from start + (b - 1.5) * dt on (committed_steps_left, the half-step rule)
        begun = c.usable_steps - max(1, math.ceil(needed_s / self.step_dt_s - _EPS)) + 1
        return c.start_s + (max(1, begun) - 1.5) * self.step_dt_s

    def committed_for(self, observation_stamp_s: float, now_s: float) -> tuple[np.ndarray, int] | None:
        """The committed chunk's actions for the new chunk's steps (the control step starting at
        ``observation_stamp_s + j * step_dt_s`` is row ``j``), as far as it can still run, and how
        many of them will have begun when an inference started at ``now_s`` arrives (``now_s``
        plus the latency quantile): the frozen prefix. None when nothing of it is left."""
        if self.committed is None:
            return None
        c = self.committed
        offset = step_offset(c.start_s, observation_stamp_s, self.step_dt_s)
        if not 0 <= offset < c.usable_steps:  # an older observation, or the chunk is spent
            return None
        actions = c.actions[offset : c.usable_steps]
        arrival_s = now_s + self.latency.quantile_s()
        frozen = frozen_prefix_steps(max(0.0, arrival_s - observation_stamp_s), self.step_dt_s)
        return actions, min(frozen, len(actions))
