"""StageTimer: the last ``capacity`` durations per stage, with no memory growth while they fill."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from vla_common.latency import StageTimer


def test_summary_is_over_the_last_capacity_samples():
    timer = StageTimer(capacity=100)
    for k in range(250):
        timer.record("step", float(k))
    kept = np.arange(150, 250, dtype=float)
    summary = timer.summary()["step"]
    assert summary["count"] == 100
    assert summary["total"] == kept.sum()
    assert summary["p50"] == pytest.approx(np.percentile(kept, 50))
    assert summary["p99"] == pytest.approx(np.percentile(kept, 99))


def test_a_partly_filled_window_counts_only_what_was_recorded():
    timer = StageTimer(capacity=100)
    with timer.measure("decode"):
        pass
    timer.record("step", 2.0)
    timer.record("step", 4.0)
    summary = timer.summary()
    assert summary["step"] == {"p50": 3.0, "p99": pytest.approx(3.98), "count": 2.0, "total": 6.0}
    assert summary["decode"]["count"] == 1 and summary["decode"]["p50"] >= 0


def test_recording_allocates_nothing_once_a_stage_exists():
    """The soak's actuation grew ~155 KB a minute while deques of Python floats filled (32 bytes a
    sample, 20,000 samples a stage): a long-running node's memory must be flat from the start."""
    timer = StageTimer(capacity=20000)
    timer.record("step", 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(20000):
            timer.record("step", k * 1e-3)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes allocated by 20,000 samples"


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity 0 must be at least 1"):
        StageTimer(capacity=0)
