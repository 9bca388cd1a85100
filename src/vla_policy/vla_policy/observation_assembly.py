"""Joins per-camera observation images published under one stamp into complete sets (pure)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np


class ObservationAssembler:
    """Collects images by exact stamp; the newest stamp with every camera present is complete."""

    def __init__(self, camera_names: Sequence[str], max_pending: int = 8) -> None:
        if not camera_names:
            raise ValueError("camera_names: at least one camera is needed")
        self.camera_names = tuple(camera_names)
        self._pending: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._max_pending = max_pending
        self._complete: tuple[int, dict[str, np.ndarray]] | None = None

    def add(self, camera: str, stamp_ns: int, image: np.ndarray) -> None:
        if camera not in self.camera_names:
            raise ValueError(f"camera '{camera}' is not one of {list(self.camera_names)}")
        if self._complete is not None and stamp_ns <= self._complete[0]:
            return
        images = self._pending.setdefault(stamp_ns, {})
        images[camera] = image
        if len(images) == len(self.camera_names):
            self._complete = (stamp_ns, images)
            for stamp in [s for s in self._pending if s <= stamp_ns]:
                del self._pending[stamp]
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)

    def has_complete(self) -> bool:
        return self._complete is not None

    def take(self) -> tuple[int, dict[str, np.ndarray]] | None:
        """The newest complete set not taken before, or None."""
        complete, self._complete = self._complete, None
        return complete

    def clear(self) -> None:
        self._pending.clear()
        self._complete = None


class StateByStamp:
    """Recent privileged sim states by the stamp of the frame they were read with (pure).

    The sim publishes each state after the camera frames it rendered with, under the same stamp
    (``stamp_ns``). An observation takes the state of its own frame, not whichever state arrived
    last: across topics DDS gives no order, so "last" can be a frame early or late, and a replay
    could then disagree with its recording. States without a stamp (older bags) pair as the newest.
    """

    def __init__(self, keep: int = 16) -> None:
        if keep < 1:
            raise ValueError(f"keep: expected at least 1 state, got {keep}")
        self._states: OrderedDict[int, dict] = OrderedDict()
        self._keep = keep
        self._unstamped: dict | None = None

    def add(self, state: dict) -> None:
        stamp = state.get("stamp_ns")
        if stamp is None:
            self._unstamped = state
            return
        self._states[int(stamp)] = state
        self._states.move_to_end(int(stamp))
        while len(self._states) > self._keep:
            self._states.popitem(last=False)

    def at(self, stamp_ns: int) -> dict | None:
        """The state read with the frame at ``stamp_ns``; None while it has not arrived."""
        if stamp_ns in self._states:
            return self._states[stamp_ns]
        if not self._states:
            return self._unstamped
        return None

    def newest(self) -> dict | None:
        """The last state received (the fallback when a frame's own state never comes)."""
        if self._states:
            return next(reversed(self._states.values()))
        return self._unstamped

    def clear(self) -> None:
        self._states.clear()
        self._unstamped = None
