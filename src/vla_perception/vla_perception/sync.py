"""Approximate time synchronisation of several cameras, and per-camera frame health.

Time is integer nanoseconds throughout (``header.stamp.sec * 10**9 + header.stamp.nanosec``).

``ApproximateSync`` keeps the last ``queue_size`` frames of each camera in arrival order (like a
KEEP_LAST subscription queue) and finds the newest set holding one frame per camera whose stamps
all lie within ``slop_ns`` of each other. ``newest_set()`` is a query over every queued frame.
``pop_newest_set()`` hands out a set only when it is complete: every camera has a frame newer than
its frame in the last set handed out (``last_returned_stamp_ns`` is that set's stamp), so a set is
handed out at most at the rate of the slowest camera and never twice, and calling it on every frame
arrival hands each set out on the frame that completes it. A camera that drops out, or lags by
more than the slop beyond what the queues still hold, yields no set (``missing()`` and
``lagging()`` name it); a set can still be old, so check ``SyncedSet.stamp_ns`` against the clock
before acting on it. A camera whose stamps go back by more than ``max_reorder_ns`` (its clock had
jumped ahead; None: never) drops its frames stamped later, so the next set is handed out at once; a
smaller step back is a late arrival. After a clock jump backwards of the node itself (simulation
reset, bag loop) call ``clear()``.

``SetWatchdog`` says when no set has been handed out for longer than it should (see
:func:`set_overdue_after_ns`), so a consumer that publishes sets as they complete can still report
the lack of them.

``FrameHealth`` checks one frame of one camera for a zero stamp, a stale or future stamp, and a
frozen image (same content fingerprint ``frozen_repeat_limit`` frames in a row). A static simulated
scene renders identical frames, so raise the limit (or set it to 0 to switch the check off) in sim.
"""

from __future__ import annotations

import operator
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_FINGERPRINT_SAMPLES_PER_AXIS = 48  # ~2300 pixels sampled: ~20 us on 640x480, sees any global change
DEFAULT_MAX_FUTURE_NS = 500_000_000


def _stamp(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not an integer number of nanoseconds")
    try:
        stamp_ns = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} {value!r} is not an integer number of nanoseconds") from None
    if stamp_ns < 0:
        raise ValueError(f"{name} {stamp_ns} is negative")
    return stamp_ns


@dataclass(frozen=True, eq=False)  # frames may be arrays: compare sets by stamps, not with ==
class SyncedSet:
    """One frame per camera; ``stamp_ns`` is the newest stamp among them."""

    stamp_ns: int
    frames: dict[str, tuple[int, Any]]  # camera -> (stamp_ns, frame)

    @property
    def oldest_stamp_ns(self) -> int:
        return min(stamp_ns for stamp_ns, _ in self.frames.values())

    @property
    def spread_ns(self) -> int:
        """Newest minus oldest stamp in the set (at most the slop)."""
        return self.stamp_ns - self.oldest_stamp_ns


@dataclass
class _Entry:
    stamp_ns: int
    arrival: int
    frame: Any = field(repr=False)


