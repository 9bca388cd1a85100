"""Per-stage latency bookkeeping (pure): bounded samples, p50/p99 in milliseconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

DEFAULT_CAPACITY = 20000  # samples kept per stage: 400 s of a 50 Hz stage, 160 KB


class _Ring:
    """The last ``capacity`` float64 values in a buffer filled (and so resident) when created: a
    long-running node's memory does not creep while the window fills (a deque of Python floats took
    32 bytes a sample and grew a node by ~4 MB over its first 30 minutes)."""

    def __init__(self, capacity: int) -> None:
        self.values = np.full(capacity, np.nan)
        self.next = 0
        self.count = 0

    def append(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % self.values.size
        self.count = min(self.count + 1, self.values.size)

    def kept(self) -> np.ndarray:
        return self.values[: self.count].copy()


class StageTimer:
    """Keeps the last ``capacity`` durations of each named stage."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"StageTimer: capacity {capacity} must be at least 1")
        self._samples: dict[str, _Ring] = {}
        self._capacity = capacity
        self._lock = threading.Lock()  # the policy node records from several executor threads

    def record(self, stage: str, duration_ms: float) -> None:
        with self._lock:
            ring = self._samples.get(stage)
            if ring is None:
                ring = self._samples[stage] = _Ring(self._capacity)
            ring.append(float(duration_ms))

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, (time.perf_counter() - start) * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50": ms, "p99": ms, "count": n, "total": ms}} over the kept samples."""
        with self._lock:
            kept = {stage: ring.kept() for stage, ring in self._samples.items()}
        out: dict[str, dict[str, float]] = {}
        for stage, values in kept.items():
            if values.size:
                out[stage] = {
                    "p50": float(np.percentile(values, 50)),
                    "p99": float(np.percentile(values, 99)),
                    "count": float(values.size),
                    "total": float(values.sum()),
                }
        return out
