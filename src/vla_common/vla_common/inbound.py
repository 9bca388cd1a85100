"""Checks for what arrives on the graph's topics, before a node acts on it (pure, no ROS).

Every decoder returns a value or raises ``ValueError`` whose message names the field and the value;
a node drops such a message, counts it per kind and says why in /diagnostics. JSON is bounded in
bytes and in nesting depth *before* it is parsed (``json.loads`` recurses once per level, so deeply
nested arrays would otherwise end in a ``RecursionError``).

The limits are defined here once; the wire formats are the sim's (``vla_sim.sim_node``):

    /vla/episode            {"event": "start", "episode": 0, "seed": 7, "stamp_ns": ..., ...}
    /sim/privileged_state   {"stamp_ns": ..., "tool_pose": [[4x4]], "objects": {name: {...}}, ...}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_JSON_DEPTH = 16  # the deepest message we send nests 4 levels (privileged state: objects.<name>.position)
MAX_EPISODE_EVENT_BYTES = 16 * 1024  # an event carries an instruction and a few numbers
MAX_PRIVILEGED_STATE_BYTES = 256 * 1024  # a few objects; ~2 KB in the sim's scenes
MAX_INSTRUCTION_CHARS = 2000  # a task instruction is a sentence or two; a tokenizer need not see a book
MAX_IMAGE_PIXELS = 1920 * 1200  # the largest camera we expect; a 3000x3000 frame is refused
# Integers from JSON are unbounded; what reads them is not: ROS stamps and episode indices are int64,
# and torch/numpy generators take seeds below 2**63 (Generator.manual_seed raised on 10**40).
INT64_LIMIT = 2**63
IMAGE_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}  # 8-bit encodings

_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_FOLD_BRACKETS = str.maketrans("{}", "[]")  # nesting counts arrays and objects alike


def _outside_strings(text: str) -> str:
    """What ``text`` holds outside its string literals, for its brackets (an unterminated literal
    is not one: what follows its quote counts).

    Without a backslash a literal runs from a quote to the next one, so splitting on quotes finds
    them, faster than the regular expression, which handles escapes.
    """
    if "\\" in text:
        return _STRING_LITERAL.sub('""', text)
    parts = text.split('"')
    outside = parts[0::2]
    if len(parts) % 2 == 0:  # an odd number of quotes: the text after the last one is outside
        outside.append(parts[-1])
    return "".join(outside)


def _brackets(text: str) -> str:
    """The brackets of ``text`` in order, without those inside string literals."""
    return _NOT_BRACKETS.sub("", _outside_strings(text))


def _depth_at_most(brackets: str, limit: int) -> bool:
    """Whether ``_depth(brackets) <= limit``, if that is quickly sure; False when unsure.

    Each pass removes the innermost ``[]`` pairs (after folding ``{}`` into them): a balanced
    sequence is empty after as many passes as it is deep. At most ``limit`` passes, so a deep
    message costs no more than a shallow one.
    """
    if limit < 0:
        return False
    folded = brackets.translate(_FOLD_BRACKETS)
    for _ in range(limit):
        if not folded:
            return True
        folded = folded.replace("[]", "")
    return not folded


def _depth(brackets: str) -> int:
    if not brackets:
        return 0
    steps = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    opening = (steps == ord("[")) | (steps == ord("{"))
    return int(np.cumsum(np.where(opening, 1, -1)).max())


def json_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in ``text`` (brackets inside strings do not count)."""
    return _depth(_brackets(text))


