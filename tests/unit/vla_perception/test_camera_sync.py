"""Approximate time sync and frame health (stale, zero, future, frozen) with integer nanoseconds."""

from __future__ import annotations

import numpy as np
import pytest

from vla_perception.sync import (
    ApproximateSync,
    FrameHealth,
    SetWatchdog,
    frame_fingerprint,
    set_overdue_after_ns,
)

MS = 1_000_000
S = 1_000_000_000


def stamps(synced) -> dict[str, int]:
    return {name: stamp_ns for name, (stamp_ns, _) in synced.frames.items()}


def test_pairs_frames_within_slop_and_reports_the_newest_stamp() -> None:
    sync = ApproximateSync(["primary", "wrist"], slop_ns=10 * MS)
    sync.add("primary", 100 * MS, "p100")
    sync.add("wrist", 104 * MS, "w104")
    synced = sync.newest_set()
    assert synced is not None
    assert synced.stamp_ns == 104 * MS
    assert synced.frames == {"primary": (100 * MS, "p100"), "wrist": (104 * MS, "w104")}
    assert synced.oldest_stamp_ns == 100 * MS and synced.spread_ns == 4 * MS
    assert list(synced.frames) == ["primary", "wrist"]  # configured order


def test_slop_boundary_is_inclusive() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=10 * MS)
    sync.add("a", 0 * MS + 1, "a")
    sync.add("b", 10 * MS + 1, "b")
    assert sync.newest_set() is not None
    sync.clear()
    sync.add("a", 1, "a")
    sync.add("b", 10 * MS + 2, "b")
    assert sync.newest_set() is None


def test_chooses_the_newest_consistent_set() -> None:
    sync = ApproximateSync(["a", "b", "c"], slop_ns=5 * MS)
    for t in (0, 33, 66, 100):
        sync.add("a", t * MS, f"a{t}")
    for t in (2, 36, 70):  # b has no frame near a's newest
        sync.add("b", t * MS, f"b{t}")
    for t in (1, 34, 68, 99):
        sync.add("c", t * MS, f"c{t}")
    synced = sync.newest_set()
    assert synced is not None
    assert stamps(synced) == {"a": 66 * MS, "b": 70 * MS, "c": 68 * MS}
    assert synced.stamp_ns == 70 * MS


def test_a_missing_camera_gives_no_set_and_is_listed() -> None:
    sync = ApproximateSync(["primary", "wrist", "side"], slop_ns=10 * MS)
    sync.add("primary", 100 * MS, "p")
    sync.add("wrist", 101 * MS, "w")
    assert sync.newest_set() is None
    assert sync.missing() == ["side"]
    sync.add("side", 102 * MS, "s")
    assert sync.missing() == []
    assert sync.newest_set() is not None


def test_a_camera_lagging_past_the_slop_gives_no_set() -> None:
    sync = ApproximateSync(["primary", "wrist"], slop_ns=20 * MS, queue_size=3)
    for t in range(1000, 1100, 33):
        sync.add("primary", t * MS, t)
    sync.add("wrist", 900 * MS, "late")  # 100 ms behind anything primary still holds
    assert sync.missing() == []
    assert sync.newest_set() is None
    sync.add("wrist", 1096 * MS, "caught up")
    assert stamps(sync.newest_set()) == {"primary": 1099 * MS, "wrist": 1096 * MS}


def test_out_of_order_arrival_is_handled() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=5 * MS)
    sync.add("a", 200 * MS, "a200")
    sync.add("a", 100 * MS, "a100")  # arrives late
    sync.add("b", 101 * MS, "b101")
    assert stamps(sync.newest_set()) == {"a": 100 * MS, "b": 101 * MS}
    sync.add("b", 199 * MS, "b199")
    assert stamps(sync.newest_set()) == {"a": 200 * MS, "b": 199 * MS}


