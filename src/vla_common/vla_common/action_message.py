"""The policy -> actuation wire format: a self-describing action chunk (pure, no ROS).

Custom .msg packages do not build on the pip path, so the action travels as JSON in a
std_msgs/String on ``/vla/action``. Every message names its action space, dimensions, step and
coding, so a consumer (the actuation node, a bag reader, a plot) needs nothing else to decode it:

    {"schema": "vla_stack/action_chunk/v1", "stamp_ns": 1712..., "policy": "scripted",
     "space": "bridge_ee_delta", "dims": ["dx", ...], "step_dt_s": 0.2, "kind": "continuous",
     "values": [[...7...], ...]}                                   # continuous: [horizon x dims]
    {..., "kind": "discrete", "n_bins": 256, "bins": [[...]],
     "stats": {"q01": [...], "q99": [...], "mask": [...]}}          # discrete: indices + statistics

``stamp_ns`` is the observation time the action was computed from; chunk row k is meant for the
control step starting at stamp + k * step_dt_s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from vla_common.action_space import ActionSpace, NormStats, dequantize_actions

SCHEMA = "vla_stack/action_chunk/v1"


@dataclass(frozen=True)
class ActionChunk:
    """A decoded action message: ``values`` is always the continuous [horizon x dims] chunk."""

    stamp_ns: int
    space: ActionSpace
    values: np.ndarray
    bins: np.ndarray | None = None
    policy: str = ""
    terminate: bool = False
    inference_ms: float = 0.0

    @property
    def horizon(self) -> int:
        return int(self.values.shape[0])


def encode_action_chunk(
    stamp_ns: int,
    space: ActionSpace,
    chunk: np.ndarray,
    *,
    policy: str = "",
    terminate: bool = False,
    inference_ms: float = 0.0,
) -> str:
    """Serialise a chunk. For a discrete space ``chunk`` holds bin indices, else continuous values."""
    chunk = np.atleast_2d(np.asarray(chunk))
    if chunk.ndim != 2 or chunk.shape[1] != space.dim:
        raise ValueError(f"action chunk: expected shape [horizon x {space.dim}], got {list(chunk.shape)}")
    body: dict = {
        "schema": SCHEMA,
        "stamp_ns": int(stamp_ns),
        "policy": policy,
        "space": space.name,
        "dims": list(space.dim_names),
        "step_dt_s": float(space.step_dt_s),
        "kind": space.kind,
        "terminate": bool(terminate),
        "inference_ms": round(float(inference_ms), 3),
    }
    if space.kind == "discrete":
        body["n_bins"] = int(space.n_bins)
        body["bins"] = chunk.astype(np.int64).tolist()
        body["stats"] = space.stats.as_dict()
    else:
        body["values"] = chunk.astype(np.float64).tolist()
    return json.dumps(body, separators=(",", ":"))


def _require(body: dict, key: str, types: type | tuple[type, ...]) -> object:
    if key not in body:
        raise ValueError(f"action message: missing field '{key}'")
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(
            f"action message: field '{key}' has type {type(value).__name__}, value {value!r:.60}"
        )
    return value


def decode_action_chunk(text: str) -> ActionChunk:
    """Parse and validate an action message; every error names the field and the value."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"action message: not JSON ({exc.msg} at {exc.pos}): {text[:60]!r}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"action message: expected an object, got {type(body).__name__}")
    schema = body.get("schema")
    if schema != SCHEMA:
        raise ValueError(f"action message: field 'schema' is {schema!r}, expected {SCHEMA!r}")
    stamp_ns = _require(body, "stamp_ns", int)
    dims = _require(body, "dims", list)
    kind = _require(body, "kind", str)
    step_dt_s = _require(body, "step_dt_s", (int, float))
    name = _require(body, "space", str)
    if kind == "discrete":
        n_bins = _require(body, "n_bins", int)
        stats = NormStats.from_dict(_require(body, "stats", dict))
        space = ActionSpace(name, tuple(dims), float(step_dt_s), kind, n_bins, stats)
        raw = _require(body, "bins", list)
    elif kind == "continuous":
        stats_body = body.get("stats")
        kwargs = {"stats": NormStats.from_dict(stats_body)} if isinstance(stats_body, dict) else {}
        if not kwargs and len(dims) != 7:
            # Without statistics, carry neutral ones of the right size (they are unused for continuous).
            kwargs = {"stats": NormStats((-1.0,) * len(dims), (1.0,) * len(dims), (True,) * len(dims))}
        space = ActionSpace(name, tuple(dims), float(step_dt_s), kind, **kwargs)
        raw = _require(body, "values", list)
    else:
        raise ValueError(f"action message: field 'kind' is {kind!r}; use 'continuous' or 'discrete'")
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"action message: field '{'bins' if kind == 'discrete' else 'values'}' is not numeric"
        ) from exc
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != len(dims):
        raise ValueError(
            f"action message: chunk shape {list(array.shape)} does not match [horizon x {len(dims)}]"
        )
    bins = None
    if kind == "discrete":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError("action message: field 'bins' holds non-integer values")
        bins = array.astype(np.int64)
        if bins.min() < 0 or bins.max() > space.n_bins - 1:
            raise ValueError(
                f"action message: bin index out of range 0..{space.n_bins - 1}: "
                f"{int(bins.min())}..{int(bins.max())}"
            )
        array = dequantize_actions(bins, space)
    return ActionChunk(
        stamp_ns=int(stamp_ns),
        space=space,
        values=array,
        bins=bins,
        policy=str(body.get("policy", "")),
        terminate=bool(body.get("terminate", False)),
        inference_ms=float(body.get("inference_ms", 0.0) or 0.0),
    )
