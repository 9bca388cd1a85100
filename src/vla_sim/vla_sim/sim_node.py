"""The embedded MuJoCo WidowX as a ROS 2 node, interchangeable with Gazebo or the real arm.

Publishes /clock, /wx250s/joint_states, camera images and (sim only) privileged object poses;
takes trajectory_msgs/JointTrajectory on the ros2_control controllers' topics. Runs episodes:
seeded scene, instruction on /vla/instruction, start/end events on /vla/episode.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_common.control_period import step_period_s
from vla_common.inbound import decode_joint_trajectory
from vla_common.latency import StageTimer
from vla_common.robot import (
    ARM_JOINT_NAMES,
    FINGER_JOINT_NAME,
    FINGER_LOWER_M,
    FINGER_UPPER_M,
    JOINT_LOWER_RAD,
    JOINT_UPPER_RAD,
)
from vla_common.ros.callback_guard import CallbackGuard, MessageRejections
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import OK, StageDiagnostics, ns_to_stamp, run_node, stamp_to_ns
from vla_common.ros.qos import CAMERA_QOS, EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_sim.episode_plan import load_episode_plan
from vla_sim.episode_tracker import EpisodeTracker
from vla_sim.sensor_noise import add_read_noise
from vla_sim.sim_settings import ROBOT_NAME, Pacing, build_pacing, sim_parameters
from vla_sim.trajectory_follower import TrajectoryFollower
from vla_sim.widowx_sim import SimConfig, WidowXSim


class SimNode(Node):
    """Steps the MuJoCo WidowX in (optionally faster than) real time and runs seeded episodes."""

    def __init__(self) -> None:
        super().__init__("sim")
        self.params = NodeParameters(self)
        robot = self.params.declare([ROBOT_NAME])["robot_name"]
        values = self.params.declare(sim_parameters(robot))
        self._build(values)

        ns = f"/{robot}"
        self.diag = StageDiagnostics(self, StageTimer())
        self.guard = CallbackGuard(self.get_logger(), self.diag)  # a bug in a callback: logged, not fatal
        self.rejections = MessageRejections(self.get_logger(), self.diag)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.joint_pub = self.create_publisher(JointState, f"{ns}/joint_states", 10)
        self.image_pubs = {
            c: self.create_publisher(Image, f"/camera/{c}/image_raw", CAMERA_QOS) for c in self.cameras
        }
        self.privileged_pub = self.create_publisher(String, "/sim/privileged_state", RELIABLE_QOS)
        self.instruction_pub = self.create_publisher(String, "/vla/instruction", LATCHED_QOS)
        self.episode_pub = self.create_publisher(String, "/vla/episode", EVENTS_QOS)
        self.create_subscription(
            JointTrajectory,
            f"{ns}/arm_controller/joint_trajectory",
            self.guard.wrap("arm_trajectory", lambda m: self._on_trajectory("arm_trajectory", self.arm, m)),
            10,
        )
        self.create_subscription(
            JointTrajectory,
            f"{ns}/gripper_controller/joint_trajectory",
            self.guard.wrap(
                "gripper_trajectory", lambda m: self._on_trajectory("gripper_trajectory", self.gripper, m)
            ),
            10,
        )
        self._thread = threading.Thread(target=self._run, name="sim-loop", daemon=True)
        self._thread.start()
        self.params.on_change(build_pacing, self._apply_pacing)

    def _build(self, values: dict) -> None:
        """The episode schedule, the pacing, the simulator and the trajectory followers."""
        self.seed, self.episodes, self.max_steps = values["seed"], values["episodes"], values["max_steps"]
        self.family, self.instruction = values["task_family"], values["instruction"]
        self.step_dt_s = step_period_s(values["control_hz"])
        self.clock_hz, self.joint_state_hz = values["clock_hz"], values["joint_state_hz"]
        self.camera_hz, self.cameras = values["camera_hz"], values["cameras"]
        self.wait_for_graph_s = values["wait_for_graph_s"]
        self.wait_for_publishers = values["wait_for_publishers"]
        self.camera_subscribers = values["camera_subscribers"]
        self.pacing = build_pacing(values)
        plan_file = values["episode_plan_file"]
        self.plan = load_episode_plan(plan_file) if plan_file else None
        if self.plan is not None:
            self.episodes = len(self.plan)
        self.sim = WidowXSim(
            SimConfig(camera_width=values["camera_width"], camera_height=values["camera_height"])
        )
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(self.seed)
        arm, finger = self._measured_joints()
        self.arm = TrajectoryFollower(ARM_JOINT_NAMES, arm)
        self.gripper = TrajectoryFollower((FINGER_JOINT_NAME,), finger)
        self._limits = {  # what each controller accepts (lower, upper)
            "arm_trajectory": (JOINT_LOWER_RAD, JOINT_UPPER_RAD),
            "gripper_trajectory": ([FINGER_LOWER_M], [FINGER_UPPER_M]),
        }
        # The simulator restarts its time at each reset; ROS time (offset + sim time) never goes back.
        self._time_offset_s = 1.0  # start at 1 s: a zero stamp means "no stamp" to ROS consumers
        self._episode_start_ns = 0
        self._next_joint_s = 0.0
        self._next_camera_s = 0.0
        self._stop = threading.Event()

    def _measured_joints(self) -> tuple[np.ndarray, np.ndarray]:
        """The arm joints and the driven finger as the simulator has them now."""
        names, positions, _, _ = self.sim.joint_state()
        arm = np.array([positions[names.index(j)] for j in ARM_JOINT_NAMES])
        return arm, np.array([positions[names.index(FINGER_JOINT_NAME)]])

    def _apply_pacing(self, pacing: Pacing) -> None:
        # One reference, read afresh by the sim loop each tick, frame or episode: never half-applied.
        self.pacing = pacing

    def _now_s(self) -> float:
        """ROS time: the sim's own time (reset each episode) plus the episode's ROS start time."""
        return self._time_offset_s + self.sim.time_s

    # --- commands -----------------------------------------------------------------------------
    def _on_trajectory(self, kind: str, follower: TrajectoryFollower, msg: JointTrajectory) -> None:
        """Validate a controller command as joint_trajectory_controller would (names, sizes, finite,
        within limits, increasing times), then hand it to the follower; a bad one is dropped."""
        points = [
            (p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, list(p.positions)) for p in msg.points
        ]
        lower, upper = self._limits[kind]
        try:
            decode_joint_trajectory(
                list(msg.joint_names), points, follower.joint_names, lower, upper, what=kind
            )
        except ValueError as exc:
            self.rejections.drop(kind, str(exc))
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        with self._lock:
            now = self._now_s()
            # Stamped at or before this episode's start: computed before the reset (the clock stands
            # still at the start while every node resets), so never applied after it.
            previous_episode = stamp_ns != 0 and stamp_ns <= self._episode_start_ns
            if not previous_episode:
                reason = follower.accept(list(msg.joint_names), points, stamp_ns * 1e-9, now)
        if previous_episode:
            self.diag.count(f"previous_episode.{kind}")
        elif reason:
            self.rejections.drop(kind, reason)

    # --- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._wait_for_graph()
            index = 0
            while not self._stop.is_set() and (self.episodes == 0 or index < self.episodes):
                self._run_episode(index)
                index += 1
            self._publish_event({"event": "done", "episodes": index})
            while not self._stop.is_set():  # keep time going (holding) until shut down
                self._advance(self.step_dt_s)
        except Exception as exc:  # noqa: BLE001 - report, don't die silently in a thread
            if self._stop.is_set() or not self.context.ok():
                return  # shutting down: publishers are gone
            self.get_logger().fatal(f"sim loop failed: {exc!r}")
            raise
        finally:
            self.sim.close()  # the EGL context belongs to this thread

    def _wait_for_graph(self) -> None:
        """Hold the first episode until the policy (its model loaded) and the actuation are up."""
        deadline = time.monotonic() + self.wait_for_graph_s
        waiting: list[str] = []  # wait_for_graph_s 0: start at once
        while time.monotonic() < deadline and not self._stop.is_set():
            waiting = [topic for topic in self.wait_for_publishers if self.count_publishers(topic) == 0]
            waiting += [
                pub.topic_name
                for pub in self.image_pubs.values()
                if pub.get_subscription_count() < self.camera_subscribers
            ]
            if not waiting:
                return
            self._publish_clock()
            time.sleep(0.1)
        if waiting:
            self.get_logger().warn(
                f"no publisher on {waiting} after {self.wait_for_graph_s} s; starting anyway"
            )

    def _run_episode(self, index: int) -> None:
        seed = self.seed + index
        max_steps = self.max_steps
        reset: dict = {"family": self.family or None, "instruction": self.instruction or None}
        if self.plan is not None:
            entry = dict(self.plan[index])
            seed = int(entry.pop("seed"))
            max_steps = int(entry.pop("max_steps", max_steps))
            reset = entry
        with self._lock:
            if index > 0:
                self._time_offset_s = self._now_s() + 1.0 / self.clock_hz
            spec = self.sim.reset(seed, **reset)
            now = self._now_s()
            arm, finger = self._measured_joints()
            self.arm.reset(arm, now)
            self.gripper.reset(finger, now)
            self._episode_start_ns = int(round(now * 1e9))  # as _stamp() stamps it
        self.diag.report(OK, f"episode {index} (seed {seed}) running")
        self.instruction_pub.publish(String(data=spec.instruction))
        self._publish_event(
            {
                "event": "start",
                "episode": index,
                "seed": seed,
                "family": spec.family,
                "instruction": spec.instruction,
                "stamp_ns": self._episode_start_ns,
            }
        )
        # The settling pause first waits for every reader to hold the start, before the clock moves
        # on: a node's executor then handles the start no later than the clock message, so no timer
        # acts on the new episode's time with the old episode's state. A node that does not answer
        # within the pause (stopped, overloaded) gets the pause alone, as before: the sim's time
        # never waits on one node.
        settle_until = time.monotonic() + self.pacing.settle_wall_s
        settle = Duration(seconds=self.pacing.settle_wall_s)
        if self.pacing.settle_wall_s > 0 and not self.episode_pub.wait_for_all_acked(settle):
            self.get_logger().warning(
                f"episode {index}: not every /vla/episode reader acknowledged the start within the "
                f"{self.pacing.settle_wall_s} s settling pause"
            )
        self._publish_clock()
        self._publish_joint_state()
        time.sleep(max(0.0, settle_until - time.monotonic()))  # let every node reset before time moves on
        tracker = EpisodeTracker(now, max_steps, self.step_dt_s)
        result = None
        while result is None and not self._stop.is_set():
            self._advance(1.0 / self.camera_hz)
            with self._lock:
                result = tracker.update(self._now_s(), bool(self.sim.success()))
        if result is not None:
            self._publish_event(
                {
                    "event": "end",
                    "episode": index,
                    "seed": seed,
                    "family": spec.family,
                    "instruction": spec.instruction,
                    "success": result.success,
                    "steps": result.steps,
                    "duration_s": round(result.duration_s, 3),
                }
            )
            self.get_logger().info(
                f"episode {index} (seed {seed}): success={result.success} steps={result.steps}"
            )

    def _advance(self, duration_s: float) -> None:
        """Simulate ``duration_s`` of sim time, publishing clock, joints and cameras on schedule."""
        clock_dt = 1.0 / self.clock_hz
        physics_per_tick = max(1, round(clock_dt / self.sim.model.opt.timestep))
        end_s = self._now_s() + duration_s - 1e-9
        while self._now_s() < end_s and not self._stop.is_set():
            wall_start = time.monotonic()
            with self._lock:
                t = self._now_s()
                self.sim.set_arm_command(self.arm.command_at(t))
                self.sim.set_finger_command(float(self.gripper.command_at(t)[0]))
                self.sim.step(physics_per_tick)
            self._publish_clock()
            self._publish_due()
            real_time_factor = self.pacing.real_time_factor
            if real_time_factor > 0:
                remaining = clock_dt / real_time_factor - (time.monotonic() - wall_start)
                if remaining > 0:
                    time.sleep(remaining)

    def _publish_due(self) -> None:
        t = self._now_s()
        if t + 1e-9 >= self._next_joint_s:
            self._next_joint_s = t + 1.0 / self.joint_state_hz
            self._publish_joint_state()
        if t + 1e-9 >= self._next_camera_s:
            self._next_camera_s = t + 1.0 / self.camera_hz
            self._publish_cameras()

    # --- publishing ---------------------------------------------------------------------------
    def _stamp(self):
        return ns_to_stamp(int(round(self._now_s() * 1e9)))

    def _publish_clock(self) -> None:
        self.clock_pub.publish(Clock(clock=self._stamp()))

    def _publish_joint_state(self) -> None:
        with self._lock:
            names, positions, velocities, efforts = self.sim.joint_state()
            stamp = self._stamp()
        msg = JointState(
            name=list(names),
            position=[float(v) for v in positions],
            velocity=[float(v) for v in velocities],
            effort=[float(v) for v in efforts],
        )
        msg.header.stamp = stamp
        self.joint_pub.publish(msg)

    def _publish_cameras(self) -> None:
        with self._lock:
            stamp = self._stamp()
            frames = {c: self.sim.render(c) for c in self.cameras}
            privileged = self.sim.privileged_state()
        for camera, rgb in frames.items():
            rgb = add_read_noise(rgb, self._rng, self.pacing.camera_noise_sigma)
            msg = Image(
                height=rgb.shape[0],
                width=rgb.shape[1],
                encoding="rgb8",
                is_bigendian=0,
                step=rgb.shape[1] * 3,
                data=rgb.tobytes(),
            )
            msg.header.stamp = stamp
            msg.header.frame_id = f"{camera}_camera"
            self.image_pubs[camera].publish(msg)
        privileged["stamp_ns"] = stamp_to_ns(stamp)
        self.privileged_pub.publish(String(data=json.dumps(privileged)))

    def _publish_event(self, event: dict) -> None:
        self.episode_pub.publish(String(data=json.dumps(event)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