def test_queue_keeps_only_the_last_arrivals() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=1 * MS, queue_size=2)
    sync.add("b", 10 * MS, "b10")
    for t in (10, 20, 30):
        sync.add("a", t * MS, f"a{t}")
    assert sync.newest_set() is None  # a10 was pushed out by the two later arrivals
    assert len(sync._queues["a"]) == 2
    for t in range(1000):
        sync.add("a", t * S, t)
    assert len(sync._queues["a"]) == 2  # bounded however long it runs


def test_duplicate_stamp_prefers_the_later_arrival() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=0)
    sync.add("a", 5, "first")
    sync.add("a", 5, "second")
    sync.add("b", 5, "b")
    assert sync.newest_set().frames["a"] == (5, "second")


def test_pop_newest_set_hands_each_set_out_once() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=5 * MS)
    sync.add("a", 100 * MS, "a")
    sync.add("b", 101 * MS, "b")
    first = sync.pop_newest_set()
    assert first is not None and sync.last_returned_stamp_ns == 101 * MS
    assert sync.pop_newest_set() is None
    assert stamps(sync.newest_set()) == stamps(first)  # the query form still sees it
    sync.add("a", 133 * MS, "a2")
    assert sync.pop_newest_set() is None  # b has nothing near 133 ms
    sync.add("b", 134 * MS, "b2")
    assert sync.pop_newest_set().stamp_ns == 134 * MS
    sync.clear()
    assert sync.last_returned_stamp_ns is None
    assert sync.missing() == ["a", "b"] and sync.newest_set() is None


def test_pop_newest_set_needs_a_new_frame_of_every_camera() -> None:
    """Called on every arrival, a set is handed out on the frame that completes it: never a frame of
    the last set again, so at most at the slowest camera's rate."""
    sync = ApproximateSync(["fast", "slow"], slop_ns=40 * MS)
    sync.add("slow", 100 * MS, "s100")
    assert sync.pop_newest_set() is None  # fast has no frame yet
    sync.add("fast", 110 * MS, "f110")
    assert stamps(sync.pop_newest_set()) == {"fast": 110 * MS, "slow": 100 * MS}
    sync.add("fast", 130 * MS, "f130")  # within the slop of s100, but s100 was used: not complete
    assert sync.pop_newest_set() is None
    assert stamps(sync.newest_set()) == {"fast": 130 * MS, "slow": 100 * MS}  # the query still pairs
    sync.add("slow", 135 * MS, "s135")  # completes the set with the newest fresh fast frame
    assert stamps(sync.pop_newest_set()) == {"fast": 130 * MS, "slow": 135 * MS}
    assert sync.last_returned_stamp_ns == 135 * MS
    sync.add("slow", 120 * MS, "late")  # older than the slow frame already used: never handed out
    sync.add("fast", 125 * MS, "late")
    assert sync.pop_newest_set() is None


def test_a_set_is_complete_on_the_frame_of_the_last_camera_and_is_handed_out_once() -> None:
    sync = ApproximateSync(["primary", "wrist"], slop_ns=50 * MS)
    handed_out = []
    for i in range(1, 5):  # two cameras rendered at the same stamp, arriving one after the other
        for camera in ("primary", "wrist"):
            sync.add(camera, i * 100 * MS, camera)
            synced = sync.pop_newest_set()
            handed_out.append((camera, None if synced is None else synced.stamp_ns))
    assert handed_out == [pair for i in range(1, 5) for pair in (("primary", None), ("wrist", i * 100 * MS))]


def test_set_watchdog_is_overdue_only_after_its_time_without_a_mark() -> None:
    overdue_ns = set_overdue_after_ns(200 * MS, 50 * MS)
    assert overdue_ns == 250 * MS
    watchdog = SetWatchdog(overdue_ns)
    assert not watchdog.overdue(10 * S)  # the first look starts the time
    assert not watchdog.overdue(10 * S + 250 * MS)  # exactly the limit: not yet
    assert watchdog.overdue(10 * S + 251 * MS)
    watchdog.mark(10 * S + 300 * MS)
    assert not watchdog.overdue(10 * S + 500 * MS)
    assert watchdog.overdue(10 * S + 600 * MS)
    assert not watchdog.overdue(1 * S)  # the clock went back (sim reset): starts again
    assert watchdog.overdue(1 * S + 251 * MS)
    with pytest.raises(ValueError, match="overdue_ns 0 must be positive"):
        SetWatchdog(0)
    with pytest.raises(ValueError, match="slop_ns -1 is negative"):
        set_overdue_after_ns(200 * MS, -1)


