"""Placeholders for the torchvision names timm imports but the OpenVLA reference never uses."""

from __future__ import annotations


def placeholder(qualified_name: str) -> type:
    def refuse(*_args, **_kwargs):
        raise NotImplementedError(
            f"{qualified_name} is not provided by the cross-check's torchvision stub "
            "(crosscheck/openvla/torchvision_stub); the OpenVLA reference should not need it"
        )

    return type(qualified_name.rsplit(".", 1)[-1], (), {"__init__": refuse, "__call__": refuse})


def module_getattr(module_name: str):
    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{module_name}.{name}")

    return __getattr__
