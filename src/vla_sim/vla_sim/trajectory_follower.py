"""What the simulator does with a JointTrajectory, like ros2_control's joint_trajectory_controller.

A trajectory is validated as a whole and rejected with a reason, never half-applied: joint names
must be the controller's (any order), there must be at least one point, every point must carry a
finite position per joint, times from start must increase strictly, and the trajectory must not end
in the past. A new trajectory replaces the old one from "now" (stamp 0 = start now); points already
in the past are dropped and motion starts from the current command, so nothing jumps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Segment:
    times_s: np.ndarray  # absolute sim times, first = where the segment starts
    positions: np.ndarray  # [len(times) x joints]


class TrajectoryFollower:
    """Piecewise-linear interpolation of accepted trajectories for a fixed set of joints."""

    def __init__(self, joint_names: Sequence[str], initial_positions: np.ndarray) -> None:
        self.joint_names = tuple(joint_names)
        initial = np.asarray(initial_positions, dtype=np.float64)
        if initial.shape != (len(self.joint_names),):
            raise ValueError(
                f"initial_positions: expected {len(self.joint_names)} values, got {initial.shape}"
            )
        self._segment = _Segment(np.array([0.0]), initial[None, :])
        self.accepted = 0
        self.rejected = 0

    def reset(self, positions: np.ndarray, now_s: float) -> None:
        self._segment = _Segment(np.array([now_s]), np.asarray(positions, dtype=np.float64)[None, :])

    def command_at(self, now_s: float) -> np.ndarray:
        times, positions = self._segment.times_s, self._segment.positions
        if now_s <= times[0]:
            return positions[0].copy()
        if now_s >= times[-1]:
            return positions[-1].copy()
        return np.array([np.interp(now_s, times, positions[:, j]) for j in range(positions.shape[1])])

    def accept(
        self,
        joint_names: Sequence[str],
        points: Sequence[tuple[float, Sequence[float]]],
        stamp_s: float,
        now_s: float,
    ) -> str | None:
        """Take a trajectory [(time_from_start_s, positions)]; return None, or why it was rejected."""
        reason = self._validate(joint_names, points)
        if reason is None:
            start_s = now_s if stamp_s <= 0.0 else stamp_s
            order = [list(joint_names).index(name) for name in self.joint_names]
            times = np.array([start_s + t for t, _ in points])
            positions = np.array([[p[i] for i in order] for _, p in points], dtype=np.float64)
            if times[-1] <= now_s:
                reason = f"trajectory ends in the past ({times[-1]:.3f} s <= now {now_s:.3f} s)"
            else:
                keep = times > now_s
                times = np.concatenate([[now_s], times[keep]])
                positions = np.vstack([self.command_at(now_s), positions[keep]])
                self._segment = _Segment(times, positions)
        if reason is None:
            self.accepted += 1
        else:
            self.rejected += 1
        return reason

    def _validate(
        self, joint_names: Sequence[str], points: Sequence[tuple[float, Sequence[float]]]
    ) -> str | None:
        if sorted(joint_names) != sorted(self.joint_names):
            return f"joint_names {list(joint_names)} do not match the controller's {list(self.joint_names)}"
        if not points:
            return "trajectory has no points"
        previous = -np.inf
        for k, (t, positions) in enumerate(points):
            if len(positions) != len(self.joint_names):
                return f"point {k}: {len(positions)} positions for {len(self.joint_names)} joints"
            if not np.all(np.isfinite(positions)):
                return f"point {k}: non-finite position {list(positions)}"
            if not t > previous:
                return f"point {k}: time_from_start {t:.4f} s does not increase"
            previous = t
        return None
