"""What the executed control steps look like (pure numpy): idle ticks, chunk joins, joint speeds.

Used by the actuation node (its /diagnostics) and by the graph replica (``vla-stack bench
control``), fed the same way: one call per control tick.

- :meth:`ExecutionStats.start`: an episode starts, or execution resumes (after an e-stop or a
  terminate): not running until the next executed step, and no join is measured across it.
- :meth:`ExecutionStats.on_step`: a control step was executed: the commanded joint targets (rad,
  the 6 arm joints, after the safety layer) and whether the step is the first one taken from a newly
  accepted chunk (``ChunkExecutor.next_step``'s ``boundary``).
- :meth:`ExecutionStats.on_idle`: a control tick with nothing to execute (``TickResult.idle``). It
  counts only while running (after the first step since :meth:`start`): the wait for an episode's
  first chunk, and the ticks after a terminate or an e-stop, are not idle.
- :meth:`ExecutionStats.on_held`: a tick whose action the safety layer did not execute: the
  commanded target stays (as when idle) but the tick is not idle; a join it held back is measured
  at the next executed step.

Definitions. ``q_k`` is the commanded target of control tick ``k``; a tick with no executed step
(idle or held) commands ``q_k = q_{k-1}`` (the arm holds). The step bound is the per-step bound of
the safety layer (``safety.SafetyLimits``): per joint ``max_joint_velocity_rad_s * step_dt_s``, and
on the tool (FK of the joints) ``max_translation_step_m`` of translation and
``max_rotation_step_rad`` of rotation (geodesic angle, as ``tool_bound``).

- *Boundary* (a chunk join): an executed step that is the first taken from a newly accepted chunk,
  with two ticks before it since :meth:`start` (the first chunk of an episode joins nothing).
- *Boundary jump*: the change of the commanded step across the join: joints
  ``max_i |(q_k - q_{k-1}) - (q_{k-1} - q_{k-2})|_i`` (rad); tool, with ``p`` the FK position and
  ``R`` the FK rotation, ``|(p_k - p_{k-1}) - (p_{k-1} - p_{k-2})|`` (m) and the angle of
  ``(R_{k-2}^T R_{k-1})^T (R_{k-1}^T R_k)`` (rad). A join that continues the motion at the same
  step scores 0; a join after the arm stopped (idle ticks before it) scores its whole step. A jump
  is *over the bound* when a joint's exceeds that joint's step bound or the tool's exceeds the tool
  step bound.
- *Boundary step*: the plain step into the join, ``|q_k - q_{k-1}|`` and its tool motion, over
  the bound likewise.
- *Joint speed*: ``|q_k - q_{k-1}| / step_dt_s`` of every executed step, per joint; its largest
  value and largest fraction of the joint's limit.

:meth:`summary` gives (a dict of plain numbers, ``None`` where nothing was measured):
``control_steps``, ``idle_steps``, ``idle_fraction`` (idle / (steps + idle)), ``boundaries``,
``boundary_jump_joint_rad_{p50,p99,max}``, ``boundary_jump_tool_m_{p50,p99,max}``,
``boundary_jump_tool_rad_{p50,p99,max}``, ``boundary_jumps_over_bound``,
``boundary_step_joint_rad_max``, ``boundary_step_tool_m_max``, ``boundary_step_tool_rad_max``,
``boundary_steps_over_bound``, ``max_joint_speed_rad_s``, ``max_joint_speed_fraction`` (of its
limit; above 1 is too fast), ``steps_over_speed_limit``. Counts and maxima cover everything since
construction; p50/p99 the last ``window`` boundaries.

Cost: a step is a few small numpy operations; the tool figures need forward kinematics, so a
boundary's three targets are kept and their FK is computed in :meth:`summary` (or when
``PENDING_BOUNDARIES`` boundaries are waiting), not on the control path: about 35 us a step on
this CPU. Memory is fixed at construction.
"""

from __future__ import annotations

import math

import numpy as np

from vla_actuation.kinematics import forward_kinematics
from vla_actuation.safety import SafetyLimits
from vla_actuation.tool_bound import pose_travel

DEFAULT_WINDOW = 4096  # boundaries in the p50/p99 window (~14 min of joins at 5 Hz with 4-step chunks)
# Boundaries whose tool figures (FK) wait for summary(): the node asks once a second, at most
# control_hz boundaries later; a caller that never asks pays 256 FK (~20 ms) once per 256 joins.
PENDING_BOUNDARIES = 256
_REL_TOL = 1e-9  # a step exactly at its bound is within it (floating-point noise)
_PERCENTILES = (50.0, 99.0)


