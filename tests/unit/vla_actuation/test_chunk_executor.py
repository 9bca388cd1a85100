"""Chunk execution in all three modes; late, stale and out-of-order chunks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_actuation.chunk_executor import ChunkExecutor

DT = 0.2


def _chunk(*values: float) -> np.ndarray:
    """An H x 2 chunk whose rows are (v, -v): easy to recognise."""
    return np.array([[v, -v] for v in values], dtype=float)


def _value(action: np.ndarray | None) -> float | None:
    return None if action is None else float(action[0])


# --- construction -----------------------------------------------------------------------------
def test_unknown_mode_names_it_and_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'chunked'.*single_step, receding_horizon, temporal_ensembling"):
        ChunkExecutor("chunked", DT)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"step_dt_s": 0.0}, "step_dt_s"),
        ({"step_dt_s": float("nan")}, "step_dt_s"),
        ({"max_open_loop_s": 0.1}, "max_open_loop_s"),
        ({"ensemble_decay": -1.0}, "ensemble_decay"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict, field: str) -> None:
    settings = {"step_dt_s": DT, **kwargs}
    with pytest.raises(ValueError, match=field):
        ChunkExecutor("receding_horizon", **settings)


# --- single step ------------------------------------------------------------------------------
def test_single_step_executes_once_and_never_repeats() -> None:
    executor = ChunkExecutor("single_step", DT)
    result = executor.submit(_chunk(1.0, 2.0, 3.0), chunk_start_s=10.0, now_s=10.15)
    assert result.accepted and result.dropped_steps == 0
    assert _value(executor.next_action(10.2)) == 1.0  # only step 0 is used
    assert executor.next_action(10.4) is None
    assert executor.next_action(10.6) is None
    assert executor.submit(_chunk(4.0), 10.6, 10.7).accepted
    assert _value(executor.next_action(10.8)) == 4.0
    assert executor.next_action(10.85) is None  # the same tick again
    assert executor.next_action(11.0) is None
    executor.reset()
    assert executor.submit(_chunk(5.0), 11.0, 11.1).accepted
    assert _value(executor.next_action(11.2)) == 5.0


def test_single_step_uses_the_newest_action() -> None:
    executor = ChunkExecutor("single_step", DT)
    executor.submit(_chunk(1.0), 10.0, 10.05)
    executor.submit(_chunk(2.0), 10.1, 10.15)
    assert _value(executor.next_action(10.2)) == 2.0
    assert executor.next_action(10.4) is None


def test_single_step_rejects_an_old_action_and_expires_a_waiting_one() -> None:
    executor = ChunkExecutor("single_step", DT, max_open_loop_s=0.5)
    result = executor.submit(_chunk(1.0), 10.0, 10.6)
    assert not result.accepted and "old" in result.reason
    assert executor.submit(_chunk(2.0), 11.0, 11.1).accepted
    assert executor.next_action(11.7) is None  # 0.7 s after its observation: too old to run


def test_out_of_order_and_duplicate_chunks_are_rejected() -> None:
    for mode in ("single_step", "receding_horizon", "temporal_ensembling"):
        executor = ChunkExecutor(mode, DT)
        assert executor.submit(_chunk(1.0, 2.0), 10.0, 10.05).accepted
        older = executor.submit(_chunk(3.0, 4.0), 9.9, 10.06)
        duplicate = executor.submit(_chunk(3.0, 4.0), 10.0, 10.06)
        assert not older.accepted and "not newer" in older.reason
        assert not duplicate.accepted


@pytest.mark.parametrize(
    ("chunk", "phrase"),
    [
        (np.array([[1.0, np.nan]]), "non-finite"),
        (np.zeros((0, 2)), "H x D"),
        (np.zeros((2, 2, 2)), "H x D"),
        (np.array([["a", "b"]]), "not an array"),
    ],
)
def test_bad_chunks_are_rejected_with_a_reason(chunk: np.ndarray, phrase: str) -> None:
    result = ChunkExecutor("receding_horizon", DT).submit(chunk, 10.0, 10.0)
    assert not result.accepted and phrase in result.reason


def test_width_change_is_rejected() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT)
    assert executor.submit(np.zeros((4, 7)), 10.0, 10.0).accepted
    result = executor.submit(np.zeros((4, 6)), 10.2, 10.2)
    assert not result.accepted and "expected 7 values" in result.reason


# --- receding horizon -------------------------------------------------------------------------
def test_receding_horizon_follows_the_chunk_in_time() -> None:
    executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=0.8)
    assert executor.submit(_chunk(0, 1, 2, 3, 4, 5), 10.0, 10.03).accepted
    ticks = [10.03, 10.23, 10.41, 10.62, 10.83, 11.03]  # jittered 5 Hz ticks
    values = [_value(executor.next_action(t)) for t in ticks]
    # Steps 0..3 end within 0.8 s of the observation; steps 4 and 5 are never run open loop.
    assert values == [0.0, 1.0, 2.0, 3.0, None, None]


def test_receding_horizon_returns_each_tick_once() -> None:
    executor = ChunkExecutor("receding_horizon", DT)
    executor.submit(_chunk(0, 1, 2, 3), 10.0, 10.0)
    assert _value(executor.next_action(10.0)) == 0.0
    assert executor.next_action(10.0) is None
    assert executor.next_action(10.05) is None
    assert _value(executor.next_action(10.2)) == 1.0


def test_late_chunk_drops_past_steps_without_a_jump() -> None:
    executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=1.6)
    result = executor.submit(_chunk(0, 1, 2, 3, 4, 5), 10.0, 10.45)  # 0.45 s late
    assert result.accepted and result.dropped_steps == 2 and "2 step" in result.reason
    assert _value(executor.next_action(10.45)) == 2.0
    assert _value(executor.next_action(10.65)) == 3.0


def test_chunk_entirely_in_the_past_is_rejected() -> None:
    executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=1.6)
    result = executor.submit(_chunk(0, 1, 2), 10.0, 10.55)
    assert not result.accepted and result.dropped_steps == 3 and "past" in result.reason
    assert executor.next_action(10.6) is None


def test_chunk_left_only_with_steps_beyond_the_open_loop_bound_is_rejected() -> None:
    executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=0.8)
    result = executor.submit(_chunk(*range(8)), 10.0, 10.75)  # steps 4.. remain, all past 0.8 s
    assert not result.accepted and "max_open_loop_s" in result.reason


def test_new_chunk_cancels_the_old_one_with_continuous_hand_off() -> None:
    executor = ChunkExecutor("receding_horizon", DT)
    executor.submit(_chunk(0, 1, 2, 3), 10.0, 10.0)
    assert _value(executor.next_action(10.0)) == 0.0
    assert _value(executor.next_action(10.2)) == 1.0
    executor.submit(_chunk(100, 101, 102, 103), 10.25, 10.35)
    assert executor.stored_chunks == 1
    # Tick 10.4 is step 1 of the new chunk (0.15 s after its start, within half a step).
    assert _value(executor.next_action(10.4)) == 101.0
    assert _value(executor.next_action(10.6)) == 102.0
    assert _value(executor.next_action(10.8)) == 103.0
    assert executor.next_action(11.0) is None  # old chunk's remaining steps never come back


# --- temporal ensembling ----------------------------------------------------------------------
def test_ensembling_averages_every_covering_prediction_uniformly() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT, max_open_loop_s=0.8)
    executor.submit(_chunk(1, 2, 3, 4), 10.0, 10.0)
    assert _value(executor.next_action(10.0)) == 1.0
    executor.submit(_chunk(10, 20, 30, 40), 10.2, 10.2)
    np.testing.assert_allclose(executor.next_action(10.2), [(2 + 10) / 2, -(2 + 10) / 2])
    executor.submit(_chunk(100, 200, 300, 400), 10.4, 10.4)
    assert _value(executor.next_action(10.4)) == pytest.approx((3 + 20 + 100) / 3)
    assert _value(executor.next_action(10.6)) == pytest.approx((4 + 30 + 200) / 3)
    # At 10.8 the first chunk no longer covers now and is dropped.
    assert _value(executor.next_action(10.8)) == pytest.approx((40 + 300) / 2)
    assert executor.stored_chunks == 2


def test_ensembling_weights_favour_the_oldest_prediction() -> None:
    decay = 0.5
    executor = ChunkExecutor("temporal_ensembling", DT, ensemble_decay=decay)
    executor.submit(_chunk(1, 2, 3, 4), 10.0, 10.0)
    executor.submit(_chunk(10, 20, 30, 40), 10.2, 10.2)
    executor.submit(_chunk(100, 200, 300, 400), 10.4, 10.4)
    weights = np.exp(-decay * np.arange(3))  # i = 0 is the oldest chunk
    expected = float(weights @ [3, 20, 100] / weights.sum())
    assert _value(executor.next_action(10.4)) == pytest.approx(expected)
    assert expected < (3 + 20 + 100) / 3


def test_ensembling_holds_when_the_policy_stops() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT, max_open_loop_s=0.8)
    executor.submit(_chunk(1, 2, 3, 4, 5, 6), 10.0, 10.0)
    values = [_value(executor.next_action(10.0 + 0.2 * k)) for k in range(6)]
    assert values == [1.0, 2.0, 3.0, 4.0, None, None]
    assert executor.stored_chunks == 0


def test_ensembling_late_chunk_contributes_only_current_steps() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT)
    executor.submit(_chunk(1, 2, 3, 4), 10.0, 10.0)
    result = executor.submit(_chunk(10, 20, 30, 40), 10.1, 10.42)  # arrives 0.32 s after its observation
    assert result.accepted and result.dropped_steps == 2
    assert _value(executor.next_action(10.42)) == pytest.approx((3 + 30) / 2)


def test_reset_forgets_everything() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT)
    executor.submit(_chunk(1, 2, 3, 4), 10.0, 10.0)
    executor.reset()
    assert executor.stored_chunks == 0 and executor.next_action(10.2) is None
    assert executor.submit(_chunk(5, 6), 9.0, 9.0).accepted  # older stamps are fine after a reset
    assert math.isclose(_value(executor.next_action(9.0)), 5.0)


def test_temporal_ensembling_keeps_only_the_chunks_that_still_act_while_nothing_executes() -> None:
    """Held (e-stop, no joint states) while chunks keep arriving at 5 Hz for a minute: the executor
    keeps the chunks that can still contribute, not all 300 (actuation's memory in the soak)."""
    executor = ChunkExecutor("temporal_ensembling", DT, max_open_loop_s=0.8)
    for k in range(300):
        assert executor.submit(_chunk(k, k, k, k), 10.0 + DT * k, 10.0 + DT * k).accepted
    assert len(executor._chunks) == 4  # 4 steps of 0.2 s: the last 4 chunks still cover now
    assert _value(executor.next_action(10.0 + DT * 299)) == pytest.approx((296 + 297 + 298 + 299) / 4)


# --- what each tick was: boundary, idle, already served ----------------------------------------
def _tick(executor: ChunkExecutor, now_s: float) -> tuple[float | None, bool, bool]:
    result = executor.next_step(now_s)
    return _value(result.action), result.boundary, result.idle


def test_receding_horizon_ticks_say_boundary_idle_or_served() -> None:
    executor = ChunkExecutor("receding_horizon", DT, max_open_loop_s=1.6)
    assert _tick(executor, 9.8) == (None, False, True)  # nothing submitted yet: idle
    executor.submit(_chunk(0, 1, 2), 10.0, 10.0)
    assert _tick(executor, 10.0) == (0.0, True, False)  # first step of a newly accepted chunk
    assert _tick(executor, 10.05) == (None, False, False)  # the same tick again: served, not idle
    assert _tick(executor, 10.2) == (1.0, False, False)
    executor.submit(_chunk(10, 11, 12), 10.4, 10.4)  # the join: the next step comes from it
    assert _tick(executor, 10.4) == (10.0, True, False)
    assert _tick(executor, 10.6) == (11.0, False, False)
    assert _tick(executor, 10.8) == (12.0, False, False)
    assert _tick(executor, 11.0) == (None, False, True)  # the chunk ran out: idle
    assert _tick(executor, 11.2) == (None, False, True)
    executor.reset()
    executor.submit(_chunk(5, 6), 12.0, 12.0)
    assert _tick(executor, 12.0) == (5.0, True, False)  # after a reset the first step is a boundary


def test_receding_horizon_a_chunk_not_started_yet_is_idle_a_step_run_before_is_served() -> None:
    executor = ChunkExecutor("receding_horizon", DT)
    executor.submit(_chunk(0, 1, 2), 10.5, 10.1)  # stamped ahead of now: starts at 10.5
    assert _tick(executor, 10.1) == (None, False, True)
    assert _tick(executor, 10.41) == (0.0, True, False)  # within half a step of its start
    # 0.11 s later (more than half a period) but still step 0's time: that step already ran
    assert _tick(executor, 10.52) == (None, False, False)
    assert _tick(executor, 10.71) == (1.0, False, False)


def test_single_step_every_action_is_a_boundary_and_a_spent_action_leaves_idle_ticks() -> None:
    executor = ChunkExecutor("single_step", DT)
    executor.submit(_chunk(1.0), 10.0, 10.05)
    assert _tick(executor, 10.1) == (1.0, True, False)
    assert _tick(executor, 10.3) == (None, False, True)
    executor.submit(_chunk(2.0), 10.3, 10.35)
    assert _tick(executor, 10.5) == (2.0, True, False)


def test_temporal_ensembling_a_boundary_is_where_a_newer_chunk_first_contributes() -> None:
    executor = ChunkExecutor("temporal_ensembling", DT, max_open_loop_s=1.6)
    executor.submit(_chunk(0, 0, 0, 0), 10.0, 10.0)
    assert _tick(executor, 10.0) == (0.0, True, False)
    assert _tick(executor, 10.2) == (0.0, False, False)
    executor.submit(_chunk(4, 4, 4), 10.4, 10.45)  # covers 10.4 on: averaged with the first
    assert _tick(executor, 10.4) == (2.0, True, False)
    assert _tick(executor, 10.6) == (2.0, False, False)
    assert _tick(executor, 10.8) == (4.0, False, False)  # the first chunk ended: no new chunk, no join
    assert _tick(executor, 11.0) == (None, False, True)


def test_next_action_is_next_step_action() -> None:
    a, b = ChunkExecutor("receding_horizon", DT), ChunkExecutor("receding_horizon", DT)
    for executor in (a, b):
        executor.submit(_chunk(0, 1, 2), 10.0, 10.0)
    for t in (10.0, 10.1, 10.2, 10.4, 10.6, 10.8, float("nan")):
        assert _value(a.next_action(t)) == _value(b.next_step(t).action)
