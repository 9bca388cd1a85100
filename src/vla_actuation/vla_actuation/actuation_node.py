"""Actuation: policy actions in, WidowX joint trajectories out, with the safety layer in between.

Accepts discrete (256-bin) or continuous action chunks from /vla/action, executes them per the
chosen mode (single step, receding horizon, temporal ensembling), turns Bridge end-effector deltas
into joint targets by IK on the wx250s kinematics, and streams interpolated targets at the servo
rate to the ros2_control joint_trajectory_controller topics. It holds the arm (publishes nothing
new) on stale or invalid commands, bad joint states, and on /vla/estop; resuming never jumps.
All decisions live in pure modules (ee_delta_controller, chunk_executor, safety).
"""

from __future__ import annotations

import json
from collections import deque

import numpy as np
from builtin_interfaces.msg import Duration
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_actuation.actuation_settings import PARAMETERS, ActuationSettings, build_settings
from vla_actuation.ee_delta_controller import EeDeltaController, servo_waypoints
from vla_actuation.safety import command_is_stale, validate_action, validate_joint_state
from vla_common.action_message import decode_action_chunk
from vla_common.control_period import step_dt_mismatch
from vla_common.latency import StageTimer
from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAME
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, run_node, stamp_to_ns
from vla_common.ros.qos import EVENTS_QOS, RELIABLE_QOS

EXPECTED_SPACE = "bridge_ee_delta"
# A policy that keeps sending chunks of the wrong step would log at 5 Hz: once every so often is enough.
STEP_DT_LOG_PERIOD_S = 10.0


def _duration(seconds: float) -> Duration:
    return Duration(sec=int(seconds), nanosec=int(round((seconds - int(seconds)) * 1e9)))