def test_single_camera_sync_returns_its_newest_frame() -> None:
    sync = ApproximateSync(["only"], slop_ns=0)
    sync.add("only", 3, "x")
    sync.add("only", 9, "y")
    sync.add("only", 6, "z")
    assert sync.newest_set().frames == {"only": (9, "y")}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ApproximateSync([], 1), "camera_names"),
        (lambda: ApproximateSync("ab", 1), "camera_names 'ab'"),
        (lambda: ApproximateSync(["a", "a"], 1), "duplicates"),
        (lambda: ApproximateSync(["a"], -1), "slop_ns -1"),
        (lambda: ApproximateSync(["a"], 0.01), "slop_ns 0.01"),
        (lambda: ApproximateSync(["a"], 1, queue_size=0), "queue_size 0"),
        (lambda: ApproximateSync(["a"], 1).add("b", 1, None), r"camera 'b' is not one of \['a'\]"),
        (lambda: ApproximateSync(["a"], 1).add("a", 1.5, None), "camera 'a': stamp_ns 1.5"),
        (lambda: ApproximateSync(["a"], 1).add("a", -4, None), "camera 'a': stamp_ns -4"),
    ],
)
def test_sync_rejects_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def frame(value: int = 0) -> np.ndarray:
    image = np.zeros((480, 640, 3), np.uint8)
    image[::7, ::5] = value
    return image


def test_healthy_frame_has_no_problems() -> None:
    health = FrameHealth(max_age_ns=400 * MS)
    assert health.check("wrist", 10 * S, frame(1), now_ns=10 * S + 50 * MS) == []


def test_stale_frame_is_reported_with_age_and_limit() -> None:
    health = FrameHealth(max_age_ns=400 * MS)
    problems = health.check("wrist", 10 * S, frame(1), now_ns=10 * S + 734 * MS)
    assert problems == ["camera 'wrist': image is 0.734 s old (limit 0.400 s)"]
    assert health.check("wrist", 11 * S, frame(2), now_ns=11 * S + 400 * MS) == []  # at the limit: ok


def test_zero_stamp_is_reported_as_stale() -> None:
    problems = FrameHealth(max_age_ns=400 * MS).check("primary", 0, frame(1), now_ns=5 * S)
    assert len(problems) == 1
    assert "camera 'primary'" in problems[0] and "zero" in problems[0] and "stale" in problems[0]


def test_future_stamp_beyond_half_a_second_is_reported() -> None:
    health = FrameHealth(max_age_ns=400 * MS)
    assert health.check("side", 10 * S + 400 * MS, frame(1), now_ns=10 * S) == []
    problems = health.check("side", 10 * S + 812 * MS, frame(2), now_ns=10 * S)
    assert problems == [
        "camera 'side': stamp is 0.812 s in the future (limit 0.500 s); are the clocks in sync?"
    ]


def test_frozen_frame_after_the_repeat_limit_and_recovery_after_a_change() -> None:
    health = FrameHealth(max_age_ns=S, frozen_repeat_limit=5)
    frozen = frame(9)
    for index in range(4):
        assert health.check("wrist", (index + 1) * MS, frozen.copy(), now_ns=(index + 1) * MS) == []
    problems = health.check("wrist", 5 * MS, frozen.copy(), now_ns=5 * MS)
    assert problems == [
        "camera 'wrist': frame content unchanged for 5 frames in a row (limit 5); camera frozen?"
    ]
    assert health.repeats("wrist") == 5
    assert health.check("wrist", 6 * MS, frame(10), now_ns=6 * MS) == []  # content changed
    assert health.repeats("wrist") == 1
    assert health.check("primary", 6 * MS, frozen, now_ns=6 * MS) == []  # cameras are independent


