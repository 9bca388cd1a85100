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
