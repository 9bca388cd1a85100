"""A node's parameters declared from their specs, and run-time changes validated, then applied whole.

The pattern of ros2_controllers: every parameter is declared in one place with its type, default,
description, range and read-only flag (``vla_common.parameters.ParameterSpec``). rclpy itself
refuses a set on a read-only parameter, of the wrong type or out of range, naming it. What is left
(choices, rules across parameters such as a workspace box whose low corner must lie below its high
one) goes through the node's own pure ``build`` function, the same one that built its settings at
start-up: a ``ValueError`` refuses the whole set with its message as the reason, otherwise
``apply`` swaps the new settings in. No exception ever leaves the callback.

Parameters as people type them: an integer where a double is declared (``real_time_factor:=1``,
``--set sim.real_time_factor=1``, ``ros2 param set ... 1``) is taken as that double, at start-up and
at run time, and a value out of range is refused with the parameter's name and range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from vla_common.parameters import ParameterSpec, apply_changes, check_value, coerce_value, plain_value

Settings = TypeVar("Settings")


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """The ROS descriptor of a spec: description, constraints in words, numeric range, read-only."""
    result = ParameterDescriptor(
        description=spec.description, additional_constraints=spec.constraints, read_only=spec.read_only
    )
    if spec.minimum is not None:
        if isinstance(spec.default, int):
            result.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=0)
            ]
        else:
            result.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return result


class NodeParameters:
    """Declares a node's parameters from specs and routes ``ros2 param set`` through build and apply."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._specs: dict[str, ParameterSpec] = {}
        self._values: dict[str, Any] = {}
        self._build: Callable[[Mapping[str, Any]], Any] | None = None
        self._apply: Callable[[Any], None] | None = None
        node.add_pre_set_parameters_callback(self._coerce_set)

    def declare(self, specs: Iterable[ParameterSpec]) -> dict[str, Any]:
        """Declare ``specs`` (values from the params files or the defaults); return their values.

        Raises ValueError naming the parameter when a value does not fit its spec (rclpy raises its
        own exception first for a wrong type or a value out of range).
        """
        declared = {}
        for spec in specs:
            self._coerce_override(spec)
            value = plain_value(self._node.declare_parameter(spec.name, spec.default, descriptor(spec)).value)
            check_value(spec, value)
            self._specs[spec.name] = spec
            declared[spec.name] = value
        self._values.update(declared)
        return declared

    def _coerce_override(self, spec: ParameterSpec) -> None:
        """Take the start-up value (``-p``, a params file) as the spec's type, and check it first.

        rclpy keeps those values in ``Node._parameter_overrides`` until a parameter is declared and
        offers no public way to read them; declaring a double with an integer override would raise
        ``InvalidParameterTypeException``, so the override is replaced by its float beforehand.
        """
        overrides = getattr(self._node, "_parameter_overrides", {})
        override = overrides.get(spec.name)
        if override is None or override.type_ == Parameter.Type.NOT_SET:
            return
        value = coerce_value(spec, override.value)
        check_value(spec, value)  # the name and the allowed range, before rclpy's own exception
        if type(value) is not type(override.value):
            overrides[spec.name] = Parameter(spec.name, value=value)

    def _coerce_set(self, parameters: list[Parameter]) -> list[Parameter]:
        """Before rclpy checks types: an integer set on a declared double becomes that double."""
        result = []
        for parameter in parameters:
            spec = self._specs.get(parameter.name)
            if spec is not None and parameter.type_ == Parameter.Type.INTEGER:
                value = coerce_value(spec, parameter.value)
                if isinstance(value, float):
                    parameter = Parameter(parameter.name, value=value)
            result.append(parameter)
        return result

    @property
    def values(self) -> dict[str, Any]:
        """Every declared parameter's value now in force."""
        return dict(self._values)

    def on_change(
        self, build: Callable[[Mapping[str, Any]], Settings], apply: Callable[[Settings], None]
    ) -> None:
        """From now on a set is checked, ``build`` runs on all values, and ``apply`` gets the result.

        ``build`` must be pure and raise ValueError (naming the parameter and value) to refuse;
        ``apply`` must only swap references (the node's callbacks see the old or the new settings).
        Call it at the end of ``__init__``, once everything ``apply`` touches exists.
        """
        self._build, self._apply = build, apply
        self._node.add_on_set_parameters_callback(self._on_set)

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        # rclpy has already refused read-only, wrong-type and out-of-range values (naming them);
        # this runs before it stores the values, and TimeSource's callback (the only other one)
        # refuses nothing that got this far, so applying here is applying what will be stored.
        changes = {p.name: p.value for p in parameters if p.name in self._specs}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            values = apply_changes(self._specs.values(), self._values, changes)
            settings = self._build(values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        except Exception as error:  # noqa: BLE001 - a bug must refuse the set, not kill the service
            self._node.get_logger().error(f"parameter check failed on {sorted(changes)}: {error!r}")
            return SetParametersResult(successful=False, reason=f"internal error: {error!r}")
        try:
            self._apply(settings)
        except Exception as error:  # noqa: BLE001 - same: refuse and say so
            self._node.get_logger().error(f"applying parameters {sorted(changes)} failed: {error!r}")
            return SetParametersResult(successful=False, reason=f"internal error: {error!r}")
        self._values = values
        changed = ", ".join(f"{name}={values[name]!r}" for name in sorted(changes))
        self._node.get_logger().info(f"parameters set: {changed}")
        return SetParametersResult(successful=True)
