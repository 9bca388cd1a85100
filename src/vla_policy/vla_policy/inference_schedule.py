"""When to start the next inference, and on which observation (pure; issue 24, points 1 and 2).

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
    """Steps of the committed chunk that will have been executed when a chunk started now arrives
    ``latency_s`` later: ``ceil(latency_s / step_dt_s)`` (a step that has begun counts as executed).
    Real-time chunking freezes this many leading steps of the new chunk to the committed ones."""
    latency_s = _check_seconds("latency_s", latency_s)
    step_dt_s = _check_period(step_dt_s)
    return max(0, math.ceil(latency_s / step_dt_s - _EPS))


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

    def take(self) -> tuple[int, T] | None:
        """The pending ``(stamp_ns, observation)``, removed from the slot; None when none is pending."""
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._pending is not None