class ApproximateSync:
    """Newest set of frames, one per camera, with stamps within ``slop_ns`` of each other."""

    def __init__(
        self,
        camera_names: Sequence[str],
        slop_ns: int,
        queue_size: int = 5,
        max_reorder_ns: int | None = None,
    ) -> None:
        names = list(camera_names)
        if isinstance(camera_names, str) or not names:
            raise ValueError(f"sync: camera_names {camera_names!r} must be a non-empty list of names")
        if len(set(names)) != len(names):
            raise ValueError(f"sync: camera_names {names} contains duplicates")
        self._slop_ns = _stamp(slop_ns, "sync: slop_ns")
        size = _stamp(queue_size, "sync: queue_size")
        if size < 1:
            raise ValueError(f"sync: queue_size {size} must be at least 1")
        self._max_reorder_ns = (
            None if max_reorder_ns is None else _stamp(max_reorder_ns, "sync: max_reorder_ns")
        )
        self._names = tuple(names)
        self._queues: dict[str, deque[_Entry]] = {name: deque(maxlen=size) for name in names}
        self._arrivals = 0
        self._last_returned: dict[str, int] = {}  # camera -> its frame's stamp in the last set handed out

    @property
    def camera_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def last_returned_stamp_ns(self) -> int | None:
        """Stamp of the last set ``pop_newest_set`` returned; None before the first or after clear()."""
        return max(self._last_returned.values()) if self._last_returned else None

    def add(self, camera: str, stamp_ns: int, frame: Any) -> None:
        """Queue a frame; the oldest arrival of that camera is dropped when its queue is full."""
        queue = self._queues.get(camera)
        if queue is None:
            raise ValueError(f"sync: camera {camera!r} is not one of {list(self._names)}")
        stamp_ns = _stamp(stamp_ns, f"camera '{camera}': stamp_ns")
        if (
            self._max_reorder_ns is not None
            and queue
            and stamp_ns < max(entry.stamp_ns for entry in queue) - self._max_reorder_ns
        ):
            self._stamps_went_back(camera, stamp_ns)
        self._arrivals += 1
        queue.append(_Entry(stamp_ns, self._arrivals, frame))

    def _stamps_went_back(self, camera: str, stamp_ns: int) -> None:
        """A camera's clock jumped back (it had jumped ahead, or was reset): its frames stamped after
        this one are dropped and a set as new as this frame may be handed out again, so a future
        stamp never blocks the sets that follow."""
        queue = self._queues[camera]
        kept = [entry for entry in queue if entry.stamp_ns <= stamp_ns]
        queue.clear()
        queue.extend(kept)
        if self._last_returned.get(camera, -1) >= stamp_ns:
            self._last_returned[camera] = stamp_ns - 1

    def lagging(self) -> dict[str, int]:
        """Cameras whose newest frame is more than the slop older than the newest frame of any camera,
        with how far behind (ns): the cameras that keep a set from forming."""
        newest = {
            name: max(entry.stamp_ns for entry in queue) for name, queue in self._queues.items() if queue
        }
        if not newest:
            return {}
        latest = max(newest.values())
        return {name: latest - stamp for name, stamp in newest.items() if latest - stamp > self._slop_ns}

    def missing(self) -> list[str]:
        """Cameras with no frame queued, in the configured order."""
        return [name for name in self._names if not self._queues[name]]

    def clear(self) -> None:
        """Drop every queued frame and forget the last returned stamp."""
        for queue in self._queues.values():
            queue.clear()
        self._last_returned.clear()

    def newest_set(self) -> SyncedSet | None:
        """The set with the newest ``stamp_ns`` among all sets within slop, or None if there is none.

        Each queued frame is tried as the newest member of a set; every other camera contributes its
        newest frame in [pivot - slop, pivot] (ties: the later arrival). Cost: cameras^2 x queue_size^2.
        """
        return self._newest_set({})

    def pop_newest_set(self) -> SyncedSet | None:
        """The newest set of frames that are each newer than their camera's frame in the last set this
        returned (the first time: the newest set), or None while no camera set is complete."""
        synced = self._newest_set(self._last_returned)
        if synced is not None:
            self._last_returned = {name: stamp_ns for name, (stamp_ns, _) in synced.frames.items()}
        return synced

    def _newest_set(self, after_ns: dict[str, int]) -> SyncedSet | None:
        """``newest_set`` over the frames stamped after ``after_ns[camera]`` (every frame if absent)."""
        fresh = {
            name: [entry for entry in queue if entry.stamp_ns > after_ns.get(name, -1)]
            for name, queue in self._queues.items()
        }
        if not all(fresh.values()):
            return None
        pivots = sorted(
            ((entry, name) for name, entries in fresh.items() for entry in entries),
            key=lambda pair: (pair[0].stamp_ns, pair[0].arrival),
            reverse=True,
        )
        for pivot, pivot_camera in pivots:
            frames = {pivot_camera: (pivot.stamp_ns, pivot.frame)}
            for name in self._names:
                if name == pivot_camera:
                    continue
                match = _newest_in_window(fresh[name], pivot.stamp_ns - self._slop_ns, pivot.stamp_ns)
                if match is None:
                    break
                frames[name] = (match.stamp_ns, match.frame)
            else:
                return SyncedSet(pivot.stamp_ns, {name: frames[name] for name in self._names})
        return None


def _newest_in_window(entries: list[_Entry], low_ns: int, high_ns: int) -> _Entry | None:
    best: _Entry | None = None
    for entry in entries:
        if low_ns <= entry.stamp_ns <= high_ns and (
            best is None or (entry.stamp_ns, entry.arrival) > (best.stamp_ns, best.arrival)
        ):
            best = entry
    return best


def set_overdue_after_ns(control_period_ns: int, slop_ns: int) -> int:
    """How long without a new synchronised set counts as a missing one: a control period plus the slop.

    The consumer (the policy) needs one observation per control period; the frames of a set that is
    on time may reach the node up to the slop apart, so a set can complete that much after its
    period ended. A longer gap means a control step went without a new observation, which is what
    a tick-driven node would have reported as "no set on this tick".
    """
    return _stamp(control_period_ns, "set watchdog: control_period_ns") + _stamp(
        slop_ns, "set watchdog: slop_ns"
    )


class SetWatchdog:
    """Whether no set was handed out for longer than ``overdue_ns`` (node clock, ns).

    The time runs from the last ``mark`` (a set handed out, or a state in which none is expected,
    such as waiting for an instruction), or from the first ``overdue`` call; a clock that went back
    (simulation reset, bag loop) starts it again.
    """

    def __init__(self, overdue_ns: int) -> None:
        self.overdue_ns = _stamp(overdue_ns, "set watchdog: overdue_ns")
        if self.overdue_ns == 0:
            raise ValueError("set watchdog: overdue_ns 0 must be positive")
        self._since_ns: int | None = None

    def mark(self, now_ns: int) -> None:
        """A set was handed out (or none is expected) at ``now_ns``."""
        self._since_ns = now_ns

    def overdue(self, now_ns: int) -> bool:
        """True when more than ``overdue_ns`` passed since the last mark."""
        if self._since_ns is None or now_ns < self._since_ns:
            self._since_ns = now_ns
            return False
        return now_ns - self._since_ns > self.overdue_ns


