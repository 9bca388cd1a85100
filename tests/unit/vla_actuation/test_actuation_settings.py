"""The actuation node's parameters and the settings they build, checked as at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vla_actuation.actuation_settings import PARAMETERS, build_settings
from vla_actuation.safety import SafetyLimits
from vla_common.action_message import MAX_ACTION_BYTES, MAX_CHUNK_STEPS
from vla_common.parameters import apply_changes

CONFIG = Path(__file__).resolve().parents[3] / "config"
DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}


def test_the_defaults_build_the_default_limits_at_five_hz():
    settings = build_settings(DEFAULTS)
    assert settings.limits == SafetyLimits()
    assert settings.step_dt_s == 0.2 and settings.controller_config.step_dt_s == 0.2
    assert settings.chunk_executor().step_dt_s == 0.2 and settings.step_executor().mode == "single_step"


def test_the_step_period_follows_control_hz():
    settings = build_settings({**DEFAULTS, "control_hz": 10.0})
    assert settings.step_dt_s == 0.1 and settings.chunk_executor().step_dt_s == 0.1


def test_what_sizes_topics_and_timers_is_read_only():
    read_only = {spec.name for spec in PARAMETERS if spec.read_only}
    assert read_only == {"robot_name", "control_hz", "servo_hz"}
    assert "step_dt_s" not in DEFAULTS  # derived from control_hz, never set on its own


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workspace_low_m": [0.5, -0.2, -0.01]}, "workspace_low_m: x low 0.5 must be below"),
        ({"workspace_high_m": [0.45, 0.25]}, "workspace_high_m: expected 3 finite numbers"),
        ({"max_open_loop_s": 0.1}, "max_open_loop_s: 0.1 is shorter than one step"),
        ({"execution_mode": "chunky"}, "parameter 'execution_mode': 'chunky' is not one of"),
        ({"max_translation_step_m": 0.9}, "parameter 'max_translation_step_m': 0.9 is not in"),
    ],
)
def test_a_bad_value_is_refused_with_its_name_and_value(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_settings(apply_changes(PARAMETERS, DEFAULTS, changes))


def test_a_safety_change_keeps_execution_and_a_mode_change_does_not():
    before = build_settings(DEFAULTS)
    tighter = build_settings({**DEFAULTS, "max_translation_step_m": 0.02})
    assert tighter.limits.max_translation_step_m == 0.02 and tighter.same_execution(before)
    ensembled = build_settings({**DEFAULTS, "execution_mode": "temporal_ensembling"})
    assert not ensembled.same_execution(before) and ensembled.chunk_executor().mode == "temporal_ensembling"


def test_the_stream_bounds_are_parameters_with_ranges():
    settings = build_settings(DEFAULTS)
    assert (settings.servo_overrun_s, settings.max_joint_state_jump_rad) == (0.1, 0.3)
    assert (settings.max_action_bytes, settings.max_action_steps) == (MAX_ACTION_BYTES, MAX_CHUNK_STEPS)
    with pytest.raises(ValueError, match="parameter 'max_action_bytes': 10 is not in"):
        build_settings(apply_changes(PARAMETERS, DEFAULTS, {"max_action_bytes": 10}))
    with pytest.raises(ValueError, match="parameter 'max_action_steps': 0 is not in"):
        build_settings(apply_changes(PARAMETERS, DEFAULTS, {"max_action_steps": 0}))


def test_config_yaml_lists_every_parameter_with_the_table_default():
    """config/actuation.yaml lists every parameter at its default (control_hz and max_open_loop_s,
    shared by every node, are in control.yaml)."""
    listed = yaml.safe_load((CONFIG / "actuation.yaml").read_text())["actuation"]["ros__parameters"]
    shared = yaml.safe_load((CONFIG / "control.yaml").read_text())["/**"]["ros__parameters"]
    table = {name: value for name, value in DEFAULTS.items() if name not in ("control_hz", "max_open_loop_s")}
    assert shared["max_open_loop_s"] == DEFAULTS["max_open_loop_s"]
    assert set(listed) == set(table)
    for name, value in table.items():
        assert listed[name] == pytest.approx(value, abs=1e-5) if not isinstance(value, str) else value, name
