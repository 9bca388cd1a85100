"""Policy: runs the chosen VLA backend at control frequency and publishes self-describing actions.

Inference runs on its own timer in a mutually exclusive callback group on a multi-threaded
executor, so subscriptions keep flowing while a model thinks. Each action carries the stamp of the
observation it came from; see vla_policy.action_message for the wire format.
"""

from __future__ import annotations

import json
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_policy.action_message import encode_action_chunk
from vla_policy.contract import Observation, make_backend, validate_output
from vla_policy.latency import StageTimer
from vla_policy.observation_assembly import ObservationAssembler
from vla_policy.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, declare, run_node, stamp_to_ns
from vla_policy.ros.qos import EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS


def resolve_device(requested: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is an error."""
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"parameter 'device': '{requested}' is not one of auto, cuda, cpu")
    if requested == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if requested == "cuda" and not has_cuda:
        raise ValueError("parameter 'device': 'cuda' requested but no CUDA device is available")
    return "cuda" if has_cuda else "cpu"


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy")
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        backend_name = p("backend", "scripted", "Policy backend by name (see vla-stack backends)")
        self.control_hz = p("control_hz", 5.0, "Inference rate (Hz)", minimum=0.1, maximum=100.0)
        self.max_obs_age_s = p("max_observation_age_s", 0.5, "Older observations are not inferred on (s)", minimum=0.01, maximum=10.0)
        cameras = list(p("cameras", ["primary", "wrist"], "Observation cameras, in the backend's order"))
        device = resolve_device(p("device", "auto", "auto | cuda | cpu"))
        action_kind = p("action_kind", "continuous", "continuous chunks or discrete 256-bin indices (backends that support both)")
        horizon = p("chunk_horizon", 4, "Action chunk length (backends that support it)", minimum=1, maximum=256)
        checkpoint = p("checkpoint", "", "Checkpoint directory (model backends)")
        joint_states_topic = p("joint_states_topic", "/wx250s/joint_states", "sensor_msgs/JointState of the arm")
        self.use_privileged = p("use_privileged_state", True, "Subscribe /sim/privileged_state (scripted expert)")

        options = {"device": device, "action_kind": action_kind, "chunk_horizon": horizon}
        if checkpoint:
            options["checkpoint"] = checkpoint
        self.backend = make_backend(backend_name, **options)
        self.get_logger().info(f"backend '{backend_name}' on {device}: {self.backend.action_space}")

        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.assembler = ObservationAssembler(cameras)
        self.instruction: str | None = None
        self.proprio: np.ndarray | None = None
        self.privileged: dict | None = None
        self._episode_start_ns = 0

        inputs = ReentrantCallbackGroup()
        for camera in cameras:
            self.create_subscription(
                Image, f"/vla/observation/{camera}", lambda m, c=camera: self._on_image(c, m), RELIABLE_QOS,
                callback_group=inputs,
            )
        self.create_subscription(String, "/vla/instruction", self._on_instruction, LATCHED_QOS, callback_group=inputs)
        self.create_subscription(JointState, joint_states_topic, self._on_joints, 10, callback_group=inputs)
        if self.use_privileged:
            self.create_subscription(String, "/sim/privileged_state", self._on_privileged, RELIABLE_QOS, callback_group=inputs)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS, callback_group=inputs)
        self.action_pub = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self.create_timer(1.0 / self.control_hz, self._on_tick, callback_group=MutuallyExclusiveCallbackGroup())

    def _on_image(self, camera: str, msg: Image) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
            return
        if msg.encoding != "rgb8":
            self.diag.report(ERROR, f"observation '{camera}': encoding '{msg.encoding}', expected rgb8")
            return
        image = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
        self.assembler.add(camera, stamp_ns, image)

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_joints(self, msg: JointState) -> None:
        self.proprio = np.asarray(msg.position, dtype=np.float64)

    def _on_privileged(self, msg: String) -> None:
        self.privileged = json.loads(msg.data)

    def _on_episode(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":
            self.assembler.clear()
            self.privileged = None
            self._episode_start_ns = int(event.get("stamp_ns", 0))
            self.backend.reset(seed=event.get("seed"))

    def _on_tick(self) -> None:
        complete = self.assembler.take()
        if complete is None:
            self.diag.count("no_observation")
            return
        stamp_ns, images = complete
        age_s = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-9
        if age_s > self.max_obs_age_s:
            self.diag.report(WARN, f"observation is {age_s:.3f} s old (max {self.max_obs_age_s} s); not inferred")
            self.diag.count("stale_observation")
            return
        if self.instruction is None:
            self.diag.report(WARN, "no instruction yet on /vla/instruction")
            return
        observation = Observation(stamp_ns, images, self.instruction, self.proprio, self.privileged)
        start = time.perf_counter()
        try:
            output = self.backend.infer(observation)
            chunk = validate_output(output, self.backend.action_space)
        except (ValueError, RuntimeError) as exc:
            self.diag.report(ERROR, f"backend '{self.backend.name}' failed: {exc}; no action published")
            self.diag.count("inference_errors")
            return
        inference_ms = (time.perf_counter() - start) * 1e3
        self.timer.record("inference", inference_ms)
        text = encode_action_chunk(
            stamp_ns, self.backend.action_space, chunk, policy=self.backend.name,
            terminate=output.terminate, inference_ms=inference_ms,
        )
        self.action_pub.publish(String(data=text))
        self.diag.count("actions")
        self.diag.report(OK, "ok")


def main(args=None) -> int:
    return run_node(PolicyNode, args, threads=3)


if __name__ == "__main__":
    raise SystemExit(main())
