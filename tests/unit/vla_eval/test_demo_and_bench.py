"""The demo's node parameters and time budget, and what the benchmarks read from config/ (pure)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from vla_bringup.policies import PolicySpec
from vla_eval.bench import bench_overhead
from vla_eval.bench_policy import synthetic_observation
from vla_eval.bench_report import percentiles, write_section
from vla_eval.demo import DemoOptions, demo_overrides, time_budget_s


def test_demo_overrides_set_the_sim_and_policy_and_the_users_come_last():
    spec = PolicySpec("octo", "/ckpt", {"seed": 1}, privileged=False, execution_mode="temporal_ensembling")
    options = DemoOptions(
        episodes=2, seed=5, instruction="pick", record=False, overrides={"sim": {"seed": 9}}
    )
    overrides = demo_overrides(options, spec)
    assert overrides["sim"] == {
        "episodes": 2,
        "seed": 9,
        "max_steps": 80,
        "camera_subscribers": 1,
        "instruction": "pick",
    }
    assert overrides["policy"]["backend"] == "octo" and overrides["policy"]["checkpoint"] == "/ckpt"
    assert json.loads(overrides["policy"]["backend_options"]) == {"seed": 1}
    assert overrides["policy"]["use_privileged_state"] is False
    assert overrides["actuation"] == {"execution_mode": "temporal_ensembling"}
    chosen = demo_overrides(DemoOptions(execution_mode="single_step", real_time_factor=2.0), spec)
    assert chosen["actuation"] == {"execution_mode": "single_step"}
    assert chosen["sim"]["real_time_factor"] == 2.0 and chosen["sim"]["camera_subscribers"] == 2
    assert "actuation" not in demo_overrides(DemoOptions(), PolicySpec("scripted", privileged=True))


def test_the_demo_budget_scales_with_the_control_period():
    options = DemoOptions(episodes=3, max_steps=80)
    assert time_budget_s(options, 0.2) == pytest.approx(120.0 + 3 * 80 * 0.2 * 4)
    assert time_budget_s(options, 0.1) < time_budget_s(options, 0.2)


def test_a_trained_policy_is_timed_on_the_camera_sizes_of_perception_yaml(config_copy):
    path = config_copy / "perception.yaml"
    document = yaml.safe_load(path.read_text())
    document["perception"]["ros__parameters"]["wrist"]["height"] = 96
    path.write_text(yaml.safe_dump(document))
    backend = SimpleNamespace(
        camera_names=("primary", "wrist"), image_size={"primary": (8, 8), "wrist": (4, 4)}
    )
    trained = synthetic_observation(backend, trained=True)
    assert {c: image.shape for c, image in trained.images.items()} == {
        "primary": (256, 256, 3),
        "wrist": (96, 128, 3),
    }
    random = synthetic_observation(backend, trained=False)
    assert random.images["wrist"].shape == (4, 4, 3)


def test_the_overhead_benchmark_runs_every_stage():
    per_stage, (p50, p99) = bench_overhead(3, ((32, 32), (16, 16)))
    assert {"ros_deserialize", "sync", "preprocess", "ik", "servo_interp"} <= set(per_stage)
    assert 0 < p50 <= p99


def test_report_helpers(tmp_path):
    assert percentiles([1.0, 2.0, 3.0]) == (2.0, pytest.approx(2.98))
    path = tmp_path / "benchmarks.md"
    write_section("x", "first", path)
    write_section("y", "other", path)
    write_section("x", "second", path)
    text = path.read_text()
    assert "second" in text and "first" not in text and text.index("bench:x") < text.index("bench:y")
