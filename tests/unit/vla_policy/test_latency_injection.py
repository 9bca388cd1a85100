"""The benchmark's injected latency: draws within L +- jitter, seeded; a backend padded to them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vla_policy.contract import Observation, PolicyOutput
from vla_policy.latency_injection import DelayedBackend, InjectedLatency


class _Instant:
    name = "instant"
    camera_names = ("primary",)
    guides_chunks = True

    def __init__(self) -> None:
        self.resets: list[int | None] = []

    def reset(self, seed: int | None = None) -> None:
        self.resets.append(seed)

    def infer(self, observation: Observation) -> PolicyOutput:
        return PolicyOutput(chunk=np.zeros((4, 7)))


def test_draws_stay_within_the_jitter_and_repeat_with_the_seed():
    draws = [InjectedLatency(0.3, 0.03, seed=5).draw() for _ in range(3)]
    assert len(set(draws)) == 1  # a fresh generator per object: the same first draw
    latency = InjectedLatency(0.3, 0.03, seed=5)
    many = np.array([latency.draw() for _ in range(2000)])
    assert many.min() >= 0.27 and many.max() <= 0.33 and many.std() > 0.01
    assert InjectedLatency(0.01, 0.05, seed=1).draw() >= 0.0  # never negative


@pytest.mark.parametrize(("latency", "jitter"), [(-0.1, 0.0), (0.1, float("nan")), (True, 0.0)])
def test_bad_latencies_are_refused_by_name(latency, jitter):
    with pytest.raises(ValueError, match="InjectedLatency"):
        InjectedLatency(latency, jitter)


def test_the_padded_backend_takes_the_drawn_latency_and_is_otherwise_the_inner_one():
    inner = _Instant()
    backend = DelayedBackend(inner, InjectedLatency(0.05))
    assert backend.name == "instant" and backend.guides_chunks and backend.camera_names == ("primary",)
    start = time.perf_counter()
    out = backend.infer(Observation(1, {}, "x"))
    assert time.perf_counter() - start >= 0.05
    assert out.chunk.shape == (4, 7)
    backend.reset(3)
    assert inner.resets == [3]
