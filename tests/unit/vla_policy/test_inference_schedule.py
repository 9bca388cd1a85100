"""The asynchronous-inference schedule (issue 24): the refill trigger, the frozen prefix, the
latency estimate's warm-up handling, and newest-observation selection."""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_policy.inference_schedule import (
    DEFAULT_MARGIN_S,
    DEFAULT_QUANTILE_PCT,
    DEFAULT_WINDOW,
    LatencyEstimate,
    NewestObservation,
    frozen_prefix_steps,
    refill_due,
)

# Exactly representable in binary, so the boundary products are exact.
DT = 0.125
LATENCY = 0.25
MARGIN = 0.125  # latency + margin = 0.375 s = exactly 3 steps


# --- refill trigger ---------------------------------------------------------------------------


def test_refill_fires_only_below_the_boundary():
    assert not refill_due(3, DT, LATENCY, MARGIN)  # 3 * dt == latency + margin: still covered
    assert refill_due(2, DT, LATENCY, MARGIN)  # 2 * dt < latency + margin


@pytest.mark.parametrize("steps_left", [0, 1, 2, 3, 4, 10, 1000])
def test_refill_matches_the_coverage_rule(steps_left):
    assert refill_due(steps_left, DT, LATENCY, MARGIN) == (steps_left * DT < LATENCY + MARGIN)


def test_refill_never_due_with_many_steps_left():
    assert not any(refill_due(n, 0.1, 0.204, DEFAULT_MARGIN_S) for n in range(3, 500))


def test_refill_always_due_with_no_step_left():
    assert refill_due(0, 0.1, 0.0, 0.0)
    assert refill_due(0, 10.0, 0.0, 0.0)


def test_refill_grows_with_the_latency():
    """An OpenVLA-7B-like latency (8.5 s) at 5 Hz needs 43 steps (8.6 s) of cover."""
    assert refill_due(42, 0.2, 8.5, 0.0)
    assert not refill_due(43, 0.2, 8.5, 0.0)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, DT, LATENCY, MARGIN), "steps_left -1"),
        ((1.5, DT, LATENCY, MARGIN), "steps_left 1.5"),
        ((1, 0.0, LATENCY, MARGIN), "step_dt_s: must be > 0"),
        ((1, DT, float("nan"), MARGIN), "latency_estimate_s"),
        ((1, DT, LATENCY, -0.1), "margin_s: must be >= 0"),
    ],
)
def test_refill_rejects_bad_inputs_by_name(args, match):
    with pytest.raises(ValueError, match=match):
        refill_due(*args)


@pytest.mark.parametrize(
    ("latency_s", "step_dt_s", "steps"),
    [(0.0, 0.2, 0), (0.05, 0.2, 1), (0.2, 0.2, 1), (0.21, 0.2, 2), (0.3, 0.1, 3), (8.4, 0.2, 42)],
)
def test_frozen_prefix_is_the_steps_begun_during_inference(latency_s, step_dt_s, steps):
    assert frozen_prefix_steps(latency_s, step_dt_s) == steps


def test_frozen_prefix_rejects_a_zero_period():
    with pytest.raises(ValueError, match="step_dt_s"):
        frozen_prefix_steps(0.1, 0.0)


# --- latency estimate -------------------------------------------------------------------------


def test_estimate_is_the_window_quantile_plus_the_margin():
    estimate = LatencyEstimate(initial_s=1.0, window=10, quantile_pct=90.0, warmup_samples=0, margin_s=0.01)
    for k in range(1, 11):
        estimate.record(k * 0.01)  # 0.01 .. 0.10
    assert estimate.quantile_s() == pytest.approx(0.09)  # nearest rank 9 of 10
    assert estimate.estimate_s() == pytest.approx(0.10)


def test_estimate_before_any_measurement_is_the_initial_value():
    estimate = LatencyEstimate(initial_s=0.3, margin_s=0.02)
    assert estimate.estimate_s() == pytest.approx(0.32)
    estimate.record(2.0)  # the default warm-up sample: ignored, but remembered
    assert estimate.count == 0 and estimate.last_warmup_s == 2.0
    assert estimate.estimate_s() == pytest.approx(0.32)


def test_a_warm_up_spike_is_ignored():
    estimate = LatencyEstimate(initial_s=0.2)
    estimate.record(2.0)
    for _ in range(5):
        estimate.record(0.02)
    assert estimate.quantile_s() == pytest.approx(0.02)


def test_a_counted_spike_leaves_after_one_window():
    """Without warm-up skipping, a 2 s first sample holds the estimate high only until
    ``window`` normal samples have followed it."""
    window = 16
    # quantile 100 % (the window's maximum): the worst case for a spike
    estimate = LatencyEstimate(initial_s=0.2, window=window, quantile_pct=100.0, warmup_samples=0, margin_s=0)
    estimate.record(2.0)
    for _ in range(window - 1):
        estimate.record(0.02)
    assert estimate.quantile_s() == 2.0
    estimate.record(0.02)
    assert estimate.quantile_s() == pytest.approx(0.02)


