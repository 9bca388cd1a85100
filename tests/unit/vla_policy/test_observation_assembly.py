import numpy as np
import pytest

from vla_policy.observation_assembly import ObservationAssembler, StateByStamp


def test_complete_set_by_exact_stamp():
    a = ObservationAssembler(["primary", "wrist"])
    img = np.zeros((2, 2, 3), np.uint8)
    a.add("primary", 10, img)
    assert a.take() is None
    a.add("wrist", 20, img)  # a different stamp does not complete stamp 10
    assert a.take() is None
    a.add("wrist", 10, img)
    stamp, images = a.take()
    assert stamp == 10 and set(images) == {"primary", "wrist"}
    assert a.take() is None  # taken once


def test_older_sets_are_ignored_after_a_newer_one():
    a = ObservationAssembler(["primary"])
    a.add("primary", 20, np.zeros(1))
    a.add("primary", 10, np.zeros(1))
    assert a.take()[0] == 20
    assert a.take() is None


def test_unknown_camera_and_pending_bound():
    a = ObservationAssembler(["primary", "wrist"], max_pending=3)
    with pytest.raises(ValueError, match="'left'"):
        a.add("left", 1, np.zeros(1))
    for stamp in range(10):
        a.add("primary", stamp, np.zeros(1))
    assert len(a._pending) == 3


def _state(stamp: int | None, x: float) -> dict:
    state = {"tool_pose": [[x]]}
    if stamp is not None:
        state["stamp_ns"] = stamp
    return state


def test_a_frame_takes_the_state_of_its_own_stamp_not_the_last_to_arrive():
    states = StateByStamp()
    states.add(_state(100, 1.0))
    states.add(_state(200, 2.0))
    assert states.at(100)["tool_pose"] == [[1.0]]
    assert states.at(200)["tool_pose"] == [[2.0]]
    assert states.at(300) is None  # not arrived yet: the node waits for it
    assert states.newest()["stamp_ns"] == 200


def test_states_arriving_out_of_order_still_pair_by_stamp():
    states = StateByStamp()
    states.add(_state(200, 2.0))
    states.add(_state(100, 1.0))
    assert states.at(200)["tool_pose"] == [[2.0]]
    assert states.newest()["stamp_ns"] == 100  # newest means last received


def test_only_the_most_recent_states_are_kept():
    states = StateByStamp(keep=2)
    for stamp in (1, 2, 3):
        states.add(_state(stamp, float(stamp)))
    assert states.at(1) is None
    assert states.at(2) is not None and states.at(3) is not None


def test_unstamped_states_pair_as_the_newest_and_clear_forgets_everything():
    states = StateByStamp()
    assert states.at(5) is None and states.newest() is None
    states.add(_state(None, 7.0))
    assert states.at(5)["tool_pose"] == [[7.0]]
    states.clear()
    assert states.at(5) is None and states.newest() is None


def test_keep_must_hold_a_state():
    with pytest.raises(ValueError, match="keep"):
        StateByStamp(keep=0)