def load_bounded_json(
    text: str | bytes,
    *,
    what: str,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    max_containers: int | None = None,
) -> Any:
    """``json.loads`` after checking the size, the nesting depth and (when given) the number of
    arrays and objects; ``what`` names the message. The checks run on the text, before any Python
    object is built: a message that would become tens of thousands of short-lived objects is refused
    before it fragments the heap of a long-running node."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected JSON text, got {type(text).__name__}")
    size = len(text.encode("utf-8")) if len(text) * 4 > max_bytes else len(text)
    if size > max_bytes:
        raise ValueError(f"{what}: {size} bytes, more than the limit of {max_bytes}")
    # Both counts are at most the number of opening brackets in the whole text: when that is within
    # the limits (a short action chunk), the brackets outside strings need not be found.
    openers = text.count("[") + text.count("{")
    check_containers = max_containers is not None and openers > max_containers
    if openers <= max_depth and not check_containers:
        brackets = ""
    else:
        brackets = _brackets(text)
    if openers > max_depth and not _depth_at_most(brackets, max_depth):
        depth = _depth(brackets)
        if depth > max_depth:
            raise ValueError(f"{what}: JSON nested {depth} levels deep, more than the limit of {max_depth}")
    if check_containers:
        containers = brackets.count("[") + brackets.count("{")
        if containers > max_containers:
            raise ValueError(
                f"{what}: {containers} JSON arrays/objects, more than the limit of {max_containers}"
            )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON ({exc.msg} at {exc.pos}): {text[:60]!r}") from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal longer than int() accepts
        raise ValueError(f"{what}: JSON that cannot be read: {exc}"[:300]) from exc


def is_number(value: Any) -> bool:
    """An int or float from JSON; booleans and numeric strings ("0.01") are not numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_stamp_ns(body: dict, key: str, what: str, default: int | None = None) -> int:
    """A nanosecond stamp at ``body[key]``, an integer in [0, 2**63) (``default`` when absent, if given)."""
    if key not in body and default is not None:
        return default
    return require_int64(body, key, what, unit=" (ns)")


