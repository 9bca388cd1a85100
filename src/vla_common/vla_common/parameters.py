"""Node parameters as data: one spec per parameter, checked the same way at start-up and at run time.

A :class:`ParameterSpec` holds what ros2_controllers' parameter files hold: the name, the default
(whose type is the parameter's type), a description, an inclusive range for numbers, the allowed
strings, and whether the parameter may change while the node runs. ``vla_common.ros.node_parameters``
turns specs into ROS parameter descriptors; the checks here are pure so nodes and tests share them.
Every error names the parameter and the value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The control rate every node shares (config/control.yaml sets it once for the whole graph).
CONTROL_HZ_DEFAULT = 5.0
CONTROL_HZ_RANGE = (0.1, 100.0)
# How long one chunk may run open loop after its observation (config/control.yaml, shared by the
# policy, which plans its next inference by it, and the actuation, which stops a chunk there).
MAX_OPEN_LOOP_S_DEFAULT = 0.5
MAX_OPEN_LOOP_S_RANGE = (0.0, 10.0)


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: name, default (its type), description, range or choices, read-only."""

    name: str
    default: Any
    description: str
    minimum: float | None = None  # inclusive bounds, numbers only; both or neither
    maximum: float | None = None
    choices: tuple[str, ...] = ()  # allowed values of a string parameter
    read_only: bool = False  # True: fixed once the node has started (rclpy refuses a set)

    def __post_init__(self) -> None:
        if (self.minimum is None) != (self.maximum is None):
            raise ValueError(f"parameter '{self.name}': give both minimum and maximum, or neither")
        if self.minimum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"parameter '{self.name}': minimum {self.minimum} is above maximum {self.maximum}"
            )
        if self.minimum is not None and not _is_number(self.default):
            raise ValueError(f"parameter '{self.name}': a range needs a number default, got {self.default!r}")
        if self.choices and not isinstance(self.default, str):
            raise ValueError(f"parameter '{self.name}': choices need a string default, got {self.default!r}")
        check_value(self, self.default)

    @property
    def constraints(self) -> str:
        """The allowed values in words (empty when any value of the type is allowed)."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.minimum is not None:
            return f"in [{self.minimum}, {self.maximum}]"
        return ""


def control_hz_spec(description: str) -> ParameterSpec:
    """The shared, read-only ``control_hz`` parameter; ``description`` says what this node does per tick."""
    low, high = CONTROL_HZ_RANGE
    return ParameterSpec(
        "control_hz", CONTROL_HZ_DEFAULT, description, minimum=low, maximum=high, read_only=True
    )


def max_open_loop_spec() -> ParameterSpec:
    """The shared ``max_open_loop_s`` parameter: a chunk's step runs only if it ends within this
    bound of the chunk's observation stamp."""
    low, high = MAX_OPEN_LOOP_S_RANGE
    return ParameterSpec(
        "max_open_loop_s",
        MAX_OPEN_LOOP_S_DEFAULT,
        "Longest open-loop execution of one chunk after its observation (s)",
        minimum=low,
        maximum=high,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KIND_WORDS = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "list": "a list",
}


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, Sequence) or hasattr(value, "tolist"):
        return "list"
    return type(value).__name__


def check_value(spec: ParameterSpec, value: Any) -> None:
    """Raise ValueError (naming the parameter and the value) if ``value`` does not fit ``spec``."""
    expected, got = _kind(spec.default), _kind(value)
    # A whole number is a fine float (YAML writes 1 for 1.0); nothing else converts.
    if expected != got and not (expected == "float" and got == "int"):
        raise ValueError(
            f"parameter '{spec.name}': expected {_KIND_WORDS.get(expected, expected)}, got {value!r}"
        )
    if spec.minimum is not None:
        if not math.isfinite(value) or not spec.minimum <= value <= spec.maximum:
            raise ValueError(f"parameter '{spec.name}': {value!r} is not {spec.constraints}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter '{spec.name}': {value!r} is not {spec.constraints}")


def plain_value(value: Any) -> Any:
    """A parameter value as plain Python (rclpy hands arrays over as array.array)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return list(value)


def coerce_value(spec: ParameterSpec, value: Any) -> Any:
    """``value`` as ``spec``'s type where people type it loosely: an integer given for a float.

    ``real_time_factor:=1`` or ``--set sim.real_time_factor=1`` means 1.0; nothing else converts
    (a bool is not a number here, a string stays a string and ``check_value`` refuses it).
    """
    value = plain_value(value)
    if _kind(spec.default) == "float" and _kind(value) == "int":
        return float(value)
    return value


def apply_changes(
    specs: Iterable[ParameterSpec], values: Mapping[str, Any], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """``values`` with ``changes`` applied, every change checked; names without a spec are ignored.

    Raises ValueError on the first change that is read-only or does not fit its spec, so a caller
    can refuse the whole set.
    """
    by_name = {spec.name: spec for spec in specs}
    merged = dict(values)
    for name, value in changes.items():
        spec = by_name.get(name)
        if spec is None:
            continue  # not this node's (use_sim_time belongs to rclpy)
        if spec.read_only:
            raise ValueError(f"parameter '{name}' is read-only: it is fixed when the node starts")
        value = coerce_value(spec, value)
        check_value(spec, value)
        merged[name] = value
    return merged
