"""Policy: runs the chosen VLA backend at control frequency and publishes self-describing actions.

Inference runs in a thread of its own, woken as soon as a complete observation arrives and at most
``control_hz`` times a second, so subscriptions keep flowing while a model thinks. (A callback group
on rclpy's MultiThreadedExecutor does the same on paper, but that executor busy-waits: it held a
full core of this 2-core machine at 93 % with a 1 ms model.) Each action carries the stamp of the
observation it came from; see vla_common.action_message for the wire format.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_common.action_message import encode_action_chunk
from vla_common.latency import StageTimer
from vla_common.ros.node_runtime import ERROR, OK, WARN, StageDiagnostics, declare, run_node, stamp_to_ns
from vla_common.ros.qos import EVENTS_QOS, LATCHED_QOS, RELIABLE_QOS
from vla_policy.contract import Observation, make_backend, validate_output
from vla_policy.observation_assembly import ObservationAssembler, StateByStamp


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


PROPRIO_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "left_finger")


def parse_options(text: str) -> dict:
    """The backend_options parameter (a JSON object) as a dict; errors name the parameter."""
    try:
        options = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameter 'backend_options': not JSON ({exc.msg}): {text!r}") from exc
    if not isinstance(options, dict):
        raise ValueError(f"parameter 'backend_options': expected a JSON object, got {text!r}")
    return options


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy")
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        backend_name = p("backend", "scripted", "Policy backend by name (see vla-stack backends)")
        self.control_hz = p("control_hz", 5.0, "Inference rate (Hz)", minimum=0.1, maximum=100.0)
        self.max_obs_age_s = p(
            "max_observation_age_s",
            0.5,
            "Older observations are not inferred on (s)",
            minimum=0.01,
            maximum=10.0,
        )
        cameras = list(p("cameras", ["primary", "wrist"], "Observation cameras, in the backend's order"))
        device = resolve_device(p("device", "auto", "auto | cuda | cpu"))
        action_kind = p(
            "action_kind",
            "continuous",
            "continuous chunks or discrete 256-bin indices (backends that support both)",
        )
        horizon = p(
            "chunk_horizon", 4, "Action chunk length (backends that support it)", minimum=1, maximum=256
        )
        checkpoint = p("checkpoint", "", "Checkpoint directory (model backends)")
        joint_states_topic = p(
            "joint_states_topic", "/wx250s/joint_states", "sensor_msgs/JointState of the arm"
        )
        self.use_privileged = p(
            "use_privileged_state", True, "Subscribe /sim/privileged_state (scripted expert)"
        )
        self.state_wait_s = p(
            "privileged_state_wait_s",
            0.2,
            "How long an observation waits for the privileged state of its own frame (s)",
            minimum=0.0,
            maximum=5.0,
        )

        extra = p(
            "backend_options", "{}", 'JSON object of backend options, e.g. {"unnorm_key": "bridge_orig"}'
        )
        cpu_threads = p(
            "cpu_threads", 1, "torch intra-op threads on CPU (0 = torch's default)", minimum=0, maximum=256
        )
        if device == "cpu" and cpu_threads > 0 and backend_name != "scripted":
            # On a small machine the sim, perception and actuation share the cores: one thread
            # avoids OpenMP spin contention (tiny RT-2: 12 ms with 1 thread, 39 ms p50 / 105 ms p99
            # with 2 under load).
            import torch

            torch.set_num_threads(cpu_threads)
        options = {
            "device": device,
            "action_kind": action_kind,
            "chunk_horizon": horizon,
            **parse_options(extra),
        }
        if checkpoint:
            options["checkpoint"] = checkpoint
        self.backend = make_backend(backend_name, **options)
        self.get_logger().info(
            f"backend '{backend_name}' on {device}: {self.backend.action_space}; checkpoint "
            f"{checkpoint or 'none'}; privileged sim state {'read' if self.use_privileged else 'not read'}"
        )

        self.timer = StageTimer()
        self.diag = StageDiagnostics(self, self.timer)
        self.assembler = ObservationAssembler(cameras)
        self.instruction: str | None = None
        self.proprio: np.ndarray | None = None
        self.states = StateByStamp()
        self._state_arrived = threading.Condition()
        self._episode_start_ns = 0

        for camera in cameras:
            self.create_subscription(
                Image,
                f"/vla/observation/{camera}",
                lambda m, c=camera: self._on_image(c, m),
                RELIABLE_QOS,
            )
        self.create_subscription(String, "/vla/instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(JointState, joint_states_topic, self._on_joints, 10)
        if self.use_privileged:
            self.create_subscription(String, "/sim/privileged_state", self._on_privileged, RELIABLE_QOS)
        self.create_subscription(String, "/vla/episode", self._on_episode, EVENTS_QOS)
        self.action_pub = self.create_publisher(String, "/vla/action", RELIABLE_QOS)
        self._backend_lock = threading.Lock()  # infer() and reset() never overlap
        self._obs_lock = threading.Lock()  # the assembler is filled here and emptied by inference
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_inference_ns = 0
        self._inference_thread = threading.Thread(target=self._inference_loop, name="inference", daemon=True)
        self._inference_thread.start()

    def _on_image(self, camera: str, msg: Image) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
            return
        if msg.encoding != "rgb8":
            self.diag.report(ERROR, f"observation '{camera}': encoding '{msg.encoding}', expected rgb8")
            return
        image = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
        with self._obs_lock:
            self.assembler.add(camera, stamp_ns, image)
            if self.assembler.has_complete():
                self._wake.set()

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data

    def _on_joints(self, msg: JointState) -> None:
        # Proprio in a fixed order (6 arm joints, then the finger), whatever order the driver uses.
        index = {name: i for i, name in enumerate(msg.name)}
        if all(name in index for name in PROPRIO_JOINTS) and len(msg.position) == len(msg.name):
            self.proprio = np.array([msg.position[index[name]] for name in PROPRIO_JOINTS], dtype=np.float64)

    def _on_privileged(self, msg: String) -> None:
        with self._state_arrived:
            self.states.add(json.loads(msg.data))
            self._state_arrived.notify_all()

    def _privileged_for(self, stamp_ns: int) -> dict | None:
        """The privileged state read with the frame at ``stamp_ns``, waiting briefly for it."""
        deadline = time.monotonic() + self.state_wait_s
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
                f"no privileged state for the frame at {stamp_ns} ns within {self.state_wait_s} s; "
                f"using the newest (stamp_ns {state.get('stamp_ns')})",
            )
            self.diag.count("unpaired_privileged_state")
        return state

    def _on_episode(self, msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":
            with self._obs_lock:
                self.assembler.clear()
            with self._state_arrived:
                self.states.clear()
            self._episode_start_ns = int(event.get("stamp_ns", 0))
            with self._backend_lock:
                self.backend.reset(seed=event.get("seed"))

    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(timeout=0.2):
                continue
            self._wake.clear()
            now_ns = self.get_clock().now().nanoseconds
            wait_s = 0.95 / self.control_hz - (now_ns - self._last_inference_ns) * 1e-9
            if wait_s > 0 and self._last_inference_ns and now_ns >= self._last_inference_ns:
                self._wake.set()  # too early for control_hz: keep the observation, look again soon
                time.sleep(min(wait_s, 0.01))
                continue
            try:
                self._infer_newest(now_ns)
            except Exception:
                if not self.context.ok():
                    return  # shutting down: the publisher is gone
                raise

    def _infer_newest(self, now_ns: int) -> None:
        with self._obs_lock:
            complete = self.assembler.take()
        if complete is None:
            return
        self._last_inference_ns = now_ns
        stamp_ns, images = complete
        age_s = (now_ns - stamp_ns) * 1e-9
        if age_s > self.max_obs_age_s:
            self.diag.report(
                WARN, f"observation is {age_s:.3f} s old (max {self.max_obs_age_s} s); not inferred"
            )
            self.diag.count("stale_observation")
            return
        if self.instruction is None:
            self.diag.report(WARN, "no instruction yet on /vla/instruction")
            return
        privileged = self._privileged_for(stamp_ns) if self.use_privileged else None
        observation = Observation(stamp_ns, images, self.instruction, self.proprio, privileged)
        start = time.perf_counter()
        try:
            with self._backend_lock:
                output = self.backend.infer(observation)
            chunk = validate_output(output, self.backend.action_space)
        except (ValueError, RuntimeError) as exc:
            self.diag.report(ERROR, f"backend '{self.backend.name}' failed: {exc}; no action published")
            self.diag.count("inference_errors")
            return
        inference_ms = (time.perf_counter() - start) * 1e3
        self.timer.record("inference", inference_ms)
        text = encode_action_chunk(
            stamp_ns,
            self.backend.action_space,
            chunk,
            policy=self.backend.name,
            terminate=output.terminate,
            inference_ms=inference_ms,
        )
        self.action_pub.publish(String(data=text))
        self.diag.count("actions")
        self.diag.report(OK, "ok")

    def close(self) -> None:
        self._stop.set()
        self._inference_thread.join(timeout=5.0)


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
