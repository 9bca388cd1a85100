"""The one dtype rule every model backend follows (imported only by the torch backends)."""

from __future__ import annotations

from typing import Any

import torch

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def resolve_dtype(dtype: Any, device: str) -> Any:
    """A torch dtype from a name or a torch.dtype; None -> bfloat16 on CUDA, float32 on CPU.

    float16 on CPU is refused (slow and poorly supported there); errors name the value.
    """
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    else:
        name = dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype '{dtype}' is not one of {', '.join(DTYPE_NAMES)}")
    if name == "float16" and not str(device).startswith("cuda"):
        raise ValueError(f"dtype 'float16' is not supported on {device}; use float32 or bfloat16")
    return getattr(torch, name)
