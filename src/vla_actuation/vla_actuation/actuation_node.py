"""Actuation: policy actions in, WidowX joint trajectories out, with the safety layer in between.

Accepts discrete (256-bin) or continuous action chunks from /vla/action, executes them per the
chosen mode (single step, receding horizon, temporal ensembling), turns Bridge end-effector deltas
into joint targets by IK on the wx250s kinematics, and streams interpolated targets at the servo
rate to the ros2_control joint_trajectory_controller topics. It holds the arm (publishes nothing
new) on stale or invalid commands, on joint states that stop or are all refused for
joint_state_timeout_s, and on /vla/estop; resuming never jumps. A refused joint state changes
nothing; a jump in the measured joints is believed only once later states confirm it. No step of
a chunk runs before a joint state at least as new as the chunk's frame has been taken.
All decisions live in pure modules (ee_delta_controller, chunk_executor, safety, execution_stats).

/diagnostics (1 Hz, status ``vla_stack/actuation``) carries, besides ``latency_ms``, the ``count.*``
counters and the ``last_rejected.*`` reasons, the key ``execution``: a JSON object of
``ExecutionStats.summary()`` over the executed control steps since the node started (see
``vla_actuation.execution_stats`` for the definitions): ``control_steps``, ``idle_steps`` and
``idle_fraction`` (control ticks with nothing to execute while a chunk sequence runs),
``boundaries`` (chunk joins measured), ``boundary_jump_joint_rad_{p50,p99,max}``,
``boundary_jump_tool_m_{p50,p99,max}``, ``boundary_jump_tool_rad_{p50,p99,max}`` (the change of
the commanded step across each join), ``boundary_jumps_over_bound``,
``boundary_step_{joint_rad,tool_m,tool_rad}_max``, ``boundary_steps_over_bound`` (against the
per-step bound of the safety limits), ``max_joint_speed_rad_s``, ``max_joint_speed_fraction`` and
``steps_over_speed_limit``; ``null`` where nothing was measured. An episode start, an e-stop, a
terminate and every re-plan from the measured joints (a resume) restart the running state (no
join is measured across them, ticks before the next step are not idle); the figures restart when
the control rate or the limits change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_actuation.actuation_inputs import (
    RESET,
    UNCONFIRMED,
    JointStateContinuity,
    action_size_problem,
    decode_joint_state,
    episode_start_problem,
    joint_state_stamp_problem,
)
from vla_actuation.actuation_settings import PARAMETERS, ActuationSettings, build_settings
from vla_actuation.ee_delta_controller import EeDeltaController
from vla_actuation.safety import command_is_stale, validate_action
from vla_actuation.servo_stream import ServoStream
from vla_common.action_message import decode_action_chunk
from vla_common.control_period import step_dt_mismatch
from vla_common.heap import fix_mmap_threshold
from vla_common.inbound import decode_episode_event
from vla_common.latency import StageTimer
from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAME
from vla_common.ros.callback_guard import LAST_REASON_PREFIX, CallbackGuard
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, run_node, stamp_to_ns
from vla_common.ros.qos import EVENTS_QOS, RELIABLE_QOS

EXPECTED_SPACE = "bridge_ee_delta"
# A policy that keeps sending chunks of the wrong step would log at 5 Hz: once every so often is enough.
STEP_DT_LOG_PERIOD_S = 10.0
OVERRUN_LOG_PERIOD_S = 5.0  # a process paused again and again logs its overruns once per period
EXECUTION_KEY = "execution"  # the /diagnostics key of the execution statistics (JSON)


def _duration(seconds: float) -> Duration:
    return Duration(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)))


class ExecutionDiagnostics(StageDiagnostics):
    """StageDiagnostics that adds the execution statistics (``EXECUTION_KEY``) to each publication:
    computed once a second, at publishing, not on the control path."""

    def __init__(self, node: Node, timer: StageTimer, summary: Callable[[], dict[str, Any]]) -> None:
        self._summary = summary
        super().__init__(node, timer)

    def publish(self) -> None:
        self.note(EXECUTION_KEY, json.dumps(self._summary()))
        super().publish()


class ActuationNode(Node):
    """Executes action chunks through the safety layer and streams joint targets to the arm."""

    def __init__(self) -> None:
        super().__init__("actuation")
        self.params = NodeParameters(self)
        self.settings = build_settings(self.params.declare(PARAMETERS))
        self.controller = EeDeltaController(self.settings.controller_config)
        self._new_executors()
        self.timer = StageTimer()
        self.execution = self.settings.execution_stats()
        self.diag = ExecutionDiagnostics(self, self.timer, lambda: self.execution.summary())
        self.measured: np.ndarray | None = None
        self.measured_finger_m: float | None = None
        self.measured_stamp_ns = 0
        self.continuity = self._new_continuity(self.settings)
        # What is streamed: planned waypoints and the last point sent (every point within the speed limit).
        self.stream = ServoStream(self.settings.servo_hz, self.settings.limits, self.settings.step_dt_s)
        self.estopped = False
        self._needs_reset = True
        self._stream_reset = False
        self._episode_start_ns = 0
        # The newest accepted chunk's frame stamp: no step of it runs before a joint state at least as
        # new has been taken (see _control_step); True while a step waits for one.
        self._action_stamp_ns = 0
        self._waiting_for_measurement = False
        # After the stream's reference moved to a measurement (a reset), nothing is sent stamped before
        # that measurement (a node clock lagging the sim's, e.g. after a stall, would stamp it in the
        # old episode, where it reads as a jump).
        self._stream_from_ns = 0
        # The measurement (its stamp) the stream's reference was reset to, while no point has been sent
        # from it: the arm moves on meanwhile (toward the last command), so a plan starts from where it
        # is then, not from where it was.
        self._anchored_ns: int | None = None
        self._last_servo_monotonic: float | None = None  # real time of the last servo tick
        guard = CallbackGuard(self.get_logger(), self.diag)

        group = MutuallyExclusiveCallbackGroup()  # one lock for all state: callbacks here are short
        ns = f"/{self.settings.robot_name}"
        self.arm_pub = self.create_publisher(JointTrajectory, f"{ns}/arm_controller/joint_trajectory", 10)
        self.gripper_pub = self.create_publisher(
            JointTrajectory, f"{ns}/gripper_controller/joint_trajectory", 10
        )
        self.create_subscription(
            JointState,
            f"{ns}/joint_states",
            guard.wrap("joint_state", self._on_joint_state),
            10,
            callback_group=group,
        )
        self.create_subscription(
            String, "/vla/action", guard.wrap("action", self._on_action), RELIABLE_QOS, callback_group=group
        )
        self.create_subscription(
            Bool, "/vla/estop", guard.wrap("estop", self._on_estop), RELIABLE_QOS, callback_group=group
        )
        self.create_subscription(
            String, "/vla/episode", guard.wrap("episode", self._on_episode), EVENTS_QOS, callback_group=group
        )
        # A control step runs when an action arrives (no waiting for a tick) and every step_dt_s after
        # the last one, so chunks keep executing between arrivals; the executor runs no two steps
        # within half a period. What is streamed obeys the speed and tool bounds whatever the steps
        # do (ServoStream), so an arriving chunk is never held back for a timer step: a timer tick just
        # before each of the policy's chunks would otherwise execute every chunk one period stale.
        self.control_timer = self.create_timer(
            self.settings.step_dt_s, guard.wrap("control_tick", self._on_control_tick), callback_group=group
        )
        self.create_timer(
            1.0 / self.settings.servo_hz, guard.wrap("servo_tick", self._on_servo_tick), callback_group=group
        )
        self.params.on_change(build_settings, self._apply_settings)

    @staticmethod
    def _new_continuity(settings: ActuationSettings) -> JointStateContinuity:
        return JointStateContinuity(
            settings.max_joint_state_jump_rad,
            settings.limits.joint_velocity_limits(),
            settings.joint_state_jump_confirm_s,
            arrival_slack_s=settings.joint_state_timeout_s,
        )

    def _new_executors(self) -> None:
        # Chunks run in the chosen mode; one-step actions (OpenVLA, RT-2) always run as single steps:
        # a lone step is never "half in the past", it is the newest command.
        self.chunk_executor = self.settings.chunk_executor()
        self.step_executor = self.settings.step_executor()
        self.executor_ = self.chunk_executor

    def _apply_settings(self, settings: ActuationSettings) -> None:
        """Swap in settings changed at run time (``ros2 param set``), already validated whole.

        The node spins a single-threaded executor (run_node), so this runs between two callbacks,
        never during one: each callback sees the old settings or the new ones.
        """
        previous, self.settings = self.settings, settings
        self.controller.config = settings.controller_config  # new limits; its targets stay: no jump
        self.stream.limits = settings.limits
        accepted, self.continuity = self.continuity.accepted, self._new_continuity(settings)
        self.continuity.accepted = accepted  # new thresholds, same last measurement
        if not settings.same_execution(previous):
            self._new_executors()  # held chunks are dropped: the next chunk starts afresh
        if not settings.same_step_bounds(previous):
            self.execution = settings.execution_stats()  # figures against the new bounds

    # --- inputs -------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        # Every joint used (the finger too) is checked before anything is stored.
        joints, finger_m, violations = decode_joint_state(msg.name, msg.position)
        if joints is None:  # refused: changes nothing; with no valid state for joint_state_timeout_s, hold
            reason = f"joint_states rejected: {'; '.join(v.message for v in violations)}"
            self._refuse(ERROR, reason, "bad_joint_states")
            return
        stamp_ns, now_ns = stamp_to_ns(msg.header.stamp), self.get_clock().now().nanoseconds
        ahead = joint_state_stamp_problem(stamp_ns, now_ns, self.settings.joint_state_timeout_s)
        if ahead is not None:  # refused, changes nothing (the true states keep coming)
            self._refuse(ERROR, f"joint_states rejected: {ahead}", "bad_joint_states")
            return
        verdict, jump = self.continuity.admit(joints, stamp_ns, now_ns)
        limit = (
            f"beyond the speed limit (> max_joint_state_jump_rad {self.settings.max_joint_state_jump_rad})"
        )
        if verdict == UNCONFIRMED:  # one state is not believed: nothing stored; the stream pauses
            reason = (
                f"measured joints jumped {jump:.3f} rad {limit}; ignored until joint states agree with it "
                f"for joint_state_jump_confirm_s {self.settings.joint_state_jump_confirm_s}"
            )
            self._refuse(WARN, reason, "unconfirmed_joint_state_jumps", log=False)
            return
        if verdict == RESET:  # the arm was moved (a reset we were not told of): nothing old goes out
            self._hold_until_valid_state(reset=True)
            reason = (
                f"measured joints jumped {jump:.3f} rad {limit}, confirmed; pending commands dropped, "
                "re-planning"
            )
            self._refuse(WARN, reason, "joint_state_jumps")
        self.measured = joints
        if finger_m is not None:
            self.measured_finger_m = finger_m
        self.measured_stamp_ns = stamp_ns
        if self._needs_reset and self.measured_stamp_ns >= self._episode_start_ns:
            self._reset_to_measured()
        if self._waiting_for_measurement and stamp_ns >= self._action_stamp_ns:
            self._control_step(now_ns)  # the step held for a measurement as new as its frame

    def _hold_until_valid_state(self, reset: bool = False) -> None:
        """Hold: drop what is planned; the next valid joint state re-plans from where the arm is.

        The chunk being executed stays (bad or late joint states say nothing about the action);
        an episode start or an e-stop also drops it (they reset the executor themselves).
        """
        self.stream.clear()
        self._needs_reset = True
        self._stream_reset = self._stream_reset or reset  # a reset forgets the last point streamed

    def _reset_to_measured(self) -> None:
        self.execution.start()  # a resume from the measured joints: no join measured across it
        self.controller.reset(self.measured, self.measured_finger_m)
        now_s = self.get_clock().now().nanoseconds * 1e-9
        self.stream.anchor(self.measured, now_s, keep_speed_reference=not self._stream_reset)
        if self._stream_reset:  # the reference follows the measurement: no command stamped before it
            self._stream_from_ns = self.measured_stamp_ns
            self._anchored_ns = self.measured_stamp_ns
        self._needs_reset = False
        self._stream_reset = False

    def _on_action(self, msg: String) -> None:
        now_ns = self.get_clock().now().nanoseconds
        too_large = action_size_problem(len(msg.data), self.settings.max_action_bytes)
        if too_large is not None:  # refused before decoding: a huge chunk never stalls the servo stream
            self._refuse(
                ERROR, f"action rejected: {too_large}; holding", "oversized_actions", "rejected_actions"
            )
            return
        try:
            with self.timer.measure("action_decode"):
                chunk = decode_action_chunk(
                    msg.data,
                    max_steps=self.settings.max_action_steps,
                    max_bytes=self.settings.max_action_bytes,
                )
                if chunk.space.name != EXPECTED_SPACE or chunk.space.dim != 7:
                    raise ValueError(
                        f"action space '{chunk.space.name}' with {chunk.space.dim} dims; "
                        f"expected {EXPECTED_SPACE} with 7"
                    )
        except ValueError as exc:  # the decoder's only exception on input (tests/unit: property tests)
            self._refuse(ERROR, f"action rejected: {exc}; holding", "rejected_actions")
            return
        mismatch = step_dt_mismatch(chunk.space.step_dt_s, self.settings.control_hz)
        if mismatch is not None:
            self._reject_step_dt(f"action rejected: {mismatch}; holding")
            return
        stale, reason = command_is_stale(chunk.stamp_ns, now_ns, self.settings.limits)
        if stale and (chunk.horizon == 1 or chunk.stamp_ns == 0 or chunk.stamp_ns > now_ns):
            self._refuse(WARN, f"action rejected: {reason}; holding", "stale_actions")
            return
        if chunk.stamp_ns < self._episode_start_ns:  # computed before the episode started: never sent
            self.diag.count("previous_episode_actions")
            return
        for row in chunk.values:  # the safety layer sees every step before anything is queued
            _, violations = validate_action(row, chunk.space.dim)
            if violations:
                for violation in violations:
                    self.diag.count(f"violation.{violation.code}")
                self._refuse(ERROR, f"action rejected: {violations[0].message}; holding", "rejected_actions")
                return
        if chunk.terminate:  # the policy says the episode is over (RT-2's terminate): stop here
            self.executor_.reset()
            self.execution.start()
            self.stream.clear()
            self.diag.count("terminate")
            self.diag.report(OK, f"policy '{chunk.policy}' signalled the end of the episode; holding")
            return
        executor = self.step_executor if chunk.horizon == 1 else self.chunk_executor
        if executor is not self.executor_:
            self.executor_.reset()
            self.executor_ = executor
        result = executor.submit(chunk.values, chunk.stamp_ns * 1e-9, now_ns * 1e-9)
        if not result.accepted:
            self._refuse(WARN, f"action chunk rejected: {result.reason}", "rejected_chunks")
            return
        self.diag.count("actions")
        self._action_stamp_ns = chunk.stamp_ns  # (each accepted chunk is newer than the last)
        # How old the chunk's frame is when its action starts, on the node's clock (sim time in the
        # sim): what the graph replica's Timing models (policy phase + processing).
        self.timer.record("frame_to_action", (now_ns - chunk.stamp_ns) * 1e-6)
        self._control_step(now_ns)  # (the executor runs no second step within half a period)
        # The timer restarts at every accepted chunk: a timer step taken just before a chunk (with the
        # older chunk's next step) does not keep the timer ahead of every later chunk.
        self.control_timer.reset()

    def _reject_step_dt(self, message: str) -> None:
        """A chunk timed for another control rate: hold, count it, say why (log throttled)."""
        self._refuse(ERROR, message, "step_dt_mismatch", "rejected_actions", log=False)
        self.get_logger().error(message, throttle_duration_sec=STEP_DT_LOG_PERIOD_S)

    def _refuse(self, level: int, reason: str, *counters: str, log: bool = True) -> None:
        """Count a refused input under each of ``counters``, keep ``reason`` as the last one of each
        (``last_rejected.<counter>`` in /diagnostics) and make it the status."""
        for counter in counters:
            self.diag.count(counter)
            self.diag.note(f"{LAST_REASON_PREFIX}.{counter}", reason)
        self.diag.report(level, reason, log=log)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and not self.estopped:
            self.estopped = True
            self.executor_.reset()
            self.execution.start()
            self.stream.clear()
            if self.measured is not None:  # protective stop: toward where the arm is now, within the limits
                now_ns = self.get_clock().now().nanoseconds
                point = self.stream.stop_toward(self.measured, now_ns * 1e-9)
                if point is not None:
                    self._anchored_ns = None
                    self._publish_arm(point.joints, point.time_from_start_s, now_ns)
            self.diag.report(ERROR, "e-stop: protective stop, holding")
        elif not msg.data and self.estopped:
            self.estopped = False
            self._needs_reset = True  # resume from where the arm is: no jump
            if self.measured is not None and self.measured_stamp_ns >= self._episode_start_ns:
                self._reset_to_measured()  # (else the first joint state of the episode does it)
            self.diag.report(OK, "e-stop released")

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_episode_event(msg.data)
        except ValueError as exc:
            self._refuse(ERROR, f"episode event rejected: {exc}", "rejected_episode_events")
            return
        if event.event == "start" and (problem := episode_start_problem(event.stamp_ns)) is not None:
            self._refuse(ERROR, f"episode event rejected: {problem}", "rejected_episode_events")
            return
        if event.event == "start":  # nothing computed before the reset is sent after it
            self._episode_start_ns = event.stamp_ns
            self._action_stamp_ns = 0  # (a restarted sim's clock may begin again below it)
            self.executor_.reset()
            self.execution.start()
            self._hold_until_valid_state(reset=True)

    # --- control ------------------------------------------------------------------------------
    def _on_control_tick(self) -> None:
        self._control_step(self.get_clock().now().nanoseconds)

    def _control_step(self, now_ns: int) -> None:
        """One control step at ``now_ns`` (nothing when the executor has no action for it)."""
        if self.estopped or self._needs_reset or self.measured is None:
            return
        if (now_ns - self.measured_stamp_ns) * 1e-9 > self.settings.joint_state_timeout_s:
            age_s = (now_ns - self.measured_stamp_ns) * 1e-9
            self._refuse(ERROR, f"joint_states are {age_s:.2f} s old; holding", "stale_joint_states")
            self._hold_until_valid_state()
            return
        self._waiting_for_measurement = self.measured_stamp_ns < self._action_stamp_ns
        if self._waiting_for_measurement:
            # The chunk comes from a frame newer than every joint state taken: the world may have
            # changed under it (an episode start whose event and joint states are still in flight
            # while the policy already answered its first frame). No step runs from a measurement
            # older than the chunk's frame; the next joint state runs this step.
            self.diag.count("hold_measurement_behind_action")
            return
        tick = self.executor_.next_step(now_ns * 1e-9)
        action = tick.action
        if action is None:
            self.diag.count("hold_no_action")
            if tick.idle:
                self.execution.on_idle()
            return
        if self._anchored_ns is not None and self.measured_stamp_ns > self._anchored_ns:
            # Nothing sent since the reference moved to a measurement (e.g. 0.44 s without an action
            # after a start, the arm 0.16 rad further on): start from the newest one.
            self._stream_reset = True
            self._reset_to_measured()
        with self.timer.measure("ik"):
            step = self.controller.step(action, self.measured)
        for violation in step.violations:
            self.diag.count(f"violation.{violation.code}")
        if not step.accepted:
            self.execution.on_held(tick.boundary)
            self.diag.report(WARN, f"step held: {'; '.join(v.message for v in step.violations)}")
            return
        self.execution.on_step(step.joint_targets_rad, tick.boundary)
        # From where the stream really is, stretched to the distance: the streamed speed holds.
        self.stream.plan(step.joint_targets_rad, now_ns * 1e-9)
        self._publish_gripper(step.finger_target_m)
        self.diag.report(OK, "ok")

    def _on_servo_tick(self) -> None:
        wall = time.monotonic()
        late_s = None if self._last_servo_monotonic is None else wall - self._last_servo_monotonic
        self._last_servo_monotonic = wall
        if late_s is not None and late_s > self.settings.servo_overrun_s:
            self._on_overrun(late_s)
        # While a jump in the measured joints waits for confirmation, nothing new goes out: after an
        # episode start that the start event has not yet announced, the plan heads for the old pose.
        if self.estopped or self._needs_reset or self.continuity.in_doubt:
            return
        now_ns = self.get_clock().now().nanoseconds
        if now_ns < self._stream_from_ns:
            return
        self._stream_from_ns = 0  # once: a clock that goes back later (a restarted sim) is not waited for
        point = self.stream.tick(now_ns * 1e-9)
        if point is None:
            return
        self._anchored_ns = None
        with self.timer.measure("publish"):
            self._publish_arm(point.joints, point.time_from_start_s, now_ns)

    def _on_overrun(self, late_s: float) -> None:
        """The loop did not run for ``late_s``: re-plan from the measured joints, within the speed limit."""
        message = (
            f"servo loop overran: {late_s:.3f} s since the previous tick "
            f"(period {1.0 / self.settings.servo_hz:.3f} s, servo_overrun_s {self.settings.servo_overrun_s})"
        )
        self._refuse(WARN, message + "; re-planning from the measured joints", "servo_overruns", log=False)
        self.get_logger().warning(message, throttle_duration_sec=OVERRUN_LOG_PERIOD_S)
        target = self.stream.final_target
        if self.measured is None or self._needs_reset:
            self.stream.clear()
            return
        now_s = self.get_clock().now().nanoseconds * 1e-9
        self.stream.anchor(self.measured, now_s, keep_speed_reference=True)
        if target is not None and not self.estopped:
            self.stream.plan(target, now_s)

    def _publish_arm(self, joints: np.ndarray, time_from_start_s: float, stamp_ns: int) -> None:
        msg = JointTrajectory(joint_names=list(ARM_JOINT_NAMES))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.points = [
            JointTrajectoryPoint(
                positions=[float(j) for j in joints], time_from_start=_duration(time_from_start_s)
            )
        ]
        self.arm_pub.publish(msg)

    def _publish_gripper(self, finger_m: float) -> None:
        msg = JointTrajectory(joint_names=[FINGER_JOINT_NAME])
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.points = [JointTrajectoryPoint(positions=[float(finger_m)], time_from_start=_duration(0.1))]
        self.gripper_pub.publish(msg)


def main(args=None) -> int:
    fix_mmap_threshold()  # refused huge actions go back to the system when freed: no RSS creep
    return run_node(ActuationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
