"""`ros2 param set/get` from a test: the node's parameter services, called over DDS.

The calling node must be spun by another thread (the tests' spinner); calls wait on their future.
"""

from __future__ import annotations

import time
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python


class ParameterClient:
    """Sets and gets the parameters of the node named ``target`` through its services."""

    def __init__(self, node: Node, target: str, timeout_s: float = 20.0) -> None:
        self._timeout_s = timeout_s
        self._set = node.create_client(SetParameters, f"/{target}/set_parameters")
        self._set_atomically = node.create_client(
            SetParametersAtomically, f"/{target}/set_parameters_atomically"
        )
        self._get = node.create_client(GetParameters, f"/{target}/get_parameters")
        for client in (self._set, self._set_atomically, self._get):
            assert client.wait_for_service(timeout_sec=timeout_s), f"no service {client.srv_name}"

    def _call(self, client, request):
        future = client.call_async(request)
        deadline = time.monotonic() + self._timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert future.done(), f"{client.srv_name} did not answer within {self._timeout_s} s"
        return future.result()

    def set(self, name: str, value: Any) -> SetParametersResult:
        """`ros2 param set`: one parameter."""
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self._call(self._set, request).results[0]

    def set_atomically(self, **values: Any) -> SetParametersResult:
        """All of ``values`` or none of them."""
        parameters = [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        request = SetParametersAtomically.Request(parameters=parameters)
        return self._call(self._set_atomically, request).result

    def get(self, name: str) -> Any:
        response = self._call(self._get, GetParameters.Request(names=[name]))
        value = parameter_value_to_python(response.values[0])
        return value if isinstance(value, (bool, int, float, str)) else list(value)
