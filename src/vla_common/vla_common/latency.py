"""Per-stage latency bookkeeping (pure): bounded samples, p50/p99 in milliseconds."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class StageTimer:
    """Keeps the last ``capacity`` durations of each named stage."""

    def __init__(self, capacity: int = 20000) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._capacity = capacity

    def record(self, stage: str, duration_ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self._capacity)).append(float(duration_ms))

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(stage, (time.perf_counter() - start) * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        """{stage: {"p50": ms, "p99": ms, "count": n, "total": ms}} over the kept samples."""
        out: dict[str, dict[str, float]] = {}
        for stage, samples in self._samples.items():
            if samples:
                values = np.fromiter(samples, dtype=np.float64)
                out[stage] = {
                    "p50": float(np.percentile(values, 50)),
                    "p99": float(np.percentile(values, 99)),
                    "count": float(values.size),
                    "total": float(values.sum()),
                }
        return out
