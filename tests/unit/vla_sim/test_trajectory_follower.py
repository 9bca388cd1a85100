import numpy as np
import pytest

from vla_sim.episode_tracker import EpisodeTracker
from vla_sim.trajectory_follower import TrajectoryFollower

NAMES = ("a", "b")


def test_interpolates_from_current_command_and_reorders_joints():
    f = TrajectoryFollower(NAMES, np.zeros(2))
    assert f.accept(["b", "a"], [(1.0, [2.0, 1.0])], stamp_s=0.0, now_s=0.0) is None
    np.testing.assert_allclose(f.command_at(0.5), [0.5, 1.0])
    np.testing.assert_allclose(f.command_at(5.0), [1.0, 2.0])


def test_new_trajectory_starts_from_where_the_command_is():
    f = TrajectoryFollower(NAMES, np.zeros(2))
    f.accept(list(NAMES), [(1.0, [1.0, 1.0])], 0.0, 0.0)
    f.accept(list(NAMES), [(1.0, [0.0, 0.0])], 0.5, 0.5)
    np.testing.assert_allclose(f.command_at(0.5), [0.5, 0.5])  # no jump at the hand-off
    np.testing.assert_allclose(f.command_at(1.0), [0.25, 0.25])


def test_rejections_name_the_reason_and_leave_the_command():
    f = TrajectoryFollower(NAMES, np.zeros(2))
    cases = [
        (["a"], [(1.0, [1.0])], "joint_names"),
        (list(NAMES), [], "no points"),
        (list(NAMES), [(1.0, [1.0])], "positions"),
        (list(NAMES), [(1.0, [np.nan, 1.0])], "non-finite"),
        (list(NAMES), [(1.0, [1, 1]), (1.0, [2, 2])], "increase"),
    ]
    for names, points, reason in cases:
        assert reason in f.accept(names, points, 0.0, 0.0)
    assert "past" in f.accept(list(NAMES), [(0.1, [1.0, 1.0])], stamp_s=1.0, now_s=2.0)
    assert f.rejected == 6 and f.accepted == 0
    np.testing.assert_allclose(f.command_at(3.0), [0.0, 0.0])


def test_episode_tracker_success_must_hold():
    t = EpisodeTracker(start_s=0.0, max_steps=10, step_dt_s=0.2, success_hold_s=0.4)
    assert t.update(0.2, True) is None
    assert t.update(0.4, False) is None  # flicker resets
    assert t.update(0.6, True) is None
    result = t.update(1.0, True)
    assert result.success and result.steps == 3
    t2 = EpisodeTracker(0.0, max_steps=5, step_dt_s=0.2)
    assert t2.update(0.9, False) is None
    assert t2.update(1.0, False).success is False
    # steps count in the control period it is given: 10 Hz spends the budget in half the time
    t3 = EpisodeTracker(0.0, max_steps=5, step_dt_s=0.1)
    assert t3.update(0.5, False).steps == 5
    with pytest.raises(ValueError, match="step_dt_s must be > 0"):
        EpisodeTracker(0.0, max_steps=5, step_dt_s=0.0)
