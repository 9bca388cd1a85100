"""replay_report: pairing, per-dimension errors, gripper agreement, latency and frame counts (no ROS)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vla_common.action_message import encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_data.replay_report import (
    PlaybackStats,
    TimedAction,
    action_errors,
    build_report,
    latency_stats,
    pair_actions,
    parse_actions,
    write_plot,
)

SPACE = ActionSpace()
MS = 1_000_000


def action_text(stamp_ns: int, first_row, inference_ms: float = 1.0) -> str:
    chunk = np.vstack([first_row, np.zeros(7)])  # only the first row counts
    return encode_action_chunk(stamp_ns, SPACE, chunk, policy="test", inference_ms=inference_ms)


def stats(**kwargs) -> PlaybackStats:
    base = dict(
        frames_published={"/cam": 10},
        frame_stamps=frozenset({100 * MS, 200 * MS, 300 * MS}),
        ticks=4,
        observation_stamps=(100 * MS, 200 * MS, 300 * MS),
        action_latency_ms=(5.0, 7.0),
        cameras=1,
    )
    base.update(kwargs)
    return PlaybackStats(**base)


def test_parse_actions_keeps_the_first_row_and_names_bad_messages():
    (action,) = parse_actions([action_text(5, [0.1, 0, 0, 0, 0, 0, 1.0], inference_ms=2.5)])
    assert action.stamp_ns == 5 and action.dims[-1] == "gripper" and action.inference_ms == 2.5
    np.testing.assert_allclose(action.values, [0.1, 0, 0, 0, 0, 0, 1.0])
    with pytest.raises(ValueError, match="action message 1: action message: not JSON"):
        parse_actions([action_text(5, np.zeros(7)), "nope"])


def test_pairs_by_exact_stamp_else_nearest_within_tolerance():
    dims = ("a",)
    recorded = [TimedAction(s, dims, np.array([float(s)])) for s in (300, 100, 200)]
    predicted = [TimedAction(s, dims, np.zeros(1)) for s in (100, 240, 290, 500)]
    pairs = pair_actions(predicted, recorded, tolerance_ns=50)
    assert [(p.stamp_ns, r.stamp_ns) for p, r in pairs] == [(100, 100), (240, 200), (290, 300)]
    assert pair_actions(predicted, [], tolerance_ns=50) == []


def test_errors_per_dimension_and_gripper_agreement():
    dims = SPACE.dim_names
    pairs = [
        (TimedAction(0, dims, np.array([0.1, 0, 0, 0, 0, 0, 1.0])), TimedAction(0, dims, np.zeros(7))),
        (TimedAction(1, dims, np.array([-0.3, 0, 0, 0, 0, 0, 0.0])), TimedAction(1, dims, np.zeros(7))),
    ]
    errors = action_errors(pairs)
    assert errors["pairs"] == 2
    assert errors["mae"]["dx"] == pytest.approx(0.2)
    assert errors["rmse"]["dx"] == pytest.approx(math.sqrt((0.01 + 0.09) / 2))
    assert errors["mae"]["dy"] == 0.0
    assert errors["gripper_agreement"] == 0.5  # open vs closed once, closed vs closed once
    assert action_errors([]) == {"pairs": 0}


def test_errors_refuse_pairs_with_different_dims():
    pair = (TimedAction(0, ("a",), np.zeros(1)), TimedAction(0, ("b",), np.zeros(1)))
    with pytest.raises(ValueError, match="dims"):
        action_errors([pair])


def test_latency_stats():
    assert latency_stats([]) == {"count": 0}
    out = latency_stats([1.0, 2.0, 3.0, 4.0])
    assert out["count"] == 4 and out["mean"] == 2.5 and out["p50"] == 2.5 and out["max"] == 4.0
    assert out["p50"] <= out["p90"] <= out["p99"] <= out["max"]


def test_report_against_recorded_actions():
    recorded = [action_text(s * MS, [0.01 * s / 100, 0, 0, 0, 0, 0, 1.0]) for s in (100, 200, 300)]
    predicted = [action_text(s * MS, [0.01 * s / 100 + 0.001, 0, 0, 0, 0, 0, 1.0]) for s in (100, 200)]
    report = build_report(predicted, recorded, stats(), tolerance_ns=100 * MS, bag="b", mode="fast")
    json.dumps(report)  # JSON-ready
    assert report["reference"] == "recorded /vla/action"
    assert report["actions"] == {"predicted": 2, "recorded": 3}
    assert report["action_error"]["pairs"] == 2
    assert report["action_error"]["mae"]["dx"] == pytest.approx(0.001)
    assert report["action_error"]["gripper_agreement"] == 1.0
    frames = report["frames"]
    assert frames["control_ticks"] == 4 and frames["observations"] == 3
    assert frames["ticks_without_observation"] == 1
    assert frames["observations_without_action"] == 1  # the observation at 300 ms got no action
    assert frames["camera_sets_used"] == 3
    assert report["latency_ms"]["inference"]["count"] == 2
    assert report["latency_ms"]["tick_to_action"]["p50"] == 6.0


def test_report_without_recorded_actions_has_no_error_section():
    report = build_report([action_text(100 * MS, np.zeros(7))], [], stats(), tolerance_ns=MS)
    assert report["reference"] == "none"
    assert "action_error" not in report


def test_plot_is_written_when_matplotlib_is_installed(tmp_path):
    texts = [action_text(s * MS, np.full(7, s / 1000)) for s in (100, 200)]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert write_plot(tmp_path / "a.png", texts, texts) == "matplotlib missing"
        assert not (tmp_path / "a.png").exists()
    else:
        assert write_plot(tmp_path / "a.png", texts, texts) is None
        assert (tmp_path / "a.png").stat().st_size > 1000
        # Nothing to plot is said as such, not blamed on matplotlib.
        assert write_plot(tmp_path / "b.png", [], []) == "no action, predicted or recorded"
    assert not (tmp_path / "b.png").exists()


def test_the_latency_is_named_by_what_it_measures():
    fast = build_report([], [], stats(), tolerance_ns=MS)
    assert set(fast["latency_ms"]) == {"inference", "tick_to_action"}
    realtime = build_report([], [], stats(action_latency_kind="frame_to_action"), tolerance_ns=MS)
    assert set(realtime["latency_ms"]) == {"inference", "frame_to_action"}
    with pytest.raises(ValueError, match="'tick' is not one of tick_to_action, frame_to_action"):
        stats(action_latency_kind="tick")