def frame_fingerprint(frame: np.ndarray) -> int:
    """A cheap content hash: CRC32 of a strided ~48x48 subsample plus the shape and dtype.

    Any change of exposure, noise or scene reaches the sampled pixels; a change confined to a few
    pixels between samples may not, which is acceptable for detecting a stuck driver.
    """
    array = np.asarray(frame)
    if array.ndim >= 2 and array.shape[0] > 0 and array.shape[1] > 0:
        row_stride = max(1, array.shape[0] // _FINGERPRINT_SAMPLES_PER_AXIS)
        column_stride = max(1, array.shape[1] // _FINGERPRINT_SAMPLES_PER_AXIS)
        sample = np.ascontiguousarray(array[::row_stride, ::column_stride])
    else:
        sample = np.ascontiguousarray(array)
    header = f"{array.shape}{array.dtype.str}".encode()
    return zlib.crc32(sample.view(np.uint8).reshape(-1), zlib.crc32(header))


@dataclass
class _CameraState:
    last_stamp_ns: int | None = None
    last_fingerprint: int | None = None
    repeats: int = 0  # consecutive frames (distinct stamps) with the same fingerprint


class FrameHealth:
    """Per-camera checks of stamp freshness and frozen content; problems come back as diagnostics."""

    def __init__(
        self, max_age_ns: int, frozen_repeat_limit: int = 30, max_future_ns: int = DEFAULT_MAX_FUTURE_NS
    ) -> None:
        self._max_age_ns = _stamp(max_age_ns, "frame health: max_age_ns")
        if self._max_age_ns == 0:
            raise ValueError("frame health: max_age_ns 0 must be positive")
        self._frozen_repeat_limit = _stamp(frozen_repeat_limit, "frame health: frozen_repeat_limit")
        if self._frozen_repeat_limit == 1:
            raise ValueError(
                "frame health: frozen_repeat_limit 1 would flag every frame; use 0 (off) or >= 2"
            )
        self._max_future_ns = _stamp(max_future_ns, "frame health: max_future_ns")
        self._cameras: dict[str, _CameraState] = {}

    def check(self, camera: str, stamp_ns: int, frame: Any, now_ns: int) -> list[str]:
        """Problems with this frame, empty when healthy. Call once per received frame.

        A frame checked again with the same stamp does not count as a repeat for the frozen check.
        A zero stamp (header never set) counts as stale and is reported as such.
        """
        stamp_ns = _stamp(stamp_ns, f"camera '{camera}': stamp_ns")
        now_ns = _stamp(now_ns, "frame health: now_ns")
        problems: list[str] = []
        if stamp_ns == 0:
            problems.append(f"camera '{camera}': stamp is zero (header.stamp not set); treated as stale")
        elif now_ns - stamp_ns > self._max_age_ns:
            problems.append(
                f"camera '{camera}': image is {(now_ns - stamp_ns) / 1e9:.3f} s old "
                f"(limit {self._max_age_ns / 1e9:.3f} s)"
            )
        elif stamp_ns - now_ns > self._max_future_ns:
            problems.append(
                f"camera '{camera}': stamp is {(stamp_ns - now_ns) / 1e9:.3f} s in the future "
                f"(limit {self._max_future_ns / 1e9:.3f} s); are the clocks in sync?"
            )
        problems.extend(self._check_frozen(camera, stamp_ns, frame))
        return problems

    def repeats(self, camera: str) -> int:
        """How many frames in a row the camera's content has been identical (0 if never seen)."""
        state = self._cameras.get(camera)
        return state.repeats if state else 0

    def reset(self, camera: str | None = None) -> None:
        """Forget one camera's history, or every camera's."""
        if camera is None:
            self._cameras.clear()
        else:
            self._cameras.pop(camera, None)

    def _check_frozen(self, camera: str, stamp_ns: int, frame: Any) -> list[str]:
        if frame is None or np.asarray(frame).size == 0:
            return [f"camera '{camera}': frame is empty"]
        state = self._cameras.setdefault(camera, _CameraState())
        if self._frozen_repeat_limit == 0:
            return []
        if state.last_stamp_ns != stamp_ns or state.last_fingerprint is None:
            fingerprint = frame_fingerprint(frame)
            state.repeats = state.repeats + 1 if fingerprint == state.last_fingerprint else 1
            state.last_fingerprint = fingerprint
            state.last_stamp_ns = stamp_ns
        if state.repeats >= self._frozen_repeat_limit:
            return [
                f"camera '{camera}': frame content unchanged for {state.repeats} frames in a row "
                f"(limit {self._frozen_repeat_limit}); camera frozen?"
            ]
        return []
