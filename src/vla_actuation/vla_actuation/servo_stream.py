"""What is streamed to the arm, and how fast (pure numpy, no ROS).

The controller bounds each control step's TARGET; the arm sees the STREAM: the waypoints published
at the servo rate. This module bounds the stream itself:

- :func:`plan_duration` stretches a step's interpolation so that its minimum-jerk peak joint speed
  stays within the limit, measured from where the stream really is (the last streamed waypoint),
  not from the previous target;
- :class:`ServoStream` holds the planned waypoints and the last one sent; :meth:`ServoStream.tick`
  never sends a point further from the last sent one than the joint speed limit allows over the
  time elapsed since (``|q_k - q_{k-1}| / (t_k - t_{k-1}) <= v``), and stretches
  ``time_from_start`` to the distance, so a late tick or a chunk switch slows the arm down
  instead of jumping it;
- the per-step tool bound holds on the stream over every window of one step: no point is sent whose
  tool pose (FK) is further than ``max_translation_step_m`` / ``max_rotation_step_rad`` (geodesic
  angle) from that of any point sent within the last ``step_dt_s``, nor from the last point sent
  (after a stall the tool moves one bound, not all the missed ones), whatever the plans did:
  chunk switches, re-plans, stalls. Steps of a policy moving at the bound, one per period, pass
  unchanged (the tail of one minimum-jerk step and the head of the next add up to one step); a
  plan that would go faster is slowed to the bound, and once the stream lags its plan it follows
  the plan's line as fast as the limits allow (not its schedule, whose minimum-jerk start from
  rest would slow a stream already moving at the bound).

The joint speed counts the time since the last point sent, at most one step: after a stall the
stream moves one step's worth, and the first point after it is given the time it needs
(``time_from_start``).

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
from vla_actuation.tool_bound import pose_travel

# The stream aims a little under the limit: stamps as float seconds since 1970 are only good to
# about 2e-7 s, i.e. 1e-5 of a 20 ms servo period.
SPEED_MARGIN = 0.999
# A point sent this much more than one step ago still counts in the window: stamps as float seconds
# since 1970 are good to about 2e-7 s, and whoever checks the stream must find the same windows.
WINDOW_SLACK_S = 1e-4
_BISECTION_STEPS = 12  # 1/4096 of the move: finer buys nothing, each try costs an FK at 50 Hz


def plan_duration(start: object, end: object, step_dt_s: float, limits: SafetyLimits) -> float:
    """How long to take from ``start`` to ``end``: at least one step, never faster than the joint limits.

    Stretched so the minimum-jerk PEAK joint speed is within ``max_joint_velocity_rad_s``. The tool
    is not stretched for here: the controller bounds each step's target (FK) and
    :meth:`ServoStream.tick` the tool speed of what is streamed.
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


def tool_window_violations(
    stamps_s: object, joints: object, window_s: float, limits: SafetyLimits, tolerance: float = 1e-9
) -> list[tuple[int, int, float, float]]:
    """``(i, j, translation m, rotation rad)`` for each pair of streamed points at most ``window_s``
    apart (and each consecutive pair, however far apart) whose tool poses (FK) differ by more than
    the per-step bound."""
    times = np.asarray(stamps_s, dtype=float).reshape(-1)
    poses = [forward_kinematics(q) for q in np.asarray(joints, dtype=float).reshape(len(times), -1)]
    found = []
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            if times[j] - times[i] > window_s + tolerance and j > i + 1:
                break
            translation, rotation = pose_travel(poses[i], poses[j])
            if (
                translation > limits.max_translation_step_m + tolerance
                or rotation > limits.max_rotation_step_rad + tolerance
            ):
                found.append((i, j, translation, rotation))
    return found


@dataclass(frozen=True)
class StreamedPoint:
    """One arm command: where, when (the stamp), and the time the arm is given to get there."""

    joints: np.ndarray
    stamp_s: float
    time_from_start_s: float


