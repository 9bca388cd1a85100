"""A model of a chosen speed: any backend padded to an injected inference latency (benchmarks only).

``vla-stack bench control --model-latency-ms L`` asks how the stack behaves with a model that takes
L per chunk (Octo-Small's 204 ms on this CPU, OpenVLA-7B's 170-230 ms on an RTX 4090) while running
a model that is really there (octo-sim takes about 20 ms). :class:`DelayedBackend` runs the wrapped
backend and then sleeps until the inference has taken its drawn latency; the graph replica, whose
clock is simulated, draws the same latencies from :class:`InjectedLatency` and sleeps not at all.
A model slower than the drawn latency is not slowed further (the draw is a floor).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from vla_policy.contract import Observation, PolicyBackend, PolicyOutput


class InjectedLatency:
    """Latency draws ``latency_s + U(-jitter_s, +jitter_s)`` (at least 0), seeded."""

    def __init__(self, latency_s: float, jitter_s: float = 0.0, seed: int = 0) -> None:
        for name, value in (("latency_s", latency_s), ("jitter_s", jitter_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"InjectedLatency: {name} must be a finite number of seconds, got {value!r}")
            if value < 0:
                raise ValueError(f"InjectedLatency: {name} must be >= 0 s, got {value!r}")
        self.latency_s = float(latency_s)
        self.jitter_s = float(jitter_s)
        self.reseed(seed)

    def reseed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def draw(self) -> float:
        jitter = self._rng.uniform(-self.jitter_s, self.jitter_s) if self.jitter_s > 0 else 0.0
        return max(0.0, self.latency_s + jitter)


class DelayedBackend:
    """``inner`` with every ``infer`` padded to a drawn latency (see the module docstring). Everything
    else (name, action space, cameras, ``guides_chunks``, ``horizon``) is the inner backend's."""

    def __init__(self, inner: PolicyBackend, latency: InjectedLatency) -> None:
        self.inner = inner
        self.latency = latency

    def __getattr__(self, name: str) -> Any:  # name, action_space, camera_names, image_size, ...
        return getattr(self.inner, name)

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed)
        self.latency.reseed(seed)

    def infer(self, observation: Observation) -> PolicyOutput:
        start = time.perf_counter()
        target_s = self.latency.draw()
        output = self.inner.infer(observation)
        remaining_s = target_s - (time.perf_counter() - start)
        if remaining_s > 0:
            time.sleep(remaining_s)
        return output
