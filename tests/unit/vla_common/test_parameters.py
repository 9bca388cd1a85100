"""Parameter specs: the checks a node runs at start-up and on every `ros2 param set`."""

from __future__ import annotations

import array

import pytest

from vla_common.parameters import (
    CONTROL_HZ_DEFAULT,
    ParameterSpec,
    apply_changes,
    check_value,
    coerce_value,
    control_hz_spec,
)

STEP = ParameterSpec("max_step_m", 0.05, "per-step clip", minimum=0.0, maximum=0.5)
MODE = ParameterSpec("mode", "a", "how", choices=("a", "b"))
COUNT = ParameterSpec("count", 3, "how many", minimum=1, maximum=10)
TOPIC = ParameterSpec("topic", "/x", "where", read_only=True)
BOX = ParameterSpec("low_m", [0.0, 0.0, 0.0], "corner")
SPECS = (STEP, MODE, COUNT, TOPIC, BOX)
VALUES = {spec.name: spec.default for spec in SPECS}


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (STEP, 0.6, "parameter 'max_step_m': 0.6 is not in [0.0, 0.5]"),
        (STEP, float("nan"), "parameter 'max_step_m': nan is not in [0.0, 0.5]"),
        (STEP, "0.1", "parameter 'max_step_m': expected a number, got '0.1'"),
        (COUNT, 2.0, "parameter 'count': expected an integer, got 2.0"),
        (COUNT, True, "parameter 'count': expected an integer, got True"),
        (MODE, "c", "parameter 'mode': 'c' is not one of a, b"),
        (BOX, 0.1, "parameter 'low_m': expected a list, got 0.1"),
    ],
)
def test_a_value_that_does_not_fit_is_refused_by_name_and_value(spec, value, expected):
    with pytest.raises(ValueError) as error:
        check_value(spec, value)
    assert str(error.value) == expected


def test_values_that_fit_pass_and_a_whole_number_is_a_float():
    for spec, value in ((STEP, 0.5), (STEP, 0), (COUNT, 10), (MODE, "b"), (BOX, [1.0, 2.0, 3.0])):
        check_value(spec, value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default": 0.7, "minimum": 0.0, "maximum": 0.5}, "0.7 is not in [0.0, 0.5]"),
        ({"default": 0.1, "minimum": 0.0}, "give both minimum and maximum"),
        ({"default": 0.1, "minimum": 1.0, "maximum": 0.0}, "minimum 1.0 is above maximum 0.0"),
        ({"default": "a", "minimum": 0.0, "maximum": 1.0}, "a range needs a number default"),
        ({"default": 1, "choices": ("a",)}, "choices need a string default"),
    ],
)
def test_a_spec_checks_itself(kwargs, message):
    with pytest.raises(ValueError, match="parameter 'p'") as error:
        ParameterSpec("p", description="d", **kwargs)
    assert message in str(error.value)


def test_changes_are_checked_merged_and_leave_the_old_values_alone():
    merged = apply_changes(SPECS, VALUES, {"max_step_m": 0.02, "mode": "b", "use_sim_time": True})
    assert merged == {**VALUES, "max_step_m": 0.02, "mode": "b"}  # use_sim_time is rclpy's own
    assert VALUES["max_step_m"] == 0.05


def test_arrays_from_rclpy_become_lists():
    merged = apply_changes(SPECS, VALUES, {"low_m": array.array("d", [0.1, 0.2, 0.3])})
    assert merged["low_m"] == [0.1, 0.2, 0.3] and isinstance(merged["low_m"], list)


def test_one_bad_change_refuses_the_set_and_names_it():
    with pytest.raises(ValueError, match="parameter 'mode': 'z' is not one of a, b"):
        apply_changes(SPECS, VALUES, {"max_step_m": 0.02, "mode": "z"})


def test_a_read_only_parameter_is_refused_by_name():
    with pytest.raises(ValueError, match="parameter 'topic' is read-only"):
        apply_changes(SPECS, VALUES, {"topic": "/y"})


def test_control_hz_is_shared_and_read_only():
    spec = control_hz_spec("ticks")
    assert spec.name == "control_hz" and spec.default == CONTROL_HZ_DEFAULT and spec.read_only
    assert spec.minimum is not None and spec.minimum > 0
    assert spec.constraints == f"in [{spec.minimum}, {spec.maximum}]"


def test_an_integer_is_taken_as_the_float_a_spec_declares_and_nothing_else_converts():
    assert coerce_value(STEP, 0) == 0.0 and isinstance(coerce_value(STEP, 0), float)
    assert coerce_value(COUNT, 3) == 3 and isinstance(coerce_value(COUNT, 3), int)
    assert coerce_value(STEP, True) is True  # a bool is not a number: check_value refuses it
    assert coerce_value(STEP, "1") == "1"
    merged = apply_changes(SPECS, VALUES, {"max_step_m": 0})
    assert merged["max_step_m"] == 0.0 and isinstance(merged["max_step_m"], float)
    with pytest.raises(ValueError, match=r"parameter 'max_step_m': 1.0 is not in \[0.0, 0.5\]"):
        apply_changes(SPECS, VALUES, {"max_step_m": 1})
