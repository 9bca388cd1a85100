"""The policy node's parameters: the backend fixed at start, the observation limits and the
inference schedule changeable."""

from __future__ import annotations

import pytest

from vla_common.parameters import check_value
from vla_policy.policy_settings import (
    PARAMETERS,
    backend_options,
    build_inference_limits,
    parse_options,
    resolve_device,
)

DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}


def test_only_the_observation_limits_and_the_schedule_change_at_run_time():
    dynamic = {spec.name for spec in PARAMETERS if not spec.read_only}
    assert dynamic == {
        "max_observation_age_s",
        "privileged_state_wait_s",
        "max_open_loop_s",
        "replan_steps",
        "realtime_chunking",
    }
    limits = build_inference_limits({**DEFAULTS, "max_observation_age_s": 0.3, "replan_steps": 3})
    assert (limits.max_observation_age_s, limits.privileged_state_wait_s) == (0.3, 0.2)
    assert (limits.replan_steps, limits.max_open_loop_s, limits.realtime_chunking) == (3, 0.5, False)


def test_backend_options_merge_the_json_extras_and_the_checkpoint():
    values = {**DEFAULTS, "checkpoint": "/m", "backend_options": '{"unnorm_key": "bridge_orig"}'}
    assert backend_options(values, "cpu") == {
        "device": "cpu",
        "action_kind": "continuous",
        "chunk_horizon": 4,
        "step_dt_s": 0.2,
        "unnorm_key": "bridge_orig",
        "checkpoint": "/m",
    }
    assert "checkpoint" not in backend_options(DEFAULTS, "cpu")
    assert backend_options({**DEFAULTS, "control_hz": 10.0}, "cpu")["step_dt_s"] == 0.1


@pytest.mark.parametrize(("text", "message"), [("{", "not JSON"), ("[1]", "expected a JSON object")])
def test_backend_options_that_are_not_an_object_are_named(text, message):
    with pytest.raises(ValueError, match=f"parameter 'backend_options': {message}"):
        parse_options(text)


def test_device_choices():
    device = next(spec for spec in PARAMETERS if spec.name == "device")
    with pytest.raises(ValueError, match="parameter 'device': 'tpu' is not one of auto, cuda, cpu"):
        check_value(device, "tpu")
    assert resolve_device("cpu") == "cpu"