class ActuationNode(Node):
    """Executes action chunks through the safety layer and streams joint targets to the arm."""

    def __init__(self) -> None:
        super().__init__("actuation")
        self.params = NodeParameters(self)
        self.settings = build_settings(self.params.declare(PARAMETERS))
        self.controller = EeDeltaController(self.settings.controller_config)
        self._new_executors()
        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.measured: np.ndarray | None = None
        self.measured_finger_m: float | None = None
        self.measured_stamp_ns = 0
        self.commanded: np.ndarray | None = None  # the last streamed arm target
        self.waypoints: deque[tuple[int, np.ndarray]] = deque()  # (due time ns, joints)
        self.estopped = False
        self._needs_reset = True
        self._episode_start_ns = 0

        group = MutuallyExclusiveCallbackGroup()  # one lock for all state: callbacks here are short
        ns = f"/{self.settings.robot_name}"
        self.arm_pub = self.create_publisher(JointTrajectory, f"{ns}/arm_controller/joint_trajectory", 10)
        self.gripper_pub = self.create_publisher(
            JointTrajectory, f"{ns}/gripper_controller/joint_trajectory", 10
        )
        self.create_subscription(
            JointState, f"{ns}/joint_states", self._on_joint_state, 10, callback_group=group
        )
        self.create_subscription(String, "/vla/action", self._on_action, RELIABLE_QOS, callback_group=group)
        self.create_subscription(Bool, "/vla/estop", self._on_estop, RELIABLE_QOS, callback_group=group)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS, callback_group=group)
        # A control step runs when an action arrives (no waiting for a tick) and every step_dt_s
        # after the last one, so chunks keep executing between arrivals.
        self.control_timer = self.create_timer(
            self.settings.step_dt_s, self._on_control_tick, callback_group=group
        )
        self.create_timer(1.0 / self.settings.servo_hz, self._on_servo_tick, callback_group=group)
        self.params.on_change(build_settings, self._apply_settings)

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
        if not settings.same_execution(previous):
            self._new_executors()  # held chunks are dropped: the next chunk starts afresh

    # --- inputs -------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        joints, violations = validate_joint_state(list(msg.name), list(msg.position))
        if joints is None:
            self.measured = None
            self.diag.report(
                ERROR, f"joint_states rejected: {'; '.join(v.message for v in violations)}; holding"
            )
            self.diag.count("bad_joint_states")
            return
        self.measured = joints
        if FINGER_JOINT_NAME in msg.name:
            self.measured_finger_m = float(msg.position[list(msg.name).index(FINGER_JOINT_NAME)])
        self.measured_stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._needs_reset and self.measured_stamp_ns >= self._episode_start_ns:
            self._reset_to_measured()

    def _reset_to_measured(self) -> None:
        self.controller.reset(self.measured, self.measured_finger_m)
        self.executor_.reset()
        self.waypoints.clear()
        self.commanded = self.measured.copy()
        self._needs_reset = False

    def _on_action(self, msg: String) -> None:
        now_ns = self.get_clock().now().nanoseconds
        try:
            with self.timer.measure("action_decode"):
                chunk = decode_action_chunk(msg.data)
                if chunk.space.name != EXPECTED_SPACE or chunk.space.dim != 7:
                    raise ValueError(
                        f"action space '{chunk.space.name}' with {chunk.space.dim} dims; "
                        f"expected {EXPECTED_SPACE} with 7"
                    )
        except ValueError as exc:
            self.diag.report(ERROR, f"action rejected: {exc}; holding")
            self.diag.count("rejected_actions")
            return
        mismatch = step_dt_mismatch(chunk.space.step_dt_s, self.settings.control_hz)
        if mismatch is not None:
            self._reject_step_dt(f"action rejected: {mismatch}; holding")
            return
        stale, reason = command_is_stale(chunk.stamp_ns, now_ns, self.settings.limits)
        if stale and (chunk.horizon == 1 or chunk.stamp_ns == 0 or chunk.stamp_ns > now_ns):
            self.diag.report(WARN, f"action rejected: {reason}; holding")
            self.diag.count("stale_actions")
            return
        if chunk.stamp_ns < self._episode_start_ns:
            return
        for row in chunk.values:  # the safety layer sees every step before anything is queued
            _, violations = validate_action(row, chunk.space.dim)
            if violations:
                for violation in violations:
                    self.diag.count(f"violation.{violation.code}")
                self.diag.report(ERROR, f"action rejected: {violations[0].message}; holding")
                self.diag.count("rejected_actions")
                return
        if chunk.terminate:  # the policy says the episode is over (RT-2's terminate): stop here
            self.executor_.reset()
            self.waypoints.clear()
            self.diag.count("terminate")
            self.diag.report(OK, f"policy '{chunk.policy}' signalled the end of the episode; holding")
            return
        executor = self.step_executor if chunk.horizon == 1 else self.chunk_executor
        if executor is not self.executor_:
            self.executor_.reset()
            self.executor_ = executor
        result = executor.submit(chunk.values, chunk.stamp_ns * 1e-9, now_ns * 1e-9)
        if not result.accepted:
            self.diag.report(WARN, f"action chunk rejected: {result.reason}")
            self.diag.count("rejected_chunks")
            return
        self.diag.count("actions")
        # How old the chunk's frame is when its action starts, on the node's clock (sim time in the
        # sim): what the graph replica's Timing models (policy phase + processing).
        self.timer.record("frame_to_action", (now_ns - chunk.stamp_ns) * 1e-6)
        self._on_control_tick()
        self.control_timer.reset()

    def _reject_step_dt(self, message: str) -> None:
        """A chunk timed for another control rate: hold, count it, say why (log throttled)."""
        self.diag.count("step_dt_mismatch")
        self.diag.count("rejected_actions")
        self.diag.report(ERROR, message, log=False)
        self.get_logger().error(message, throttle_duration_sec=STEP_DT_LOG_PERIOD_S)

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and not self.estopped:
            self.estopped = True
            self.executor_.reset()
            self.waypoints.clear()
            if self.measured is not None:  # protective stop: hold where the arm is now
                self.commanded = self.measured.copy()
                self._publish_arm(self.commanded, 2.0 / self.settings.servo_hz)
            self.diag.report(ERROR, "e-stop: protective stop, holding")
        elif not msg.data and self.estopped:
            self.estopped = False
            self._needs_reset = True  # resume from where the arm is: no jump
            if self.measured is not None:
                self._reset_to_measured()
            self.diag.report(OK, "e-stop released")

    def _on_episode(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":
            self._episode_start_ns = int(event.get("stamp_ns", 0))
            self.executor_.reset()
            self.waypoints.clear()
            self._needs_reset = True

    # --- control ------------------------------------------------------------------------------
    def _on_control_tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if self.estopped or self._needs_reset or self.measured is None:
            return
        if (now_ns - self.measured_stamp_ns) * 1e-9 > self.settings.joint_state_timeout_s:
            self.diag.report(
                ERROR, f"joint_states are {(now_ns - self.measured_stamp_ns) * 1e-9:.2f} s old; holding"
            )
            self.diag.count("stale_joint_states")
            return
        action = self.executor_.next_action(now_ns * 1e-9)
        if action is None:
            self.diag.count("hold_no_action")
            return
        with self.timer.measure("ik"):
            step = self.controller.step(action, self.measured)
        for violation in step.violations:
            self.diag.count(f"violation.{violation.code}")
        if not step.accepted:
            self.diag.report(WARN, f"step held: {'; '.join(v.message for v in step.violations)}")
            return
        start = self.commanded if self.commanded is not None else self.measured
        self.waypoints.clear()
        for t_s, joints in servo_waypoints(
            start, step.joint_targets_rad, self.settings.step_dt_s, self.settings.servo_hz
        ):
            self.waypoints.append((now_ns + int(t_s * 1e9), joints))
        self._publish_gripper(step.finger_target_m)
        self.diag.report(OK, "ok")

    def _on_servo_tick(self) -> None:
        if self.estopped or not self.waypoints:
            return
        now_ns = self.get_clock().now().nanoseconds
        due = None
        while self.waypoints and self.waypoints[0][0] <= now_ns + int(0.5e9 / self.settings.servo_hz):
            due = self.waypoints.popleft()[1]
        if due is None:
            return
        with self.timer.measure("publish"):
            self._publish_arm(due, 2.0 / self.settings.servo_hz)
        self.commanded = due

    def _publish_arm(self, joints: np.ndarray, time_from_start_s: float) -> None:
        msg = JointTrajectory(joint_names=list(ARM_JOINT_NAMES))
        msg.header.stamp = self.get_clock().now().to_msg()
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
    return run_node(ActuationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
