"""Policy: runs the chosen VLA backend on the newest observation and publishes self-describing actions.

Inference runs in a thread of its own, so subscriptions keep flowing while a model thinks. (A
callback group on rclpy's MultiThreadedExecutor does the same on paper, but that executor
busy-waits: it held a full core of this 2-core machine at 93 % with a 1 ms model.) Each complete
observation replaces the pending one (vla_policy.inference_schedule.NewestObservation); the thread
starts an inference on it as soon as it is due (InferenceScheduler): the first of an episode, once
the committed chunk's steps left cover less than the measured latency plus a margin (refill), or
once the observation is ``replan_steps`` control periods newer than the committed chunk's (replan).
With ``realtime_chunking`` the next chunk is joined to the steps the arm runs while it is computed
(``Observation.committed``: Octo's diffusion head is guided toward them, other chunking backends
are blended, vla_policy.chunk_join). Each action carries the stamp of the observation it came
from; see vla_common.action_message for the wire format.

/diagnostics adds: ``inference_trigger.<first|refill|replan>`` counts, ``observations_replaced``
(a newer set arrived before the pending one was inferred on), ``latency_estimate_ms`` (the
quantile the refill trigger plans with) and the ``inference`` stage.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_common.action_message import encode_action_chunk
from vla_common.control_period import step_dt_mismatch, step_period_s
from vla_common.image_wire import deserialize_image
from vla_common.inbound import (
    check_instruction,
    decode_episode_event,
    decode_privileged_state,
    image_to_pixels,
    joint_positions,
)
from vla_common.latency import StageTimer
from vla_common.robot import PROPRIO_JOINT_NAMES
from vla_common.ros.callback_guard import CallbackGuard, MessageRejections
from vla_common.ros.node_parameters import NodeParameters
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, run_node, stamp_to_ns
from vla_common.ros.qos import EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_policy.chunk_join import blend_prefix
from vla_policy.contract import CommittedActions, Observation, PolicyBackend, make_backend, validate_output
from vla_policy.inference_schedule import InferenceScheduler, LatencyEstimate, NewestObservation
from vla_policy.latency_injection import DelayedBackend, InjectedLatency
from vla_policy.observation_assembly import ObservationAssembler, StateByStamp
from vla_policy.policy_settings import (
    PARAMETERS,
    InferenceLimits,
    backend_options,
    build_inference_limits,
    resolve_device,
)

IDLE_WAIT_S = 0.2  # nothing pending: the thread wakes on the next observation (or this, to see a stop)
# An observation waits for its trigger (the refill time or the replan step): look again after a tick
# of the sim's clock (10 ms, sim.yaml clock_hz), the finest step in which ROS time moves there.
PENDING_POLL_S = 0.01


class PolicyNode(Node):
    """Runs the chosen backend on each complete observation and publishes its action chunk."""

    def __init__(self) -> None:
        super().__init__("policy")
        self.params = NodeParameters(self)
        values = self.params.declare(PARAMETERS)
        self._build(values)
        guard = self.guard.wrap
        for camera in values["cameras"]:
            self.create_subscription(
                Image,
                f"/vla/observation/{camera}",
                guard(f"image.{camera}", lambda m, c=camera: self._on_image(c, m)),
                RELIABLE_QOS,
                raw=True,  # serialized bytes, read in place (vla_common.image_wire): no pixel copy
            )
        self.create_subscription(
            String, "/vla/instruction", guard("instruction", self._on_instruction), LATCHED_QOS
        )
        self.create_subscription(
            JointState, values["joint_states_topic"], guard("joints", self._on_joints), 10
        )
        if self.use_privileged:
            self.create_subscription(
                String, "/sim/privileged_state", guard("privileged_state", self._on_privileged), RELIABLE_QOS
            )
        self.create_subscription(String, "/vla/episode", guard("episode", self._on_episode), EVENTS_QOS)
        self.action_pub = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self._inference_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._inference_thread.start()
        self.params.on_change(build_inference_limits, self._apply_limits)

    def _build(self, values: dict) -> None:
        """The backend, the observation assembly and the state the callbacks share."""
        self.control_hz = values["control_hz"]
        self.limits = build_inference_limits(values)
        self.use_privileged = values["use_privileged_state"]
        self.backend = self._load_backend(values)
        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.guard = CallbackGuard(self.get_logger(), self.diag)  # a bug in a callback: logged, not fatal
        self.rejections = MessageRejections(self.get_logger(), self.diag)
        self.assembler = ObservationAssembler(values["cameras"])
        self.instruction: str | None = None
        self.proprio: np.ndarray | None = None
        self.states = StateByStamp()
        self._state_arrived = threading.Condition()
        self._episode_start_ns = 0
        self._backend_lock = threading.Lock()  # infer() and reset() never overlap
        self._obs_lock = threading.Lock()  # the assembler is filled here and emptied by inference
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.newest: NewestObservation[dict[str, np.ndarray]] = NewestObservation()
        self.step_dt_s = step_period_s(self.control_hz)
        # Until measured, plan with one control period; the first inference (kernels, caches) is not counted.
        self.latency = LatencyEstimate(initial_s=self.step_dt_s)
        # The scheduler is used by the inference thread and changed by the episode and parameter callbacks.
        self._schedule_lock = threading.Lock()
        self.scheduler = self._new_scheduler(self.limits)

    def _load_backend(self, values: dict) -> PolicyBackend:
        device = resolve_device(values["device"])
        if device == "cpu" and values["cpu_threads"] > 0 and values["backend"] != "scripted":
            # On a small machine the sim, perception and actuation share the cores: one thread
            # avoids OpenMP spin contention (tiny RT-2: 12 ms with 1 thread, 39 ms p50 / 105 ms p99
            # with 2 under load).
            import torch  # lazy: optional and heavy, only model backends need it

            torch.set_num_threads(values["cpu_threads"])
        backend = make_backend(values["backend"], **backend_options(values, device))
        if values["inject_latency_s"] > 0 or values["inject_latency_jitter_s"] > 0:
            latency = InjectedLatency(values["inject_latency_s"], values["inject_latency_jitter_s"])
            backend = DelayedBackend(backend, latency)
            self.get_logger().warn(
                f"benchmark mode: every inference padded to {latency.latency_s:g} s "
                f"+- {latency.jitter_s:g} s (inject_latency_s)"
            )
        self.get_logger().info(
            f"backend '{values['backend']}' on {device}: {backend.action_space}; checkpoint "
            f"{values['checkpoint'] or 'none'}; privileged sim state "
            f"{'read' if self.use_privileged else 'not read'}"
        )
        mismatch = step_dt_mismatch(backend.action_space.step_dt_s, self.control_hz)
        if mismatch is not None:
            self.get_logger().warn(
                f"backend '{values['backend']}': {mismatch}; actuation will refuse its chunks"
            )
        return backend

    def _new_scheduler(self, limits: InferenceLimits) -> InferenceScheduler:
        return InferenceScheduler(self.step_dt_s, limits.max_open_loop_s, self.latency, limits.replan_steps)

    def _apply_limits(self, limits: InferenceLimits) -> None:
        # One reference, read once per observation: inference sees the old limits or the new ones.
        self.limits = limits
        with self._schedule_lock:  # a new open-loop bound or replan step; the committed chunk stays
            committed = self.scheduler.committed
            self.scheduler = self._new_scheduler(limits)
            if committed is not None:
                self.scheduler.on_chunk(committed.start_s, committed.actions)

    def _on_image(self, camera: str, serialized: bytes) -> None:
        what = f"observation '{camera}'"
        try:
            msg = deserialize_image(serialized, what=what)
        except ValueError as exc:  # not a serialized sensor_msgs/Image
            self.rejections.drop(f"image.{camera}", str(exc))
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
            return
        try:
            image = image_to_pixels(msg, what=what)  # a read-only view of ``serialized``
        except ValueError as exc:
            self.rejections.drop(f"image.{camera}", str(exc))
            return
        with self._obs_lock:
            self.assembler.add(camera, stamp_ns, image)
            complete = self.assembler.take()
        if complete is None:
            return
        offered = self.newest.offer(*complete)
        if offered.reason == NewestObservation.REPLACED:
            self.diag.count("observations_replaced")
        self._wake.set()

    def _on_instruction(self, msg: String) -> None:
        try:
            self.instruction = check_instruction(msg.data)
        except ValueError as exc:
            self.rejections.drop("instruction", str(exc))

    def _on_joints(self, msg: JointState) -> None:
        # Proprio in a fixed order (6 arm joints, then the finger), whatever order the driver uses.
        try:
            self.proprio = joint_positions(msg.name, msg.position, PROPRIO_JOINT_NAMES, what="joint state")
        except ValueError as exc:  # e.g. a driver read failure: keep the last sane state
            self.rejections.drop("joints", str(exc))

    def _on_privileged(self, msg: String) -> None:
        try:
            state = decode_privileged_state(msg.data)
        except ValueError as exc:
            self.rejections.drop("privileged_state", str(exc))
            return
        with self._state_arrived:
            self.states.add(state)
            self._state_arrived.notify_all()

    def _privileged_for(self, stamp_ns: int) -> dict | None:
        """The privileged state read with the frame at ``stamp_ns``, waiting briefly for it."""
        wait_s = self.limits.privileged_state_wait_s
        deadline = time.monotonic() + wait_s
        with self._state_arrived:
            state = self.states.at(stamp_ns)
            while state is None and (remaining := deadline - time.monotonic()) > 0:
                self._state_arrived.wait(remaining)
                state = self.states.at(stamp_ns)
            paired = state is not None
            if not paired:
                state = self.states.newest()
        if not paired and state is not None:  # reported outside the lock: the subscriber keeps adding
            self.diag.report(
                WARN,
                f"no privileged state for the frame at {stamp_ns} ns within {wait_s} s; "
                f"using the newest (stamp_ns {state.get('stamp_ns')})",
            )
            self.diag.count("unpaired_privileged_state")
        return state

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_episode_event(msg.data)
        except ValueError as exc:
            self.rejections.drop("episode", str(exc))
            return
        if event.event == "start":
            with self._obs_lock:
                self.assembler.clear()
            self.newest.clear()
            with self._state_arrived:
                self.states.clear()
            self._episode_start_ns = event.stamp_ns
            with self._backend_lock:
                self.backend.reset(seed=event.seed)
            with self._schedule_lock:
                self.scheduler.reset()

    def _inference_loop(self) -> None:
        wait_s = IDLE_WAIT_S
        while not self._stop.is_set():
            self._wake.wait(timeout=wait_s)
            self._wake.clear()
            try:
                wait_s = self._infer_if_due()
            except Exception as exc:  # noqa: BLE001 - the inference thread's last-resort guard
                if not self.context.ok():
                    return  # shutting down: the publisher is gone
                self.guard.caught("inference", exc)
                wait_s = IDLE_WAIT_S

    def _infer_if_due(self) -> float:
        """Infer on the newest observation if an inference is due now; returns how long to wait
        before looking again (a new observation wakes the thread earlier)."""
        pending_ns = self.newest.pending_stamp_ns()
        if pending_ns is None:
            return IDLE_WAIT_S
        now_ns = self.get_clock().now().nanoseconds
        with self._schedule_lock:
            reason = self.scheduler.due(now_ns * 1e-9, pending_ns * 1e-9)
        if reason is None:
            return PENDING_POLL_S
        taken = self.newest.take()  # the newest by now (perhaps newer than the one looked at)
        if taken is None:
            return IDLE_WAIT_S
        self.diag.count(f"inference_trigger.{reason}")
        self._infer(now_ns, *taken)
        return 0.0  # a newer observation may be pending already

    def _infer(self, now_ns: int, stamp_ns: int, images: dict[str, np.ndarray]) -> None:
        age_s = (now_ns - stamp_ns) * 1e-9
        limits = self.limits
        if age_s > limits.max_observation_age_s:
            self.diag.report(
                WARN, f"observation is {age_s:.3f} s old (max {limits.max_observation_age_s} s); not inferred"
            )
            self.diag.count("stale_observation")
            return
        if self.instruction is None:
            self.diag.report(WARN, "no instruction yet on /vla/instruction")
            return
        privileged = self._privileged_for(stamp_ns) if self.use_privileged else None
        committed = self._committed(stamp_ns, now_ns) if limits.realtime_chunking else None
        observation = Observation(stamp_ns, images, self.instruction, self.proprio, privileged, committed)
        start = time.perf_counter()
        try:
            with self._backend_lock:
                output = self.backend.infer(observation)
            chunk = validate_output(output, self.backend.action_space)
        except (ValueError, RuntimeError) as exc:
            self.diag.report(ERROR, f"backend '{self.backend.name}' failed: {exc}; no action published")
            self.diag.count("inference_errors")
            return
        inference_s = time.perf_counter() - start
        if committed is not None and chunk.shape[0] > 1 and not getattr(self.backend, "guides_chunks", False):
            chunk = blend_prefix(chunk, committed)  # a chunking backend that cannot be guided
        self.timer.record("inference", inference_s * 1e3)
        text = encode_action_chunk(
            stamp_ns,
            self.backend.action_space,
            chunk,
            policy=self.backend.name,
            terminate=output.terminate,
            inference_ms=inference_s * 1e3,
        )
        self.action_pub.publish(String(data=text))
        with self._schedule_lock:
            self.latency.record(inference_s)
            if stamp_ns >= self._episode_start_ns:  # (an episode started meanwhile: not committed)
                self.scheduler.on_chunk(stamp_ns * 1e-9, chunk)
            estimate_ms = self.latency.quantile_s() * 1e3
        self.diag.note("latency_estimate_ms", f"{estimate_ms:.1f}")
        self.diag.count("actions")
        self.diag.report(OK, "ok")

    def _committed(self, stamp_ns: int, now_ns: int) -> CommittedActions | None:
        """What the arm runs meanwhile, on the new chunk's steps (continuous action spaces only)."""
        if self.backend.action_space.kind != "continuous":
            return None
        with self._schedule_lock:
            committed = self.scheduler.committed_for(stamp_ns * 1e-9, now_ns * 1e-9)
        return None if committed is None else CommittedActions(*committed)

    def close(self) -> None:
        self._stop.set()
        self._inference_thread.join(timeout=5.0)


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
