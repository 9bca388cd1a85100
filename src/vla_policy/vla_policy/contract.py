"""The policy backend contract: numpy in, numpy out, so the robot side never imports torch.

A backend turns one synchronised :class:`Observation` into a :class:`PolicyOutput` (an action chunk
in its :class:`~vla_common.action_space.ActionSpace`). Backends register a factory under a name; the
policy node picks one by the ``backend`` parameter. Heavy imports (torch, transformers) happen
when a backend's module is imported, on first use of its name, never at import time of this module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vla_common.action_space import ActionSpace


@dataclass(frozen=True)
class CommittedActions:
    """The actions already committed to the arm when an inference starts (real-time chunking).

    ``actions[j]`` is what the previous chunk commands for the control step that starts at
    ``observation.stamp_ns + j * step_dt`` (the new chunk's step ``j``), continuous and unnormalised
    (the backend's action space), for as many steps as the previous chunk still covers. The first
    ``frozen_steps`` of them will have started before the new chunk can arrive (the inference
    latency): the arm runs those whatever the new chunk says, so a chunk that joins smoothly agrees
    with them. A backend that guides its sampler toward them (Octo's diffusion head) says so with
    ``guides_chunks = True``; for any other chunking backend the policy node blends the prefix
    (``vla_policy.chunk_join``).
    """

    actions: np.ndarray  # K x D, K >= 1
    frozen_steps: int  # 0 <= frozen_steps <= K

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] < 1:
            raise ValueError(
                f"CommittedActions: actions must be K x D with K, D >= 1, got {list(actions.shape)}"
            )
        if not np.all(np.isfinite(actions)):
            raise ValueError("CommittedActions: actions must be finite")
        frozen = self.frozen_steps
        if (
            isinstance(frozen, bool)
            or not isinstance(frozen, (int, np.integer))
            or not 0 <= frozen <= len(actions)
        ):
            raise ValueError(
                f"CommittedActions: frozen_steps {frozen!r} must be an integer in 0..{len(actions)}"
            )
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "frozen_steps", int(frozen))


@dataclass(frozen=True)
class Observation:
    """One control tick's inputs, all taken at ``stamp_ns``."""

    stamp_ns: int
    images: Mapping[str, np.ndarray]  # camera name -> HxWx3 uint8 RGB at the policy's input size
    instruction: str
    proprio: np.ndarray | None = None  # 6 arm joint positions (rad, waist..wrist_rotate) + left_finger (m)
    privileged: Mapping[str, Any] | None = None  # simulator ground truth; only the scripted expert uses it
    committed: CommittedActions | None = None  # real-time chunking: what the arm runs meanwhile


@dataclass(frozen=True)
class PolicyOutput:
    """An action chunk [horizon x dims]: continuous values, or bin indices for a discrete space."""

    chunk: np.ndarray
    terminate: bool = False
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class PolicyBackend(Protocol):
    """What every backend provides."""

    name: str
    action_space: ActionSpace
    camera_names: tuple[str, ...]  # cameras the backend needs, in order
    image_size: Mapping[str, tuple[int, int]]  # camera -> (height, width) it expects

    def reset(self, seed: int | None = None) -> None: ...

    def infer(self, observation: Observation) -> PolicyOutput: ...


BackendFactory = Callable[..., PolicyBackend]
_REGISTRY: dict[str, BackendFactory] = {}

# Built-in backends by name -> "module:factory". Imported only when asked for, so that listing
# backends or running the scripted one never imports torch.
BUILTIN_BACKENDS = {
    "scripted": "vla_policy.backends.scripted.backend:make_scripted_backend",
    "openvla": "vla_policy.backends.openvla.backend:make_openvla_backend",
    "rt2": "vla_policy.backends.rt2.backend:make_rt2_backend",
    "octo": "vla_policy.backends.octo.backend:make_octo_backend",
}


def register_backend(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Register a factory under ``name`` (for backends outside this package)."""

    def decorator(factory: BackendFactory) -> BackendFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"policy backend '{name}' is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_backends() -> list[str]:
    return sorted(set(BUILTIN_BACKENDS) | set(_REGISTRY))


def backend_factory(name: str) -> BackendFactory:
    """The factory for a registered or built-in name, or for an import path "package.module:factory"."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name and name not in BUILTIN_BACKENDS:
        module_name, _, attribute = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"policy backend '{name}': cannot import it ({exc})") from exc
    if name not in BUILTIN_BACKENDS:
        raise ValueError(
            f"policy backend '{name}' is unknown; available: {', '.join(available_backends())} "
            "(a named policy such as octo-sim is a backend with its checkpoint and options: vla-stack "
            "launch, demo, eval and replay expand it; `vla-stack backends` lists both)"
        )
    module_name, _, attribute = BUILTIN_BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def make_backend(name: str, **options: Any) -> PolicyBackend:
    """Build the backend registered as ``name``; an unknown name lists the known ones."""
    return backend_factory(name)(**options)


def validate_output(output: PolicyOutput, space: ActionSpace) -> np.ndarray:
    """Check a backend's chunk against its declared space; returns it as a 2-D array."""
    chunk = np.asarray(output.chunk)
    if chunk.ndim == 1:
        chunk = chunk[None, :]
    if chunk.ndim != 2 or chunk.shape[1] != space.dim or chunk.shape[0] < 1:
        raise ValueError(f"policy output: chunk shape {list(chunk.shape)} is not [horizon x {space.dim}]")
    if space.kind == "discrete":
        if not np.issubdtype(chunk.dtype, np.integer):
            raise ValueError(f"policy output: discrete chunk has dtype {chunk.dtype}, expected integers")
        if chunk.min() < 0 or chunk.max() >= space.n_bins:
            raise ValueError(
                f"policy output: bin index outside 0..{space.n_bins - 1}: {chunk.min()}..{chunk.max()}"
            )
    elif not np.all(np.isfinite(chunk)):
        raise ValueError(f"policy output: chunk holds non-finite values: {chunk.tolist()}")
    return chunk