def _rotation_angle(rotation: np.ndarray) -> float:
    """Geodesic angle (rad) of a 3x3 rotation matrix, as atan2(sin, cos): exact near 0, where acos of
    the trace loses half the digits (a 0 jump would read 3e-8 rad)."""
    sine = 0.5 * math.hypot(
        rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]
    )
    return math.atan2(sine, (float(np.trace(rotation)) - 1.0) / 2.0)


class _Ring:
    """The last ``size`` float samples, preallocated (recording never allocates)."""

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def percentiles(self) -> list[float | None]:
        if self.count == 0:
            return [None] * len(_PERCENTILES)
        held = self.values[: min(self.count, len(self.values))]
        return [float(v) for v in np.percentile(held, _PERCENTILES)]


class ExecutionStats:
    """Idle ticks, chunk-join jumps and joint speeds of executed control steps (module docstring)."""

    def __init__(
        self, step_dt_s: float, limits: SafetyLimits | None = None, window: int = DEFAULT_WINDOW
    ) -> None:
        if isinstance(step_dt_s, bool) or not isinstance(step_dt_s, (int, float)) or not step_dt_s > 0:
            raise ValueError(
                f"ExecutionStats: step_dt_s must be a number > 0 (the control period), got {step_dt_s!r}"
            )
        if not math.isfinite(step_dt_s):
            raise ValueError(f"ExecutionStats: step_dt_s must be finite, got {step_dt_s!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"ExecutionStats: window must be an integer >= 1, got {window!r}")
        limits = SafetyLimits() if limits is None else limits
        self.step_dt_s = float(step_dt_s)
        self.joint_step_bound_rad = limits.joint_velocity_limits() * self.step_dt_s
        self.tool_step_m = limits.max_translation_step_m
        self.tool_step_rad = limits.max_rotation_step_rad
        self.window = window
        self.control_steps = 0
        self.idle_steps = 0
        self.boundaries = 0
        self.steps_over_speed_limit = 0
        self.boundary_jumps_over_bound = 0
        self.boundary_steps_over_bound = 0
        self._max_speed_fraction: float | None = None
        self._max_speed_rad_s: float | None = None
        self._jump_joint = _Ring(window)
        self._jump_tool_m = _Ring(window)
        self._jump_tool_rad = _Ring(window)
        self._max = {"jump_joint": 0.0, "jump_m": 0.0, "jump_rad": 0.0, "step_joint": 0.0}
        self._max.update(step_m=0.0, step_rad=0.0)
        # Boundaries whose tool figures wait for FK: (q_{k-2}, q_{k-1}, q_k), and whether the joints
        # already put the jump / the step over the bound.
        self._pending = np.zeros((PENDING_BOUNDARIES, 3, 6))
        self._pending_over = np.zeros((PENDING_BOUNDARIES, 2), dtype=bool)
        self._pending_count = 0
        self._history = np.zeros((2, 6))  # q_{k-2}, q_{k-1}
        self._history_len = 0  # ticks since start() (capped at 2)
        self._running = False
        self._held_boundary = False

    def start(self) -> None:
        """An episode starts or execution resumes: not running until the next executed step."""
        self._running = False
        self._history_len = 0
        self._held_boundary = False

    def on_step(self, joint_targets_rad: object, chunk_boundary: bool) -> None:
        """An executed control step: its commanded joint targets (6, rad) and whether it is the first
        step taken from a newly accepted chunk."""
        q = np.asarray(joint_targets_rad, dtype=float).reshape(-1)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"ExecutionStats.on_step: joint_targets_rad must be 6 finite values, got {q}")
        boundary = bool(chunk_boundary) or self._held_boundary
        self._held_boundary = False
        self.control_steps += 1
        self._running = True
        if self._history_len >= 1:
            step = q - self._history[1]
            fraction = float(np.max(np.abs(step) / self.joint_step_bound_rad))
            speed = float(np.max(np.abs(step))) / self.step_dt_s
            if self._max_speed_fraction is None or fraction > self._max_speed_fraction:
                self._max_speed_fraction = fraction
            if self._max_speed_rad_s is None or speed > self._max_speed_rad_s:
                self._max_speed_rad_s = speed
            if fraction > 1.0 + _REL_TOL:
                self.steps_over_speed_limit += 1
            if boundary and self._history_len >= 2:
                self._record_boundary(self._history[0], self._history[1], q)
        self._push(q)

    def on_idle(self) -> None:
        """A control tick with nothing to execute: counted while running; the arm holds."""
        if not self._running:
            return
        self.idle_steps += 1
        self._push(self._history[1])

    def on_held(self, chunk_boundary: bool = False) -> None:
        """A tick whose action was not executed (the safety layer held it): the arm holds, the tick
        is not idle; a held join is measured at the next executed step."""
        self._held_boundary = self._held_boundary or bool(chunk_boundary)
        if self._history_len >= 1:
            self._push(self._history[1])

    def _push(self, q: np.ndarray) -> None:
        self._history[0] = self._history[1]
        self._history[1] = q
        self._history_len = min(2, self._history_len + 1)

    def _record_boundary(self, q2: np.ndarray, q1: np.ndarray, q: np.ndarray) -> None:
        self.boundaries += 1
        bound = self.joint_step_bound_rad * (1.0 + _REL_TOL)
        step = np.abs(q - q1)
        jump = np.abs((q - q1) - (q1 - q2))
        self._jump_joint.add(float(jump.max()))
        self._max["jump_joint"] = max(self._max["jump_joint"], float(jump.max()))
        self._max["step_joint"] = max(self._max["step_joint"], float(step.max()))
        if self._pending_count == PENDING_BOUNDARIES:
            self._process_pending()
        index = self._pending_count
        self._pending[index] = (q2, q1, q)
        self._pending_over[index] = (bool(np.any(jump > bound)), bool(np.any(step > bound)))
        self._pending_count += 1

    def _process_pending(self) -> None:
        """The tool figures of the boundaries waiting for FK."""
        for (q2, q1, q), (jump_over, step_over) in zip(
            self._pending[: self._pending_count], self._pending_over[: self._pending_count], strict=True
        ):
            pose2, pose1, pose = (forward_kinematics(j) for j in (q2, q1, q))
            jump_m = float(np.linalg.norm((pose[:3, 3] - pose1[:3, 3]) - (pose1[:3, 3] - pose2[:3, 3])))
            before = pose2[:3, :3].T @ pose1[:3, :3]
            after = pose1[:3, :3].T @ pose[:3, :3]
            jump_rad = _rotation_angle(before.T @ after)
            step_m, step_rad = pose_travel(pose1, pose)
            self._jump_tool_m.add(jump_m)
            self._jump_tool_rad.add(jump_rad)
            for key, value in (("jump_m", jump_m), ("jump_rad", jump_rad), ("step_m", step_m)):
                self._max[key] = max(self._max[key], value)
            self._max["step_rad"] = max(self._max["step_rad"], step_rad)
            if jump_over or self._over_tool_bound(jump_m, jump_rad):
                self.boundary_jumps_over_bound += 1
            if step_over or self._over_tool_bound(step_m, step_rad):
                self.boundary_steps_over_bound += 1
        self._pending_count = 0

    def _over_tool_bound(self, translation_m: float, rotation_rad: float) -> bool:
        return translation_m > self.tool_step_m * (1.0 + _REL_TOL) or rotation_rad > self.tool_step_rad * (
            1.0 + _REL_TOL
        )

    def summary(self) -> dict[str, float | int | None]:
        """The figures of the module docstring (computes the tool figures of waiting boundaries)."""
        self._process_pending()
        ticks = self.control_steps + self.idle_steps
        out: dict[str, float | int | None] = {
            "control_steps": self.control_steps,
            "idle_steps": self.idle_steps,
            "idle_fraction": self.idle_steps / ticks if ticks else 0.0,
            "boundaries": self.boundaries,
        }
        measured = self.boundaries > 0
        for name, ring, key in (
            ("boundary_jump_joint_rad", self._jump_joint, "jump_joint"),
            ("boundary_jump_tool_m", self._jump_tool_m, "jump_m"),
            ("boundary_jump_tool_rad", self._jump_tool_rad, "jump_rad"),
        ):
            p50, p99 = ring.percentiles()
            out.update(
                {f"{name}_p50": p50, f"{name}_p99": p99, f"{name}_max": self._max[key] if measured else None}
            )
        out["boundary_jumps_over_bound"] = self.boundary_jumps_over_bound
        for name, key in (
            ("boundary_step_joint_rad_max", "step_joint"),
            ("boundary_step_tool_m_max", "step_m"),
            ("boundary_step_tool_rad_max", "step_rad"),
        ):
            out[name] = self._max[key] if measured else None
        out["boundary_steps_over_bound"] = self.boundary_steps_over_bound
        out["max_joint_speed_rad_s"] = self._max_speed_rad_s
        out["max_joint_speed_fraction"] = self._max_speed_fraction
        out["steps_over_speed_limit"] = self.steps_over_speed_limit
        return out
