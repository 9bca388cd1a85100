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
    [
        (0.0, 0.2, 0),
        (0.05, 0.2, 0),
        (0.1, 0.2, 1),
        (0.2, 0.2, 1),
        (0.29, 0.2, 1),
        (0.3, 0.2, 2),
        (0.3, 0.1, 3),
        (8.4, 0.2, 42),
    ],
)
def test_frozen_prefix_is_what_the_executor_drops_from_a_late_chunk(latency_s, step_dt_s, steps):
    """The executor starts a chunk arriving ``latency_s`` after its stamp at the step that tick
    belongs to (half-step rule); the steps before it ran from the committed chunk."""
    from vla_actuation.chunk_executor import ChunkExecutor  # lazy: the rule's owner, for this check only

    executor = ChunkExecutor("receding_horizon", step_dt_s, max_open_loop_s=1000.0)
    result = executor.submit(np.zeros((100, 7)), 10.0, 10.0 + latency_s)
    assert result.dropped_steps == steps
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


# --- the scheduler: when the policy node (and the replica) start an inference ------------------

from vla_policy.inference_schedule import (  # noqa: E402
    FIRST,
    REFILL,
    REPLAN,
    InferenceScheduler,
    committed_steps_left,
    step_offset,
)


def _scheduler(latency_s: float, replan_steps: int = 1, open_loop_s: float = 1.0) -> InferenceScheduler:
    estimate = LatencyEstimate(latency_s, warmup_samples=0, margin_s=0.0)
    return InferenceScheduler(DT, open_loop_s, estimate, replan_steps=replan_steps)


def test_committed_steps_left_counts_the_step_a_tick_now_would_run():
    """A tick at t runs the step it belongs to by the half-step rule (the chunk executor's)."""
    assert committed_steps_left(1.0, 4, DT, 0.5) == 4  # not started yet
    assert committed_steps_left(1.0, 4, DT, 1.0 - 0.5 * DT) == 3  # a tick now would run step 0
    assert committed_steps_left(1.0, 4, DT, 1.0) == 3
    assert committed_steps_left(1.0, 4, DT, 1.0 + 0.49 * DT) == 3
    assert committed_steps_left(1.0, 4, DT, 1.0 + 0.5 * DT) == 2  # ... and now step 1
    assert committed_steps_left(1.0, 4, DT, 1.0 + 2.5 * DT) == 0  # the last step may run
    assert committed_steps_left(1.0, 4, DT, 9.0) == 0


def test_steps_left_agree_with_what_the_executor_still_runs():
    """Whatever the actuation's tick phase, a tick after now finds at most steps_left steps."""
    from vla_actuation.chunk_executor import ChunkExecutor  # lazy: the rule's owner, for this check only

    for phase in np.linspace(0.0, DT, 7, endpoint=False):
        executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=4 * DT)
        executor.submit(np.zeros((4, 7)), 0.0, 0.0)
        ticks = phase + DT * np.arange(8)
        ran = [t for t in ticks if executor.next_step(t).action is not None]
        for now in ticks:
            later = sum(1 for t in ran if t > now + 1e-9)
            assert later <= committed_steps_left(0.0, 4, DT, now), (phase, now)


def test_step_offset_is_the_executors_half_step_rule():
    assert step_offset(0.0, 2 * DT, DT) == 2
    assert step_offset(0.0, 1.5 * DT, DT) == 2  # half a step late belongs to the next one
    assert step_offset(0.0, 1.4 * DT, DT) == 1


def test_first_observation_starts_an_inference_then_only_newer_ones():
    s = _scheduler(0.01)
    assert s.due(0.0, 0.0) == FIRST
    s.on_chunk(0.0, np.zeros((8, 7)))
    assert s.due(0.01, 0.0) is None  # the committed chunk's own observation
    assert s.due(DT, DT) == REPLAN  # one control period newer: replan every step (default)


