"""Named policies: a backend, its checkpoint and options; the one table for every command.

``vla-stack demo``, ``eval``, ``replay``, ``launch`` (``--set policy.backend=NAME``) and
``vla-stack backends`` all resolve a policy name here. The policy node only ever sees a backend
name: the launcher expands a named policy into the node's backend, checkpoint, backend_options and
use_privileged_state before the node starts (:func:`expand_policy_overrides`). The table stays here,
not in vla_policy, because it is deployment, not the backend contract: the checkpoint lives in this
repository's models/ and the chunk length comes from config/policy.yaml.

``octo-sim`` (the default) is the Octo-style model trained on the embedded sim's demonstrations; its
weights ship in models/octo-sim and ``vla-stack train config/train/octo_sim.yaml`` reproduces them
(docs/training.md). ``scripted`` is the expert on privileged sim state. Any backend name (openvla,
rt2, octo, or "pkg.module:factory") is accepted too, with its checkpoint given by ``--checkpoint``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def describe_policies() -> dict[str, str]:
    """Each named policy in a line: what it runs (for ``vla-stack backends``)."""
    lines = {}
    for name, spec in _named().items():
        parts = [f"backend {spec.backend}"]
        if spec.checkpoint:
            checkpoint = Path(spec.checkpoint)
            shown = (
                checkpoint.relative_to(repo_root()) if checkpoint.is_relative_to(repo_root()) else checkpoint
            )
            parts.append(f"checkpoint {shown}")
        if spec.options:
            parts.append(f"options {json.dumps(spec.options, sort_keys=True)}")
        if spec.privileged:
            parts.append("reads /sim/privileged_state (sim and sim bags only)")
        lines[name] = ", ".join(parts)
    return lines


def policy_parameters(spec: PolicySpec) -> dict[str, object]:
    """The policy node's parameters that run ``spec``."""
    return {
        "backend": spec.backend,
        "checkpoint": spec.checkpoint,
        "backend_options": json.dumps(spec.options),
        # Only the sim's scripted expert reads privileged state; a VLA sees pixels alone.
        "use_privileged_state": spec.privileged,
    }


def expand_policy_overrides(
    overrides: Mapping[str, Mapping[str, object]],
) -> dict[str, dict[str, object]]:
    """``overrides`` with a named policy given as the policy node's ``backend`` expanded.

    ``--set policy.backend=octo-sim`` becomes backend octo with octo-sim's checkpoint and options;
    a checkpoint or use_privileged_state given beside it wins, and backend_options given beside it
    are merged over the named ones. A bare backend name is left as it is. Raises ValueError for a
    named policy whose checkpoint is missing or for backend_options that are not a JSON object.
    """
    result = {node: dict(params) for node, params in overrides.items()}
    params = result.get("policy", {})
    name = params.get("backend")
    if not isinstance(name, str) or name not in _named():
        return result
    given = params.get("backend_options", "{}")
    try:
        options = json.loads(given) if isinstance(given, str) else dict(given)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"policy.backend_options: expected a JSON object, got {given!r}") from exc
    if not isinstance(options, dict):
        raise ValueError(f"policy.backend_options: expected a JSON object, got {given!r}")
    try:
        spec = resolve_policy(name, str(params.get("checkpoint") or ""), options)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from exc
    expanded = policy_parameters(spec)
    if "use_privileged_state" in params:
        expanded["use_privileged_state"] = params["use_privileged_state"]
    result["policy"] = {**params, **expanded}
    return result
