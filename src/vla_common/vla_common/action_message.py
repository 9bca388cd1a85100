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

Decoding is bounded: at most ``MAX_ACTION_BYTES`` of text nested at most ``MAX_JSON_DEPTH`` deep,
with at most ``MAX_CHUNK_STEPS + MAX_HEADER_CONTAINERS`` arrays/objects (all checked on the text,
before parsing), at most ``MAX_CHUNK_STEPS`` rows, numbers only (no booleans, no numeric strings),
exact shapes; anything else is a ``ValueError`` that names the field and value. Non-finite values are
left to the actuation safety layer (see ``_numeric_rows``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from vla_common.action_space import ActionSpace, NormStats, dequantize_actions
from vla_common.inbound import is_number, load_bounded_json, require_stamp_ns

SCHEMA = "vla_stack/action_chunk/v1"
MAX_CHUNK_STEPS = 1000  # 200 s at 0.2 s a step; a 270k-step chunk stalled the arm stream for 1.37 s
MAX_ACTION_DIMS = 64  # the widest action space we know has 7 dims
# Arrays/objects of a message besides its rows: the body, dims, stats and its five lists, with room
MAX_HEADER_CONTAINERS = 32
MAX_ACTION_BYTES = 512 * 1024  # 1000 steps x 7 dims of full-precision floats take about 150 KB


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


def _numeric_rows(raw: list, field: str, width: int, max_steps: int) -> np.ndarray:
    """``raw`` as a [horizon x width] float array; numbers only, every row checked.

    NaN and infinity (JSON's ``NaN``/``Infinity``) pass: the actuation safety layer rejects them
    per step and counts them by name (``violation.nan``), as it does for a policy's own output.
    """
    if not 1 <= len(raw) <= max_steps:
        raise ValueError(f"action message: field '{field}' has {len(raw)} steps; expected 1..{max_steps}")
    for i, row in enumerate(raw):
        if not isinstance(row, list) or len(row) != width:
            shape = f"{len(row)} values" if isinstance(row, list) else f"a {type(row).__name__}"
            raise ValueError(f"action message: {field}[{i}] is {shape}; expected a list of {width} numbers")
        for j, value in enumerate(row):
            if not is_number(value):
                raise ValueError(
                    f"action message: {field}[{i}][{j}] is {type(value).__name__} {value!r:.40}; "
                    "expected a number"
                )
    try:
        array = np.asarray(raw, dtype=np.float64)
    except OverflowError as exc:  # an integer beyond float64
        raise ValueError(f"action message: field '{field}' holds a number beyond float64") from exc
    return array


def decode_action_chunk(
    text: str | bytes, max_steps: int = MAX_CHUNK_STEPS, max_bytes: int = MAX_ACTION_BYTES
) -> ActionChunk:
    """Parse and validate an action message; every error names the field and the value."""
    body = load_bounded_json(
        text, what="action message", max_bytes=max_bytes, max_containers=max_steps + MAX_HEADER_CONTAINERS
    )
    if not isinstance(body, dict):
        raise ValueError(f"action message: expected an object, got {type(body).__name__}")
    schema = body.get("schema")
    if schema != SCHEMA:
        raise ValueError(f"action message: field 'schema' is {schema!r:.80}, expected {SCHEMA!r}")
    stamp_ns = require_stamp_ns(body, "stamp_ns", "action message")
    dims = _require(body, "dims", list)
    if not 1 <= len(dims) <= MAX_ACTION_DIMS or not all(isinstance(d, str) for d in dims):
        raise ValueError(
            f"action message: field 'dims' is {dims!r:.80}; expected 1..{MAX_ACTION_DIMS} dimension names"
        )
    kind = _require(body, "kind", str)
    step_dt_s = _require(body, "step_dt_s", (int, float))
    if not math.isfinite(step_dt_s) or step_dt_s <= 0:
        raise ValueError(f"action message: field 'step_dt_s' is {step_dt_s}; expected a positive number")
    name = _require(body, "space", str)
    try:
        if kind == "discrete":
            n_bins = _require(body, "n_bins", int)
            stats = NormStats.from_dict(_require(body, "stats", dict))
            space = ActionSpace(name, tuple(dims), float(step_dt_s), kind, n_bins, stats)
            field = "bins"
        elif kind == "continuous":
            stats_body = body.get("stats")
            kwargs = {"stats": NormStats.from_dict(stats_body)} if isinstance(stats_body, dict) else {}
            if not kwargs and len(dims) != 7:
                # Without statistics, carry neutral ones of the right size (unused for continuous).
                kwargs = {"stats": NormStats((-1.0,) * len(dims), (1.0,) * len(dims), (True,) * len(dims))}
            space = ActionSpace(name, tuple(dims), float(step_dt_s), kind, **kwargs)
            field = "values"
        else:
            raise ValueError(f"action message: field 'kind' is {kind!r:.40}; use 'continuous' or 'discrete'")
    except (TypeError, OverflowError) as exc:  # statistics of the wrong types; ValueErrors pass as they are
        raise ValueError(f"action message: field 'stats' cannot be read: {exc}") from exc
    array = _numeric_rows(_require(body, field, list), field, len(dims), max_steps)
    bins = None
    if kind == "discrete":
        if np.any(array != np.round(array)):
            raise ValueError("action message: field 'bins' holds non-integer values")
        bins = array.astype(np.int64)
        if bins.min() < 0 or bins.max() > space.n_bins - 1:
            raise ValueError(
                f"action message: bin index out of range 0..{space.n_bins - 1}: "
                f"{int(bins.min())}..{int(bins.max())}"
            )
        array = dequantize_actions(bins, space)
    inference_ms = body.get("inference_ms", 0.0)
    terminate = body.get("terminate", False)
    if not isinstance(terminate, bool):
        raise ValueError(f"action message: field 'terminate' is {terminate!r:.40}; expected true or false")
    return ActionChunk(
        stamp_ns=stamp_ns,
        space=space,
        values=array,
        bins=bins,
        policy=str(body.get("policy", ""))[:200],
        terminate=terminate,
        inference_ms=float(inference_ms) if is_number(inference_ms) and math.isfinite(inference_ms) else 0.0,
    )
