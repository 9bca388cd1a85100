"""vla_bringup.preflight: a checkpoint against the parameters the graph would run it with."""

from __future__ import annotations

import dataclasses

import pytest

from vla_bringup.paths import repo_root
from vla_bringup.preflight import format_report, graph_parameters, preflight
from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_policy.checkpoint_summary import CheckpointSummary, summarise_checkpoint

OCTO_SIM = repo_root() / "models" / "octo-sim"


def _policy(**params):
    return {"policy": {"backend": "octo", "checkpoint": str(OCTO_SIM), **params}}


def test_graph_parameters_merge_files_profile_and_overrides():
    params = graph_parameters("sim", {"policy": {"chunk_horizon": 2}, "actuation": {"max_open_loop_s": 0.9}})
    assert params["policy"]["chunk_horizon"] == 2 and params["policy"]["cameras"] == ["primary", "wrist"]
    assert params["policy"]["control_hz"] == 5.0  # control.yaml, loaded by every node
    assert params["policy"]["use_sim_time"] is True  # the profile's fixed parameter
    assert params["perception"]["primary"]["topic"] == "/camera/third_person/image_raw"
    assert params["actuation"]["max_open_loop_s"] == 0.9


def test_graph_parameters_expand_a_named_policy():
    params = graph_parameters("sim", {"policy": {"backend": "octo-sim"}})
    assert params["policy"]["backend"] == "octo" and params["policy"]["checkpoint"] == str(OCTO_SIM)


def test_the_shipped_policy_fits_the_sim_graph():
    report = preflight(summarise_checkpoint(OCTO_SIM), graph_parameters("sim", _policy()))
    assert report.mismatches == [], report.mismatches
    text = format_report(report)
    assert (
        "primary: model 128x128 (crop [0.3125, 0.21875, 0.625, 0.625] first) "
        "<- /camera/third_person/image_raw" in text
    )
    assert "plays at most 2 step(s)" in text and text.endswith("inspect: no mismatch")
    assert any("only the first 2 of each 4-step chunk" in n for n in report.notes)


def test_a_chunk_longer_than_the_model_is_a_mismatch_naming_the_flag():
    report = preflight(summarise_checkpoint(OCTO_SIM), graph_parameters("sim", _policy(chunk_horizon=8)))
    assert report.mismatches == [
        "policy.chunk_horizon 8 exceeds the model's 4-step chunk: the backend refuses it "
        "(--set policy.chunk_horizon=4)"
    ]


def test_an_open_loop_bound_below_one_step_and_a_wrong_backend():
    overrides = {**_policy(backend="openvla"), "actuation": {"max_open_loop_s": 0.1}}
    report = preflight(summarise_checkpoint(OCTO_SIM), graph_parameters("sim", overrides))
    assert any("max_open_loop_s 0.1 is shorter than one control step" in m for m in report.mismatches)
    assert any("policy.backend is 'openvla'" in m and "(--policy octo)" in m for m in report.mismatches)


def _openvla_like(**changes) -> CheckpointSummary:
    summary = CheckpointSummary(
        backend="openvla",
        directory=OCTO_SIM,
        architecture=[],
        parameters=1,
        cameras={"primary": (224, 224)},
        action_kinds=("discrete",),
        action_dims=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
        chunk_length=1,
        stats={"bridge_orig": BRIDGE_ORIG_STATS, "fractal": BRIDGE_ORIG_STATS},
        gripper="",
        prompt="",
    )
    return dataclasses.replace(summary, **changes)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("{}", "statistics for 2 datasets ['bridge_orig', 'fractal'] and no unnorm_key"),
        ('{"unnorm_key": "bridge"}', "unnorm_key 'bridge' is not in the checkpoint's statistics"),
    ],
)
def test_unnorm_key_must_name_one_of_the_datasets(options, expected):
    params = graph_parameters("sim", _policy(backend="openvla", backend_options=options))
    report = preflight(_openvla_like(), params)
    assert len(report.mismatches) == 1 and expected in report.mismatches[0]
    assert '--backend-options \'{"unnorm_key": "bridge_orig"}\'' in report.mismatches[0]


def test_a_missing_camera_is_a_mismatch_unless_octo_pads_it():
    params = graph_parameters(
        "sim", {**_policy(backend="openvla", backend_options='{"unnorm_key": "fractal"}', cameras=["wrist"])}
    )
    report = preflight(_openvla_like(), params)
    assert any("camera 'primary' is missing from policy.cameras ['wrist']" in m for m in report.mismatches)
    octo = preflight(summarise_checkpoint(OCTO_SIM), graph_parameters("sim", _policy(cameras=["primary"])))
    assert octo.mismatches == []
    assert any("camera 'wrist' is absent: the model gets a pad mask" in n for n in octo.notes)


def test_a_policy_camera_perception_does_not_publish_is_a_mismatch():
    params = graph_parameters("sim", {**_policy(cameras=["primary", "wrist", "side"])})
    report = preflight(summarise_checkpoint(OCTO_SIM), params)
    assert any("policy.cameras has 'side' but perception.cameras" in m for m in report.mismatches)


def test_octo_refuses_discrete_actions():
    report = preflight(
        summarise_checkpoint(OCTO_SIM), graph_parameters("sim", _policy(action_kind="discrete"))
    )
    assert report.mismatches == [
        "policy.action_kind 'discrete': this checkpoint emits ['continuous'] (--action-kind continuous)"
    ]
