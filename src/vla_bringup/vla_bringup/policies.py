"""Named policies for ``vla-stack demo`` and ``vla-stack eval``: a backend, its checkpoint and options.

``octo-sim`` (the default) is the Octo-style model trained on the embedded sim's demonstrations; its
weights ship in models/octo-sim and ``vla-stack train config/train/octo_sim.yaml`` reproduces them
(docs/training.md). ``scripted`` is the expert on privileged sim state. Any backend name (openvla,
rt2, octo, or "pkg.module:factory") is accepted too, with its checkpoint given by ``--checkpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vla_bringup.deployment import load_deployment
from vla_bringup.paths import repo_root

DEFAULT_POLICY = "octo-sim"


@dataclass(frozen=True)
class PolicySpec:
    backend: str
    checkpoint: str = ""
    options: dict = field(default_factory=dict)
    privileged: bool = False  # reads /sim/privileged_state (the scripted expert only)
    execution_mode: str | None = None  # actuation override; None = config/actuation.yaml


def _named() -> dict[str, PolicySpec]:
    return {
        "octo-sim": PolicySpec(
            "octo",
            str(repo_root() / "models" / "octo-sim"),
            # the graph's chunk length (config/policy.yaml), deterministic DDIM; a fixed sampler seed
            # makes runs repeatable
            {"chunk_horizon": load_deployment().chunk_horizon, "seed": 0},
        ),
        "scripted": PolicySpec("scripted", privileged=True),
    }


def named_policies() -> tuple[str, ...]:
    return tuple(_named())


def resolve_policy(name: str, checkpoint: str = "", options: dict | None = None) -> PolicySpec:
    """The spec of a named policy, or of a bare backend name; explicit arguments win."""
    named = _named()
    spec = named.get(name, PolicySpec(name))
    if name in named and spec.checkpoint and not checkpoint and not Path(spec.checkpoint).is_dir():
        raise FileNotFoundError(
            f"policy '{name}': no checkpoint at {spec.checkpoint}; create it with "
            "`vla-stack train config/train/octo_sim.yaml` or pass --checkpoint"
        )
    return PolicySpec(
        spec.backend,
        checkpoint or spec.checkpoint,
        {**spec.options, **(options or {})},
        spec.privileged,
        spec.execution_mode,
    )