class ServoStream:
    """The planned waypoints and the last streamed point; every point it emits obeys the speed limits."""

    def __init__(self, servo_hz: float, limits: SafetyLimits, step_dt_s: float) -> None:
        for name, value in (("servo_hz", servo_hz), ("step_dt_s", step_dt_s)):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        self.servo_hz = float(servo_hz)
        self.step_dt_s = float(step_dt_s)
        self.limits = limits
        self.waypoints: deque[tuple[float, np.ndarray]] = deque()  # (due time s, joints)
        self.last: tuple[float, np.ndarray] | None = None  # (time s, joints) of the last point sent
        # (arrival s, tool pose) of the points sent whose arrival (stamp + time_from_start: when the
        # arm gets there) may lie within one step of the next point's, and always the last one
        self.recent: deque[tuple[float, np.ndarray]] = deque()
        self._plan_start: np.ndarray | None = None  # where the next plan starts, if not at ``last``
        # The last tick could not reach its waypoint (the limits held it back): the stream lags.
        self._lagging = False
        # This plan started from a lagging stream: follow its line at the limits, not its schedule
        # (its minimum-jerk start from rest would slow a stream that is already moving at the bound).
        self._catch_up = False

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
        self._lagging = self._catch_up = False
        joints_q = np.asarray(joints, dtype=float).reshape(6).copy()
        if keep_speed_reference and self.last is not None:
            self._plan_start = joints_q
            return
        self._plan_start = None
        self.last = (float(now_s), joints_q)
        self.recent = deque([(float(now_s), forward_kinematics(joints_q))])

    def stop_toward(self, joints: object, now_s: float) -> StreamedPoint | None:
        """A protective stop: plans drop and one point is sent toward ``joints`` (where the arm is now),
        as far as the limits allow from the last point sent (None: nothing to send)."""
        joints_q = np.asarray(joints, dtype=float).reshape(6)
        if self.last is None:
            self.anchor(joints_q, now_s)
            return StreamedPoint(joints_q.copy(), float(now_s), 2.0 * self.period_s)
        self.anchor(joints_q, now_s, keep_speed_reference=True)
        self._plan_start = None
        self.waypoints.append((float(now_s), joints_q.copy()))
        point = self.tick(now_s)
        self.waypoints.clear()
        return point

    def plan(self, target: object, now_s: float) -> float:
        """Replace the plan: from the last streamed point to ``target``; returns the duration used."""
        if self.last is None:
            raise RuntimeError("ServoStream.plan called before anchor(measured joints)")
        start = self.last[1] if self._plan_start is None else self._plan_start
        self._plan_start = None
        duration = plan_duration(start, target, self.step_dt_s, self.limits)
        self._catch_up = self._lagging and start is self.last[1]
        self.waypoints.clear()
        for t_s, joints in servo_waypoints(start, target, duration, self.servo_hz):
            self.waypoints.append((now_s + t_s, joints))
        return duration

    def tick(self, now_s: float) -> StreamedPoint | None:
        """The point to send now, or None. Never faster than the limits since the last point sent."""
        if self.last is None or not self.waypoints:
            return None
        due_index = -1
        for index, (due_s, _) in enumerate(self.waypoints):
            if due_s > now_s + 0.5 * self.period_s:
                break
            due_index = index
        if self._catch_up:  # along the plan's line (joint space) as fast as the limits allow
            due_index = len(self.waypoints) - 1
        if due_index < 0:
            return None
        last_s, last_q = self.last
        elapsed = min(now_s - last_s, self.step_dt_s)  # after a stall: one step's worth, not all missed
        if elapsed <= 0.0:
            return None
        candidate = self.waypoints[due_index][1]
        velocity = self.limits.joint_velocity_limits()
        ratio = float(np.max(np.abs(candidate - last_q) / (SPEED_MARGIN * velocity * elapsed)))
        fraction = min(1.0, 1.0 / ratio) if ratio > 0.0 else 1.0
        fraction, pose = self._tool_fraction(last_q, candidate, fraction, now_s)
        self._lagging = fraction < 1.0
        if fraction < 1.0:  # late, or a plan off the stream: go at the limit, keep the waypoint
            point = last_q + fraction * (candidate - last_q)
            for _ in range(due_index):
                self.waypoints.popleft()
        else:
            point = candidate.copy()
            for _ in range(due_index + 1):
                self.waypoints.popleft()
        time_from_start_s = max(2.0 * self.period_s, float(np.max(np.abs(point - last_q) / velocity)))
        self.last = (float(now_s), point)
        self.recent.append((float(now_s) + time_from_start_s, pose))
        return StreamedPoint(point.copy(), float(now_s), time_from_start_s)

    def _tool_fraction(
        self, last_q: np.ndarray, candidate: np.ndarray, fraction: float, now_s: float
    ) -> tuple[float, np.ndarray]:
        """The largest part (<= ``fraction``) of the move to ``candidate`` whose tool pose is within the
        per-step bound of every point sent in the last step and of the last one, and the tool pose
        there (bisection; 0 = stay at ``last_q``)."""
        # The arm reaches a point at stamp + time_from_start, and a point sent now gets at least two
        # periods: every point whose arrival may lie within one step of this one's stays in the window
        # (a point given more time after a stall arrives later, so it counts longer; the windows by
        # stamps are a subset).
        earliest_s = now_s + 2.0 * self.period_s - self.step_dt_s - WINDOW_SLACK_S
        while len(self.recent) > 1 and self.recent[0][0] < earliest_s:
            self.recent.popleft()  # the last point stays: after a stall the tool moves one bound
        # No margin here: a distance has no stamp to round, and steps of exactly one bound, one per
        # period, must pass unchanged (the tail of one and the head of the next add up to one bound).
        max_translation = self.limits.max_translation_step_m
        max_rotation = self.limits.max_rotation_step_rad

        def pose_if_fits(f: float) -> np.ndarray | None:
            pose = forward_kinematics(last_q + f * (candidate - last_q))
            for _, sent in self.recent:
                translation, rotation = pose_travel(sent, pose)
                if translation > max_translation or rotation > max_rotation:
                    return None
            return pose

        pose = pose_if_fits(fraction)
        if pose is not None:
            return fraction, pose
        low, high, low_pose = 0.0, fraction, self.recent[-1][1]
        for _ in range(_BISECTION_STEPS):
            middle = 0.5 * (low + high)
            pose = pose_if_fits(middle)
            if pose is not None:
                low, low_pose = middle, pose
            else:
                high = middle
        return low, low_pose