def test_rare_spikes_in_a_full_window_do_not_count():
    estimate = LatencyEstimate(initial_s=0.2, warmup_samples=0, margin_s=0.0)
    ignored = DEFAULT_WINDOW - int(np.ceil(DEFAULT_WINDOW * DEFAULT_QUANTILE_PCT / 100))
    assert ignored >= 1
    for _ in range(DEFAULT_WINDOW - ignored):
        estimate.record(0.02)
    for _ in range(ignored):
        estimate.record(1.5)
    assert estimate.quantile_s() == pytest.approx(0.02)
    estimate.record(1.5)  # one spike more than the quantile skips: now it counts
    assert estimate.quantile_s() == pytest.approx(1.5)


def test_recording_allocates_nothing():
    estimate = LatencyEstimate(initial_s=0.2, window=4096)
    estimate.record(0.1)
    estimate.record(0.1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(20000):
            estimate.record(k * 1e-6)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 4096, f"{grown} bytes allocated by 20,000 samples"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_s": -1.0}, "initial_s: must be >= 0"),
        ({"initial_s": 0.1, "window": 0}, "window 0"),
        ({"initial_s": 0.1, "quantile_pct": 0.0}, "quantile_pct 0.0"),
        ({"initial_s": 0.1, "warmup_samples": -1}, "warmup_samples -1"),
        ({"initial_s": 0.1, "margin_s": float("inf")}, "margin_s"),
    ],
)
def test_estimate_rejects_bad_settings_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatencyEstimate(**kwargs)


def test_estimate_rejects_a_bad_measurement():
    with pytest.raises(ValueError, match="latency_s: must be >= 0"):
        LatencyEstimate(initial_s=0.1).record(-0.5)


# --- newest observation -----------------------------------------------------------------------


def test_a_newer_observation_replaces_the_pending_one():
    box: NewestObservation[str] = NewestObservation()
    assert box.offer(100, "a").reason == "stored"
    assert box.offer(200, "b").reason == "replaced"
    assert box.replaced == 1 and box.dropped_stale == 0
    assert box.take() == (200, "b")
    assert box.take() is None and not box.pending


def test_older_or_equal_stamps_are_dropped_as_stale():
    box: NewestObservation[str] = NewestObservation()
    box.offer(200, "b")
    assert box.offer(100, "a") == box.offer(200, "again")
    assert not box.offer(100, "a").kept
    assert box.dropped_stale == 3 and box.replaced == 0
    assert box.take() == (200, "b")


def test_an_observation_older_than_one_taken_is_dropped():
    box: NewestObservation[str] = NewestObservation()
    box.offer(200, "b")
    box.take()
    assert box.offer(150, "late").reason == "stale"
    assert box.take() is None
    assert box.offer(250, "c").reason == "stored"
    assert box.take() == (250, "c")


def test_offer_rejects_a_non_integer_stamp():
    with pytest.raises(ValueError, match="stamp_ns 1.5"):
        NewestObservation().offer(1.5, "x")


_events = st.lists(
    st.one_of(st.integers(min_value=0, max_value=50).map(lambda s: ("offer", s)), st.just(("take", None))),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_events)
def test_take_returns_the_newest_stamp_offered_since_the_last_take(events):
    """take() gives the largest stamp offered since the previous take when it is newer than every
    earlier one, else None; the counts add up."""
    box: NewestObservation[int] = NewestObservation()
    newest_before: int | None = None  # newest stamp offered before the previous take
    since: list[int] = []
    reasons: list[str] = []
    for kind, stamp in events:
        if kind == "offer":
            since.append(stamp)
            reasons.append(box.offer(stamp, stamp * 10).reason)
            continue
        got = box.take()
        best = max(since, default=None)
        if best is None or (newest_before is not None and best <= newest_before):
            assert got is None
        else:
            assert got == (best, best * 10)
        if best is not None:
            newest_before = best if newest_before is None else max(newest_before, best)
        since = []
    assert set(reasons) <= {"stored", "replaced", "stale"}
    assert box.replaced == reasons.count("replaced")
    assert box.dropped_stale == reasons.count("stale")


def test_concurrent_offers_keep_the_newest():
    box: NewestObservation[int] = NewestObservation()
    per_thread = 2000

    def offer_all(offset: int) -> None:
        for k in range(per_thread):
            box.offer(2 * k + offset, k)

    threads = [threading.Thread(target=offer_all, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamp, _ = box.take()
    assert stamp == 2 * (per_thread - 1) + 1
    assert 1 + box.replaced + box.dropped_stale == 2 * per_thread
