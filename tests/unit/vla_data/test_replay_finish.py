"""How a replay ends: its report, its exit status and what it says (pure: no ROS)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vla_common.action_message import encode_action_chunk
from vla_common.action_space import ActionSpace
from vla_data.bag_playback import PlaySettings
from vla_data.replay import _finish
from vla_data.replay_report import PlaybackStats

STATS = PlaybackStats({"/cam": 3}, frozenset({1, 2}), 3, (1, 2), (), 1)
SETTINGS = PlaySettings(control_hz=5.0, fast=True)


def _end(tmp_path: Path, actions: tuple[str, ...], failure=None, signalled=None) -> tuple[int, dict, list]:
    lines: list[str] = []
    outcome = SimpleNamespace(action_texts=actions, stats=STATS, wall_s=1.0, failure=failure)
    source = SimpleNamespace(path=tmp_path / "bag")
    status = _finish(
        outcome, source, [], [0, 200_000_000], SETTINGS, "fast", tmp_path, lines.append, signalled
    )
    return status, json.loads((tmp_path / "report.json").read_text()), lines


def test_a_replay_without_a_single_action_fails_and_says_where_to_look(tmp_path):
    status, report, lines = _end(tmp_path, ())
    assert status == 1
    assert report["failure"].startswith("the policy produced no action on this bag (2 observations)")
    assert str(tmp_path / "logs" / "policy.log") in report["failure"]
    assert lines[-1].startswith("[replay] FAILED: the policy produced no action")
    # Nothing to plot is not blamed on matplotlib.
    assert not [line for line in lines if "matplotlib" in line], lines


def test_a_stop_signal_is_the_failure_and_the_exit_status(tmp_path):
    action = encode_action_chunk(1, ActionSpace(), np.zeros((1, 7)), policy="t", inference_ms=1.0)
    status, report, _ = _end(tmp_path, (action,), signalled=signal.SIGTERM)
    assert (status, report["failure"]) == (143, "interrupted by SIGTERM")
    status, report, _ = _end(tmp_path, (action,))
    assert status == 0 and "failure" not in report