def test_rechecking_the_same_frame_does_not_count_as_a_repeat() -> None:
    health = FrameHealth(max_age_ns=10 * S, frozen_repeat_limit=3)
    for tick in range(10):  # a control loop re-checking the newest set between camera frames
        assert health.check("wrist", 1 * S, frame(3), now_ns=1 * S + tick * MS) == []
    assert health.repeats("wrist") == 1


def test_frozen_check_can_be_switched_off_and_reset() -> None:
    health = FrameHealth(max_age_ns=S, frozen_repeat_limit=0)
    for index in range(100):
        assert health.check("sim", index + 1, frame(0), now_ns=index + 1) == []
    health = FrameHealth(max_age_ns=S, frozen_repeat_limit=2)
    health.check("sim", 1, frame(0), now_ns=1)
    health.reset("sim")
    assert health.check("sim", 2, frame(0), now_ns=2) == []


def test_empty_frame_is_a_problem() -> None:
    problems = FrameHealth(max_age_ns=S).check("wrist", 1, np.zeros((0, 0, 3), np.uint8), now_ns=1)
    assert problems == ["camera 'wrist': frame is empty"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_age_ns": 0}, "max_age_ns 0"),
        ({"max_age_ns": 0.4}, "max_age_ns 0.4"),
        ({"max_age_ns": S, "frozen_repeat_limit": 1}, "frozen_repeat_limit 1"),
        ({"max_age_ns": S, "frozen_repeat_limit": -2}, "frozen_repeat_limit -2"),
    ],
)
def test_frame_health_rejects_bad_configuration(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrameHealth(**kwargs)


def test_fingerprint_sees_global_changes_and_shape_and_is_cheap() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    brighter = np.clip(image.astype(np.int16) + 1, 0, 255).astype(np.uint8)
    assert frame_fingerprint(image) == frame_fingerprint(image.copy())
    assert frame_fingerprint(image) != frame_fingerprint(brighter)
    assert frame_fingerprint(image) != frame_fingerprint(image[:, :320])
    assert frame_fingerprint(np.zeros((4, 4), np.uint16)) != frame_fingerprint(np.zeros((4, 4), np.float32))


def test_a_camera_dropping_out_is_named_as_lagging() -> None:
    sync = ApproximateSync(["primary", "wrist"], slop_ns=50 * MS)
    for i in range(3):
        sync.add("primary", i * 100 * MS, "p")
        sync.add("wrist", i * 100 * MS, "w")
    assert sync.pop_newest_set().stamp_ns == 200 * MS and sync.lagging() == {}
    for i in range(3, 8):  # the wrist camera stops
        sync.add("primary", i * 100 * MS, "p")
    assert sync.pop_newest_set() is None
    assert sync.lagging() == {"wrist": 500 * MS}
    assert sync.missing() == []
    sync.clear()
    sync.add("primary", S, "p")
    assert sync.missing() == ["wrist"] and sync.lagging() == {}


def test_stamps_going_back_past_max_reorder_drop_the_newer_frames_of_that_camera() -> None:
    sync = ApproximateSync(["a", "b"], slop_ns=10 * MS, max_reorder_ns=10 * MS)
    for camera in "ab":
        sync.add(camera, 5 * S, "ahead")
    assert sync.pop_newest_set().stamp_ns == 5 * S
    for camera in "ab":
        sync.add(camera, 1 * S, "sane")
    synced = sync.pop_newest_set()
    assert synced is not None and stamps(synced) == {"a": S, "b": S}
    assert synced.frames["a"][1] == "sane"
    late = ApproximateSync(["a"], slop_ns=10 * MS, max_reorder_ns=10 * MS)
    late.add("a", 100 * MS, "a100")
    late.add("a", 95 * MS, "a95")  # within max_reorder: a late arrival, both kept
    assert late.newest_set().stamp_ns == 100 * MS
    with pytest.raises(ValueError, match="max_reorder_ns -1 is negative"):
        ApproximateSync(["a"], slop_ns=0, max_reorder_ns=-1)
