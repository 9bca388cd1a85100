"""The graph replica reads its timing and camera inputs from the params files the nodes load."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from params_copy import edit_params

from vla_eval.graph_replica import CameraInputs, Timing, run_graph_episode
from vla_policy.backends.scripted.backend import ScriptedBackend
from vla_sim.widowx_sim import WidowXSim
from vla_training.demonstrations import CollectOptions


def test_the_shipped_timing_is_the_graphs():
    timing = Timing()
    assert (timing.camera_period_s, timing.policy_period_s, timing.step_dt_s) == (0.1, 0.2, 0.2)
    assert (timing.servo_hz, timing.max_open_loop_s, timing.tick_s) == (50.0, 0.5, 0.01)
    assert Timing(step_dt_s=0.25).step_dt_s == 0.25  # given values win


def test_the_timing_follows_the_params_files(config_copy):
    edit_params(config_copy / "control.yaml", "/**", control_hz=10.0)
    edit_params(config_copy / "sim.yaml", "sim", camera_hz=20.0, clock_hz=200.0)
    edit_params(config_copy / "actuation.yaml", "actuation", servo_hz=100.0)
    timing = Timing()
    assert (timing.policy_period_s, timing.step_dt_s) == (0.1, 0.1)
    assert (timing.camera_period_s, timing.tick_s, timing.servo_hz) == (0.05, 0.005, 100.0)
    # collection's latency spans stay within the (now shorter) camera period and control step
    CollectOptions("x", 1, 100000, {}, policy_phase_s=(0.0, 0.05), processing_s=(0.0, 0.095))
    with pytest.raises(ValueError, match=r"collect.processing_s: expected .* within \[0, 0.095\]"):
        CollectOptions("x", 1, 100000, {}, processing_s=(0.0, 0.15))


def test_camera_inputs_follow_perception_yaml(config_copy):
    inputs = CameraInputs.from_params()
    assert inputs.sim_cameras == {"primary": "third_person", "wrist": "wrist"}
    sizes = {camera: (p.height, p.width) for camera, p in inputs.preprocess.items()}
    assert sizes == {"primary": (256, 256), "wrist": (128, 128)} and inputs.noise_sigma == 2.0
    document = yaml.safe_load((config_copy / "perception.yaml").read_text())
    document["perception"]["ros__parameters"]["primary"].update(topic="/camera/wrist/image_raw", height=96)
    (config_copy / "perception.yaml").write_text(yaml.safe_dump(document))
    inputs = CameraInputs.from_params()
    assert inputs.sim_cameras["primary"] == "wrist" and inputs.preprocess["primary"].height == 96
    document["perception"]["ros__parameters"]["primary"]["topic"] = "/camera/color/image_raw"
    (config_copy / "perception.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ValueError, match="primary.topic '/camera/color/image_raw' is no sim camera's"):
        CameraInputs.from_params()


def _policy_tick_stamps_s(max_steps: int) -> list[float]:
    stamps = []
    sim = WidowXSim()
    try:
        run_graph_episode(
            sim,
            ScriptedBackend(chunk_horizon=4),
            0,
            "receding_horizon",
            on_inference=lambda observation, output: stamps.append(observation.stamp_ns * 1e-9),
            max_steps=max_steps,
            stop_on_success=False,
        )
    finally:
        sim.close()
    return stamps


def test_a_replica_episode_runs_at_the_params_control_rate(config_copy):
    at_5_hz = _policy_tick_stamps_s(max_steps=4)
    edit_params(config_copy / "control.yaml", "/**", control_hz=10.0)
    at_10_hz = _policy_tick_stamps_s(max_steps=4)
    # the same 4-step budget: 0.8 s of sim time at 5 Hz, 0.4 s at 10 Hz; a frame every camera period
    assert len(at_5_hz) == 4 and len(at_10_hz) == 4
    np.testing.assert_allclose(np.diff(at_5_hz), 0.2, atol=1e-9)
    np.testing.assert_allclose(np.diff(at_10_hz), 0.1, atol=1e-9)