def require_int64(body: dict, key: str, what: str, unit: str = "") -> int:
    """An integer in [0, 2**63) at ``body[key]`` (what a stamp, an index or a generator's seed can hold)."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < INT64_LIMIT:
        raise ValueError(f"{what}: field '{key}' is {value!r:.60}; expected an integer in [0, 2**63){unit}")
    return value


def check_instruction(text: str, max_chars: int = MAX_INSTRUCTION_CHARS) -> str:
    """A /vla/instruction text: returned as is when it holds at most ``max_chars`` characters."""
    if len(text) > max_chars:
        raise ValueError(
            f"instruction: {len(text)} characters, more than the limit of {max_chars}: {text[:40]!r}"
        )
    return text


# --- /vla/episode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeEvent:
    """An episode event: ``event`` is "start", "end" or "done"; ``stamp_ns`` is 0 when not sent."""

    event: str
    stamp_ns: int = 0
    seed: int | None = None
    body: dict = field(default_factory=dict, compare=False)


def decode_episode_event(text: str | bytes, max_bytes: int = MAX_EPISODE_EVENT_BYTES) -> EpisodeEvent:
    """Parse and validate a /vla/episode message."""
    what = "episode event"
    body = load_bounded_json(text, what=what, max_bytes=max_bytes)
    if not isinstance(body, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(body).__name__}")
    event = body.get("event")
    if not isinstance(event, str):
        raise ValueError(f"{what}: field 'event' is {event!r:.60}; expected a string such as 'start'")
    stamp_ns = require_stamp_ns(body, "stamp_ns", what, default=0)
    seed = None if body.get("seed") is None else require_int64(body, "seed", what)
    if body.get("episode") is not None:  # the episode's index (bags, evaluation): an int64 too
        require_int64(body, "episode", what)
    return EpisodeEvent(event=event, stamp_ns=stamp_ns, seed=seed, body=body)


# --- /sim/privileged_state ------------------------------------------------------------------------


def _finite_array(value: Any, shape: tuple[int, ...], what: str, key: str) -> None:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{what}: field '{key}' is not an array of numbers") from exc
    if array.shape != shape or array.dtype.kind not in "if":  # bools and strings give other kinds
        raise ValueError(
            f"{what}: field '{key}' has shape {list(array.shape)} of {array.dtype.kind!r}; "
            f"expected {list(shape)} numbers"
        )
    if not np.all(np.isfinite(array.astype(np.float64))):
        raise ValueError(f"{what}: field '{key}' holds a value that is not finite")


def decode_privileged_state(text: str | bytes, max_bytes: int = MAX_PRIVILEGED_STATE_BYTES) -> dict:
    """Parse and validate a /sim/privileged_state message; returns the state as a dict.

    Checked: an object; ``stamp_ns`` a non-negative integer when present; ``tool_pose`` a finite 4x4
    when present; ``objects`` a mapping of names to objects whose ``position`` is 3 finite numbers and
    ``size_m`` a positive number; ``target_object`` a string naming one of them when present;
    ``finger_m`` and ``release_z`` numbers when present. Other keys pass through unchecked.
    """
    what = "privileged state"
    state = load_bounded_json(text, what=what, max_bytes=max_bytes)
    if not isinstance(state, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(state).__name__}")
    if "stamp_ns" in state:
        require_stamp_ns(state, "stamp_ns", what)
    if "tool_pose" in state:
        _finite_array(state["tool_pose"], (4, 4), what, "tool_pose")
    objects = state.get("objects", {})
    if not isinstance(objects, dict):
        raise ValueError(f"{what}: field 'objects' is {type(objects).__name__}; expected an object")
    for name, obj in objects.items():
        if not isinstance(obj, dict):
            raise ValueError(f"{what}: objects[{name!r}] is {type(obj).__name__}; expected an object")
        _finite_array(obj.get("position"), (3,), what, f"objects[{name!r}].position")
        size = obj.get("size_m", 1.0)
        if not is_number(size) or not math.isfinite(size) or size <= 0:
            raise ValueError(f"{what}: objects[{name!r}].size_m is {size!r:.60}; expected a positive number")
    target = state.get("target_object")
    if target is not None and (not isinstance(target, str) or target not in objects):
        raise ValueError(f"{what}: field 'target_object' {target!r:.60} is not one of {sorted(objects)[:10]}")
    for key in ("finger_m", "release_z"):
        value = state.get(key)
        if value is not None and (not is_number(value) or not math.isfinite(value)):
            raise ValueError(f"{what}: field '{key}' is {value!r:.60}; expected a finite number")
    return state


# --- sensor_msgs/Image ----------------------------------------------------------------------------


def check_pixel_count(width: int, height: int, *, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an empty image or one of more than ``max_pixels`` before its data is touched."""
    if height <= 0 or width <= 0:
        raise ValueError(f"{what}: size {width}x{height} (width x height) is empty")
    if width * height > max_pixels:
        raise ValueError(
            f"{what}: {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        )


def image_to_pixels(
    msg_like: Any, *, what: str, encoding: str = "rgb8", max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """The HxWxC uint8 pixels of an Image-like message, after checking its fields against its data.

    ``msg_like`` needs ``height``, ``width``, ``step``, ``encoding`` and ``data``. The encoding must
    be ``encoding``; ``width * channels <= step``; ``data`` holds at least ``step * height`` bytes
    (a longer tail is ignored, as cv_bridge does); ``width * height <= max_pixels``. Returns a
    read-only view when rows carry no padding.
    """
    if msg_like.encoding != encoding:
        raise ValueError(f"{what}: encoding {msg_like.encoding!r}, expected {encoding!r}")
    channels = IMAGE_CHANNELS[encoding]
    height, width, step = int(msg_like.height), int(msg_like.width), int(msg_like.step)
    check_pixel_count(width, height, what=what, max_pixels=max_pixels)
    row_bytes = width * channels
    if step < row_bytes:
        raise ValueError(
            f"{what}: step {step} is less than width {width} x {channels} channels = {row_bytes} bytes"
        )
    data = np.frombuffer(msg_like.data, dtype=np.uint8)
    if data.size < step * height:
        raise ValueError(
            f"{what}: data has {data.size} bytes, fewer than step {step} x height {height} = {step * height}"
        )
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    return rows.reshape(height, width, channels)


# --- trajectory_msgs/JointTrajectory (the arm and gripper controllers' command topics) ---------------

MAX_TRAJECTORY_POINTS = 1000  # the actuation streams one point per message; a planner sends tens
JOINT_LIMIT_TOLERANCE = 1e-6  # float rounding of a target exactly at its limit


@dataclass(frozen=True)
class JointTrajectoryCommand:
    """A validated trajectory: times from start (s, increasing) and positions in the controller's order."""

    times_from_start_s: np.ndarray  # [points]
    positions: np.ndarray  # [points x joints]


def decode_joint_trajectory(
    joint_names: Any,
    points: Any,
    expected_names: tuple[str, ...],
    lower: Any,
    upper: Any,
    *,
    what: str,
    max_points: int = MAX_TRAJECTORY_POINTS,
) -> JointTrajectoryCommand:
    """Check a JointTrajectory as ros2_control's joint_trajectory_controller would, before it is used.

    ``points`` is a sequence of ``(time_from_start_s, positions)``. The joint names must be the
    controller's, each once, in any order; 1..``max_points`` points, each with one finite position
    per joint within ``[lower, upper]`` (in ``expected_names`` order) and a finite time from start
    >= 0 that increases strictly. Returns the positions reordered to ``expected_names``.
    """
    names = [str(name) for name in joint_names]
    if len(set(names)) != len(names) or sorted(names) != sorted(expected_names):
        raise ValueError(
            f"{what}: joint_names {names[:10]!r:.200} are not the controller's {list(expected_names)}"
        )
    if not 1 <= len(points) <= max_points:
        raise ValueError(f"{what}: {len(points)} points; expected 1..{max_points}")
    order = [names.index(name) for name in expected_names]
    low = np.asarray(lower, dtype=float).reshape(len(expected_names)) - JOINT_LIMIT_TOLERANCE
    high = np.asarray(upper, dtype=float).reshape(len(expected_names)) + JOINT_LIMIT_TOLERANCE
    times, rows, previous = [], [], -math.inf
    for k, (time_s, positions) in enumerate(points):
        if not is_number(time_s) or not math.isfinite(time_s) or time_s < 0 or time_s <= previous:
            raise ValueError(
                f"{what}: point {k}: time_from_start {time_s!r:.40} s is not finite, >= 0 and increasing"
            )
        row = [positions[i] for i in order] if len(positions) == len(names) else None
        if row is None or not all(is_number(v) and math.isfinite(v) for v in row):
            shown = f"{list(positions)[:10]!r:.200}"
            raise ValueError(f"{what}: point {k}: positions {shown} are not {len(names)} finite numbers")
        outside = [(expected_names[j], v) for j, v in enumerate(row) if not low[j] <= v <= high[j]]
        if outside:
            name, value = outside[0]
            j = expected_names.index(name)
            raise ValueError(
                f"{what}: point {k}: {name} {value:.4f} is outside its limits "
                f"[{low[j] + JOINT_LIMIT_TOLERANCE:.4f}, {high[j] - JOINT_LIMIT_TOLERANCE:.4f}]"
            )
        times.append(float(time_s))
        rows.append([float(v) for v in row])
        previous = time_s
    return JointTrajectoryCommand(np.array(times), np.array(rows))


# --- sensor_msgs/JointState ------------------------------------------------------------------------


def joint_positions(names: Any, positions: Any, wanted: tuple[str, ...], *, what: str) -> np.ndarray:
    """The positions of ``wanted`` joints (in that order) from a JointState's names and positions.

    Any order, extra joints ignored; refused: a name/position count mismatch, a wanted joint
    missing, a position that is not a finite number.
    """
    names = [str(name) for name in names]
    values = list(positions)
    if len(values) != len(names):
        raise ValueError(f"{what}: {len(names)} names but {len(values)} positions")
    index = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)
    missing = [name for name in wanted if name not in index]
    if missing:
        raise ValueError(f"{what}: joint(s) {missing} missing")
    picked = [values[index[name]] for name in wanted]
    if not all(is_number(v) and math.isfinite(v) for v in picked):
        raise ValueError(f"{what}: a position is not a finite number: {picked!r:.200}")
    return np.array(picked, dtype=np.float64)
