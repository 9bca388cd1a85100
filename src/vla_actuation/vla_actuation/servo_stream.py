"""What is streamed to the arm, and how fast (pure numpy, no ROS).

The controller bounds each control step's TARGET; the arm sees the STREAM: the waypoints published
at the servo rate. This module bounds the stream itself:

- :func:`plan_duration` stretches a step's interpolation so that its minimum-jerk peak joint speed
  stays within the limit, measured from where the stream really is (the last streamed waypoint),
  not from the previous target;
- :class:`ServoStream` holds the planned waypoints and the last one sent; :meth:`ServoStream.tick`
  never sends a point further from the last sent one than the speed limit allows over the time
  elapsed since (``|q_k - q_{k-1}| / (t_k - t_{k-1}) <= v``) and stretches ``time_from_start`` to
  the distance, so a late tick or a chunk switch slows the arm down instead of jumping it; and
  never a point whose tool pose is further than the per-step bound from the last point sent (after
  a stall the tool moves one bound, not all the missed ones), and optionally from any point sent
  within ``tool_window_s``.

Times are seconds on one clock (the node's), joints radians.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_actuation.ee_delta_controller import MIN_JERK_PEAK_SPEED_RATIO, servo_waypoints
from vla_actuation.kinematics import forward_kinematics
from vla_actuation.safety import SafetyLimits
from vla_actuation.tool_bound import pose_travel, within_tool_bound

# The stream aims a little under the limit: stamps as float seconds since 1970 are only good to
# about 2e-7 s, i.e. 1e-5 of a 20 ms servo period.
SPEED_MARGIN = 0.999
_BISECTION_STEPS = 12  # 1/4096 of the move: finer buys nothing, each try costs an FK at 50 Hz


def plan_duration(start: object, end: object, step_dt_s: float, limits: SafetyLimits) -> float:
    """How long to take from ``start`` to ``end``: at least one step, never faster than the joint limits.

    Stretched so the minimum-jerk PEAK joint speed is within ``max_joint_velocity_rad_s``. The tool
    is not stretched for here: the controller bounds each step's target (FK) and
    :meth:`ServoStream.tick` each streamed point; stretching plans by the tool distance from a stream
    that lags its targets slowed a policy moving at the bound every step (demo episodes timed out).
    """
    start_q = np.asarray(start, dtype=float).reshape(6)
    end_q = np.asarray(end, dtype=float).reshape(6)
    joint_s = float(np.max(np.abs(end_q - start_q) / limits.joint_velocity_limits()))
    return max(step_dt_s, MIN_JERK_PEAK_SPEED_RATIO * joint_s)


def streamed_speed_violations(
    stamps_s: object, joints: object, velocity_limits: object, tolerance: float = 1e-9
) -> list[tuple[int, float]]:
    """``(index, speed ratio)`` for each streamed point faster than the limit since the previous one.

    ``ratio = max_j |q_k - q_{k-1}|_j / (v_j (t_k - t_{k-1}))``; a point with no time elapsed since
    the previous one and any motion counts as infinitely fast.
    """
    times = np.asarray(stamps_s, dtype=float).reshape(-1)
    points = np.asarray(joints, dtype=float).reshape(len(times), -1)
    limits = np.broadcast_to(np.asarray(velocity_limits, dtype=float), points.shape[1:])
    found = []
    for index in range(1, len(times)):
        distance = np.abs(points[index] - points[index - 1]) / limits
        elapsed = times[index] - times[index - 1]
        if elapsed <= 0.0:
            ratio = math.inf if np.max(distance) > tolerance else 0.0
        else:
            ratio = float(np.max(distance)) / elapsed
        if ratio > 1.0 + tolerance:
            found.append((index, ratio))
    return found


@dataclass(frozen=True)
class StreamedPoint:
    """One arm command: where, when (the stamp), and the time the arm is given to get there."""

    joints: np.ndarray
    stamp_s: float
    time_from_start_s: float


class ServoStream:
    """The planned waypoints and the last streamed point; every point it emits obeys the speed limit."""

    def __init__(
        self, servo_hz: float, limits: SafetyLimits, step_dt_s: float, tool_window_s: float = 0.0
    ) -> None:
        """``tool_window_s``: no point sent is further (tool pose) than the per-step bound from any
        point sent that recently, nor from the last one. 0 checks the last one only: the minimum-jerk
        tail of one step plus the head of the next can add up to a little over one bound in a
        step-long window, and capping that slows a policy that moves at the bound every step."""
        if not (math.isfinite(tool_window_s) and tool_window_s >= 0.0):
            raise ValueError(f"tool_window_s: expected a finite number >= 0, got {tool_window_s!r}")
        for name, value in (("servo_hz", servo_hz), ("step_dt_s", step_dt_s)):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        self.servo_hz = float(servo_hz)
        self.step_dt_s = float(step_dt_s)
        self.tool_window_s = float(tool_window_s)
        self.limits = limits
        # (time, tool pose) of the points sent within one step period, and always the last one
        self.recent: deque[tuple[float, np.ndarray]] = deque()
        self.waypoints: deque[tuple[float, np.ndarray]] = deque()  # (due time s, joints)
        self.last: tuple[float, np.ndarray] | None = None  # (time s, joints) of the last point sent
        self._plan_start: np.ndarray | None = None  # where the next plan starts, if not at ``last``

    @property
    def period_s(self) -> float:
        return 1.0 / self.servo_hz

    @property
    def last_joints(self) -> np.ndarray | None:
        return None if self.last is None else self.last[1].copy()

    @property
    def final_target(self) -> np.ndarray | None:
        """Where the current plan ends (None when nothing is planned)."""
        return None if not self.waypoints else self.waypoints[-1][1].copy()

    def clear(self) -> None:
        """Drop every planned waypoint (hold: the last command stands)."""
        self.waypoints.clear()

    def anchor(self, joints: object, now_s: float, keep_speed_reference: bool = False) -> None:
        """Start afresh from ``joints`` (measured) at ``now_s``: plans drop, the next plan starts there.

        ``keep_speed_reference`` (after a hold or a stall, same episode): speed and tool bound still
        count from the last point sent, so the stream reaches the measured joints' plan within the
        limits instead of jumping to it. Without it (a reset, an episode start) they count from here.
        """
        self.waypoints.clear()
        joints_q = np.asarray(joints, dtype=float).reshape(6).copy()
        if keep_speed_reference and self.last is not None:
            self._plan_start = joints_q
            return
        self._plan_start = None
        self.last = (float(now_s), joints_q)
        self.recent = deque([(self.last[0], forward_kinematics(self.last[1]))])

    def plan(self, target: object, now_s: float) -> float:
        """Replace the plan: from the last streamed point to ``target``; returns the duration used."""
        if self.last is None:
            raise RuntimeError("ServoStream.plan called before anchor(measured joints)")
        start = self.last[1] if self._plan_start is None else self._plan_start
        self._plan_start = None
        duration = plan_duration(start, target, self.step_dt_s, self.limits)
        self.waypoints.clear()
        for t_s, joints in servo_waypoints(start, target, duration, self.servo_hz):
            self.waypoints.append((now_s + t_s, joints))
        return duration

    def tick(self, now_s: float) -> StreamedPoint | None:
        """The point to send now, or None. Never faster than the limit since the last point sent."""
        if self.last is None or not self.waypoints:
            return None
        due_index = -1
        for index, (due_s, _) in enumerate(self.waypoints):
            if due_s > now_s + 0.5 * self.period_s:
                break
            due_index = index
        if due_index < 0:
            return None
        last_s, last_q = self.last
        elapsed = now_s - last_s
        if elapsed <= 0.0:
            return None
        candidate = self.waypoints[due_index][1]
        velocity = self.limits.joint_velocity_limits()
        ratio = float(np.max(np.abs(candidate - last_q) / (SPEED_MARGIN * velocity * elapsed)))
        fraction = min(1.0, 1.0 / ratio) if ratio > 0.0 else 1.0
        while len(self.recent) > 1 and self.recent[0][0] < now_s - self.tool_window_s - 1e-6:
            self.recent.popleft()  # the last point stays: after a stall the tool moves one bound
        fraction, pose = self._tool_fraction(last_q, candidate, fraction)
        if fraction < 1.0:  # late, or a plan off the stream: go at the limit, keep the waypoint
            point = last_q + fraction * (candidate - last_q)
            for _ in range(due_index):
                self.waypoints.popleft()
        else:
            point = candidate.copy()
            for _ in range(due_index + 1):
                self.waypoints.popleft()
        needed = float(np.max(np.abs(point - last_q) / velocity))
        self.last = (float(now_s), point)
        self.recent.append((float(now_s), pose))
        return StreamedPoint(point.copy(), float(now_s), max(2.0 * self.period_s, needed))

    def _tool_fraction(
        self, last_q: np.ndarray, candidate: np.ndarray, fraction: float
    ) -> tuple[float, np.ndarray]:
        """The largest part (<= ``fraction``) of the move to ``candidate`` within the tool bound of every
        point sent in the last step period, and the tool pose there (bisection; 0 = stay at ``last_q``)."""

        def pose_if_fits(f: float) -> np.ndarray | None:
            pose = forward_kinematics(last_q + f * (candidate - last_q))
            fits = all(within_tool_bound(*pose_travel(q, pose), self.limits) for _, q in self.recent)
            return pose if fits else None

        pose = pose_if_fits(fraction)
        if pose is not None:
            return fraction, pose
        low, high, low_pose = 0.0, fraction, forward_kinematics(last_q)
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            pose = pose_if_fits(middle)
            if pose is not None:
                low, low_pose = middle, pose
            else:
                high = middle
        return low, low_pose