def test_replan_waits_for_the_execution_horizon():
    s = _scheduler(0.01, replan_steps=3)
    s.on_chunk(0.0, np.zeros((8, 7)))
    assert s.due(DT, DT) is None
    assert s.due(2 * DT, 2 * DT) is None
    assert s.due(3 * DT, 3 * DT) == REPLAN


def test_refill_starts_an_inference_before_the_committed_steps_run_out():
    """Latency 0.3 s, 5 steps of 0.125 s committed: due once fewer than 3 steps are left (2 * 0.125
    < 0.3), i.e. once a tick would run step 2 (from 0.1875 s); never due earlier."""
    s = _scheduler(0.3, replan_steps=100, open_loop_s=5 * DT)
    s.on_chunk(0.0, np.zeros((8, 7)))  # 5 usable steps within the open-loop bound
    assert s.committed.usable_steps == 5
    assert s.due(0.18, 0.2) is None
    assert s.due(0.1875, 0.2) == REFILL  # a tick now would run step 2: 2 steps (0.25 s) are left
    assert s.refill_at_s() == pytest.approx(0.1875)
    # The chunk arrives at 0.4875 s; a tick then still finds step 4 (0.5 s +- half a step).
    assert 0.1875 + 0.3 < 4.5 * DT


def test_refill_at_is_when_due_turns_true():
    for latency in (0.0, 0.05, 0.125, 0.2, 0.3, 0.5, 0.7, 2.0):
        s = _scheduler(latency, replan_steps=100, open_loop_s=5 * DT)
        s.on_chunk(1.0, np.zeros((8, 7)))
        at = s.refill_at_s()
        assert s.refill_due(at + 1e-9), latency
        assert at <= 1.0 or not s.refill_due(at - 1e-3), latency


def test_committed_actions_line_up_with_the_new_chunk_and_freeze_what_runs_meanwhile():
    s = _scheduler(0.3, open_loop_s=8 * DT)
    actions = np.arange(8)[:, None] * np.ones((1, 7))  # row k holds k
    s.on_chunk(0.0, actions)
    # Observation two steps later, inference starts 0.05 s after it, arrives 0.35 s after it
    # (2.8 steps): the executor starts the new chunk at its step 3, steps 0..2 ran from the old
    # one and are frozen; the new chunk's row j is the old row j + 2.
    committed, frozen = s.committed_for(2 * DT, 2 * DT + 0.05)
    np.testing.assert_array_equal(committed[:, 0], np.arange(2, 8))
    assert frozen == 3


def test_committed_is_none_when_the_committed_chunk_is_spent():
    s = _scheduler(0.01, open_loop_s=2 * DT)  # 2 usable steps
    s.on_chunk(0.0, np.zeros((8, 7)))
    assert s.committed_for(2 * DT, 2 * DT) is None
    committed, frozen = s.committed_for(DT, DT)
    assert committed.shape == (1, 7) and frozen == 0  # arrives 0.01 s after its stamp: its step 0 runs


def test_reset_forgets_the_committed_chunk():
    s = _scheduler(0.01)
    s.on_chunk(0.0, np.zeros((4, 7)))
    s.reset()
    assert s.due(0.0, 0.0) == FIRST and s.committed_for(0.0, 0.0) is None


def test_an_observation_less_than_a_step_newer_starts_nothing():
    """A 10 Hz camera and a 5 Hz control rate: the frame half a step newer waits, even when the
    committed chunk runs out (a one-step model)."""
    s = _scheduler(0.01)
    s.on_chunk(0.0, np.zeros((1, 7)))  # one action: nothing left once it runs
    assert s.due(0.5 * DT, 0.5 * DT) is None
    assert s.due(DT, DT) == REFILL


def test_newest_observation_clear_forgets_the_newest_stamp():
    box = NewestObservation()
    box.offer(100, "a")
    assert box.pending_stamp_ns() == 100
    box.clear()
    assert box.pending_stamp_ns() is None
    assert box.offer(5, "b").kept  # an older clock after a restart is accepted again
