"""An independent judge of what is streamed to the arm: limits, speed, tool step, episode starts (pure).

It watches the arm commands (``JointTrajectory`` on ``/<robot>/arm_controller/joint_trajectory``),
the measured joints and the episode starts, and reports every command that breaks a bound. It
shares no code with the nodes' own checks (actuation's safety layer, servo stream and tool bound):
it uses only the robot's facts (joint names, position and speed limits in ``vla_common.robot``) and
the forward kinematics of the sim's own MuJoCo model (``ee_gripper_link`` in vla_sim's wx250s
MJCF), so a bug in the nodes' arithmetic cannot hide itself here. The fault matrix (tests/faults)
and ``vla-stack soak`` feed it.

What counts as a violation (``Violation.kind``):

- ``position_limit``: a commanded joint outside its limits (or not finite).
- ``joint_speed``: the controller moves from the previous target to the new one in the command's
  ``time_from_start``, so the commanded speed is ``|q_k - q_(k-1)| / time_from_start_k`` (a
  0.29 rad jump with 0.04 s is 7.3 rad/s); above the joint's limit (pi rad/s on the wx250s).
- ``tool_step_m`` / ``tool_step_rad``: the tool (FK of the commanded joints) travels more than the
  per-step bound (0.05 m, 0.25 rad per 0.2 s: Bridge's per-step clip) within one window. The arm
  reaches command k at ``stamp_k + time_from_start_k`` (its *arrival*); every two commands whose
  arrivals lie at most ``window_s`` apart are compared, in translation and in rotation angle.
- ``previous_episode``: after an episode start, the first command stamped at or after the start
  must start from where the arm is: its speed from the newest measured joint state received after
  the start (``|q - measured| / time_from_start``) is within the limit. A waypoint left from the
  previous episode (computed before the reset, sent after it) shows as a jump from the reset pose.
  A command stamped before the start is a late one of the old episode (the sim drops those); it is
  judged only as the continuation of the old stream (``joint_speed``).

Tolerances (:class:`Tolerance`) absorb what the stream itself cannot avoid, not what it should not
do: float stamps and ``time_from_start`` rounding on the speed, the measured joints lagging the arm
by a joint-state period at an episode start, and the minimum-jerk tail of one control step plus the
head of the next in one window (the tool's path is curved in joint-space interpolation).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import mujoco
import numpy as np

from vla_common.robot import ARM_JOINT_NAMES, JOINT_LOWER_RAD, JOINT_UPPER_RAD, JOINT_VELOCITY_LIMIT_RAD_S
from vla_sim.scene import arm_model_path

TOOL_SITE = "ee_gripper_link"  # the tool frame of the wx250s (x along the fingers)
VIOLATION_KINDS: tuple[str, ...] = (
    "position_limit",
    "joint_speed",
    "tool_step_m",
    "tool_step_rad",
    "previous_episode",
)
HISTORY_S = 2.0  # commands kept for the tool window: arrivals may come out of order by a stretched tfs


@dataclass(frozen=True)
class StreamedCommand:
    """One arm command as received."""

    received_s: float  # monotonic receipt time
    stamp_ns: int  # header stamp of the JointTrajectory
    positions: tuple[float, ...]  # first point's positions, in vla_common.robot ARM_JOINT_NAMES order
    time_from_start_s: float


@dataclass(frozen=True)
class Violation:
    """A command beyond a bound: which bound, by how much, and where."""

    kind: str  # one of VIOLATION_KINDS
    value: float
    bound: float
    detail: str
    stamp_ns: int = 0  # header stamp of the offending command


@dataclass(frozen=True)
class Tolerance:
    """What a command may exceed a bound by before it counts (see the module docstring for why).

    speed_rel: joint speed above the limit, as a fraction of it (the actuation aims at 0.999).
    tool_rel: tool travel in one window above the per-step bound, as a fraction of it.
    position_rad: beyond a joint's position limit.
    measured_rad: how far the first command of an episode may be from the measured joints beyond
        what its time_from_start allows (the measurement is up to a joint-state period old).
    """

    speed_rel: float = 0.01
    tool_rel: float = 0.10
    position_rad: float = 1e-6
    measured_rad: float = 0.02

    def __post_init__(self) -> None:
        for name in ("speed_rel", "tool_rel", "position_rad", "measured_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"Tolerance.{name}: expected a finite number >= 0, got {value!r}")


class ToolKinematics:
    """Tool pose of the wx250s from the sim's MJCF (MuJoCo forward kinematics of the arm alone)."""

    def __init__(self, model_path: str | None = None) -> None:
        self.model = mujoco.MjModel.from_xml_path(model_path or arm_model_path())
        self.data = mujoco.MjData(self.model)
        self._qpos = [int(self.model.jnt_qposadr[self.model.joint(name).id]) for name in ARM_JOINT_NAMES]
        self._site = self.model.site(TOOL_SITE).id

    def pose(self, joints_rad: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """(position m, rotation matrix) of the tool site."""
        self.data.qpos[self._qpos] = joints_rad
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy()


def rotation_angle_rad(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation taking ``a`` to ``b`` (both 3x3 rotation matrices)."""
    cosine = 0.5 * (float(np.trace(a.T @ b)) - 1.0)
    return math.acos(min(1.0, max(-1.0, cosine)))


@dataclass
class _Sent:
    arrival_s: float
    position_m: np.ndarray
    rotation: np.ndarray
    index: int


@dataclass
class _Episode:
    start_ns: int
    received_s: float
    measured: np.ndarray | None = None  # newest valid joint state received after the start
    pending: list[StreamedCommand] = field(default_factory=list)  # first commands awaiting a measurement
    judged: bool = False


class ArmMonitor:
    """Judges every streamed arm command against the robot's bounds; collects the violations."""

    def __init__(
        self,
        tool_step_m: float = 0.05,
        tool_step_rad: float = 0.25,
        window_s: float = 0.2,
        tolerance: Tolerance | None = None,
        kinematics: ToolKinematics | None = None,
    ) -> None:
        for name, value in (
            ("tool_step_m", tool_step_m),
            ("tool_step_rad", tool_step_rad),
            ("window_s", window_s),
        ):
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        self.tool_step_m = float(tool_step_m)
        self.tool_step_rad = float(tool_step_rad)
        self.window_s = float(window_s)
        self.tolerance = tolerance or Tolerance()
        self._kinematics = kinematics
        self.violations: list[Violation] = []
        self.commands = 0
        self.episodes = 0
        self.max_joint_speed_rad_s = 0.0
        self.max_tool_step_m = 0.0
        self.max_tool_step_rad = 0.0
        self._previous: StreamedCommand | None = None
        self._recent: deque[_Sent] = deque()
        self._episode: _Episode | None = None
        self._measured: np.ndarray | None = None

    @cached_property
    def kinematics(self) -> ToolKinematics:
        return self._kinematics or ToolKinematics()

    # --- inputs ---------------------------------------------------------------------------------
    def joint_state(
        self, received_s: float, positions: Sequence[float], stamp_ns: int | None = None
    ) -> list[Violation]:
        """A measured joint state (ARM_JOINT_NAMES order); one with a non-finite value is ignored.

        ``stamp_ns`` (its header stamp, if known): a state stamped before the current episode's start
        was measured before the reset, even if it arrives after the start event (topics are not
        ordered with each other), so it does not count as the episode's first measurement.
        Returns the violations of first-of-episode commands that were waiting for this measurement.
        """
        joints = np.asarray(positions, dtype=float).reshape(-1)
        if joints.shape != (len(ARM_JOINT_NAMES),):
            raise ValueError(f"joint state: {joints.size} positions, expected {len(ARM_JOINT_NAMES)}")
        if not np.all(np.isfinite(joints)):
            return []
        self._measured = joints
        episode = self._episode
        if episode is None or received_s < episode.received_s:
            return []
        if stamp_ns is not None and stamp_ns < episode.start_ns:
            return []
        episode.measured = joints
        found: list[Violation] = []
        for command in episode.pending:
            found += self._judge_first(command, episode)
        episode.pending.clear()
        self.violations += found
        return found

    def episode_start(self, stamp_ns: int, received_s: float) -> None:
        """An episode started (the sim reset the arm) at ``stamp_ns`` (the event's stamp)."""
        self.episodes += 1
        self._episode = _Episode(int(stamp_ns), float(received_s))

    def add(self, cmd: StreamedCommand) -> list[Violation]:
        """Judge one command; returns its violations (also appended to ``violations``)."""
        positions = np.asarray(cmd.positions, dtype=float).reshape(-1)
        if positions.shape != (len(ARM_JOINT_NAMES),):
            raise ValueError(
                f"command stamped {cmd.stamp_ns}: {positions.size} positions, expected {len(ARM_JOINT_NAMES)}"
            )
        self.commands += 1
        found = self._position_limits(cmd, positions)
        if not found:  # FK and speed of a non-finite command mean nothing: judge the next from the last good
            episode = self._episode
            first = episode is not None and not episode.judged and cmd.stamp_ns >= episode.start_ns
            if first:
                episode.judged = True
                if episode.measured is None:
                    episode.pending.append(cmd)  # judged on the next joint state
                else:
                    found += self._judge_first(cmd, episode)
                self._recent.clear()  # a new episode's tool window starts here
            elif self._previous is not None:
                found += self._speed(cmd, positions)
            found += self._tool_window(cmd, positions)
            self._previous = cmd
        self.violations += found
        return found

    # --- checks ---------------------------------------------------------------------------------
    def _position_limits(self, cmd: StreamedCommand, positions: np.ndarray) -> list[Violation]:
        found = []
        margin = self.tolerance.position_rad
        for name, value, low, high in zip(
            ARM_JOINT_NAMES, positions, JOINT_LOWER_RAD, JOINT_UPPER_RAD, strict=True
        ):
            if not math.isfinite(value) or value < low - margin or value > high + margin:
                bound = float(low if not value > low else high)
                found.append(
                    Violation(
                        "position_limit",
                        float(value),
                        bound,
                        f"command stamped {cmd.stamp_ns}: {name} {value} rad outside [{low:.4f}, {high:.4f}]",
                        cmd.stamp_ns,
                    )
                )
        return found

    def _speed_over(
        self, start: np.ndarray, end: np.ndarray, tfs_s: float, slack_rad: float
    ) -> tuple[str, float, float] | None:
        """(joint, speed, limit) of the worst joint if the move start -> end in ``tfs_s`` is too fast."""
        distance = np.abs(end - start)
        allowed = JOINT_VELOCITY_LIMIT_RAD_S * max(tfs_s, 0.0) * (1.0 + self.tolerance.speed_rel) + slack_rad
        speeds = distance / tfs_s if tfs_s > 0.0 else np.where(distance > 0.0, math.inf, 0.0)
        worst = int(np.argmax(speeds / JOINT_VELOCITY_LIMIT_RAD_S))
        self.max_joint_speed_rad_s = max(self.max_joint_speed_rad_s, float(speeds[worst]))
        if np.all(distance <= allowed + 1e-12):
            return None
        worst = int(np.argmax(distance - allowed))
        return ARM_JOINT_NAMES[worst], float(speeds[worst]), float(JOINT_VELOCITY_LIMIT_RAD_S[worst])

    def _speed(self, cmd: StreamedCommand, positions: np.ndarray) -> list[Violation]:
        previous = np.asarray(self._previous.positions, dtype=float)
        over = self._speed_over(previous, positions, cmd.time_from_start_s, 0.0)
        if over is None:
            return []
        joint, speed, limit = over
        moved = abs(positions[ARM_JOINT_NAMES.index(joint)] - previous[ARM_JOINT_NAMES.index(joint)])
        return [
            Violation(
                "joint_speed",
                speed,
                limit,
                f"command stamped {cmd.stamp_ns}: {joint} moves {moved:.4f} rad from the previous command "
                f"in time_from_start {cmd.time_from_start_s:.4f} s = {speed:.3f} rad/s (limit {limit:.3f})",
                cmd.stamp_ns,
            )
        ]

    def _judge_first(self, cmd: StreamedCommand, episode: _Episode) -> list[Violation]:
        """The first command of an episode against the measured joints after the reset."""
        positions = np.asarray(cmd.positions, dtype=float)
        over = self._speed_over(
            episode.measured, positions, cmd.time_from_start_s, self.tolerance.measured_rad
        )
        if over is None:
            return []
        joint, speed, limit = over
        index = ARM_JOINT_NAMES.index(joint)
        found = [
            Violation(
                "previous_episode",
                speed,
                limit,
                f"first command of the episode started at {episode.start_ns} (stamped {cmd.stamp_ns}): "
                f"{joint} {positions[index]:.4f} rad is "
                f"{abs(positions[index] - episode.measured[index]):.4f} rad "
                f"from the measured {episode.measured[index]:.4f} rad in time_from_start "
                f"{cmd.time_from_start_s:.4f} s = {speed:.3f} rad/s (limit {limit:.3f})",
                cmd.stamp_ns,
            )
        ]
        return found

    def _tool_window(self, cmd: StreamedCommand, positions: np.ndarray) -> list[Violation]:
        position_m, rotation = self.kinematics.pose(positions)
        arrival_s = cmd.stamp_ns * 1e-9 + cmd.time_from_start_s
        if self._recent and self._recent[-1].arrival_s > arrival_s + HISTORY_S:
            self._recent.clear()  # the clock went back (a restarted sim or bag): a new stream
        while self._recent and self._recent[0].arrival_s < arrival_s - HISTORY_S:
            self._recent.popleft()
        worst_m: tuple[float, _Sent] | None = None
        worst_rad: tuple[float, _Sent] | None = None
        for sent in self._recent:
            if abs(arrival_s - sent.arrival_s) > self.window_s + 1e-9:
                continue
            travel_m = float(np.linalg.norm(position_m - sent.position_m))
            travel_rad = rotation_angle_rad(sent.rotation, rotation)
            if worst_m is None or travel_m > worst_m[0]:
                worst_m = (travel_m, sent)
            if worst_rad is None or travel_rad > worst_rad[0]:
                worst_rad = (travel_rad, sent)
        self._recent.append(_Sent(arrival_s, position_m, rotation, self.commands))
        found = []
        for kind, worst, bound, unit in (
            ("tool_step_m", worst_m, self.tool_step_m, "m"),
            ("tool_step_rad", worst_rad, self.tool_step_rad, "rad"),
        ):
            if worst is None:
                continue
            travel, sent = worst
            if kind == "tool_step_m":
                self.max_tool_step_m = max(self.max_tool_step_m, travel)
            else:
                self.max_tool_step_rad = max(self.max_tool_step_rad, travel)
            if travel > bound * (1.0 + self.tolerance.tool_rel):
                found.append(
                    Violation(
                        kind,
                        travel,
                        bound,
                        f"command #{self.commands} stamped {cmd.stamp_ns}: "
                        f"the tool travels {travel:.4f} {unit} "
                        f"from command #{sent.index}, {abs(arrival_s - sent.arrival_s):.3f} s apart "
                        f"(arrivals, window {self.window_s} s; bound {bound} {unit})",
                        cmd.stamp_ns,
                    )
                )
        return found

    # --- report ---------------------------------------------------------------------------------
    def summary(self) -> dict:
        """Counts per kind, the fastest joint speed and largest tool steps seen, commands and episodes."""
        counts = Counter(v.kind for v in self.violations)
        return {
            "commands": self.commands,
            "episodes": self.episodes,
            "violations": {kind: counts.get(kind, 0) for kind in VIOLATION_KINDS},
            "max_joint_speed_rad_s": self.max_joint_speed_rad_s,
            "max_tool_step_m": self.max_tool_step_m,
            "max_tool_step_rad": self.max_tool_step_rad,
        }
