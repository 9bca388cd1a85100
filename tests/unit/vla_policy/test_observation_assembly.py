import numpy as np
import pytest

from vla_policy.observation_assembly import ObservationAssembler


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
