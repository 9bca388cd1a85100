"""Fuzzed messages for the soak: hypothesis strategies per message kind the sim graph subscribes to.

Pure (no rclpy): every strategy yields a :class:`FuzzMessage`, a plain description (fields, bytes,
text) that the soak node turns into a ROS message. Stamps are offsets from the graph's "now" (or
absolute zero) and JSON bodies leave ``stamp_ns`` to :func:`render_text`, so a batch drawn ahead of
time is still fresh when it is published. Each kind mixes well-formed messages with labelled
malformations; ``well_formed`` says which. The arm and gripper command kinds are malformed only:
the sim must reject every one of them (a well-formed command there would bypass actuation's safety).

The sizes here are this module's own, not the nodes' limits: the fuzzer shares no validation code
with what it tests. A stream is reproducible: :func:`draw_batch` with the same kind, seed and count
gives the same messages.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from PIL import Image as PilImage

from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAMES

STAMP_NOW = "now"  # a stamp at the graph's time plus ``stamp_offset_s``
STAMP_ZERO = "zero"  # header stamp 0 (ROS: "no stamp")
IMAGE_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
UNSUPPORTED_ENCODINGS = ("yuv422", "16UC1", "32FC1", "bayer_rggb8", "", "rgb8 ", "RGB8")
JOINT_NAMES = (*ARM_JOINT_NAMES, *FINGER_JOINT_NAMES)  # what the sim's joint states carry
ACTION_DIMS = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
ACTION_SCHEMA = "vla_stack/action_chunk/v1"
STEP_DT_S = 0.2  # the graph's control period (config/control.yaml: 5 Hz)
HUGE_TEXT_CHARS = (10_000, 200_000)  # an instruction far longer than any task sentence
HUGE_CHUNK_STEPS = (1_200, 4_000)  # rows: far beyond any policy's chunk, still quick to send
HUGE_JSON_BYTES = (600_000, 1_500_000)  # padding that makes a message far larger than it should be
NEST_DEPTH = (20, 3_000)  # JSON arrays nested this deep (Python's json recursion limit is ~1000)
OVERSIZED_FRAME = (2_000, 1_300)  # width, height of a real mono8 frame over two megapixels
LYING_DIMENSIONS = (100_000, 100_000)  # a header that claims 10 gigapixels over a few bytes of data


@dataclass(frozen=True)
class FuzzMessage:
    """One fuzzed message: its kind (which topics), what it is (label) and its fields."""

    kind: str
    label: str
    well_formed: bool
    fields: dict = field(default_factory=dict)


def _msg(kind: str, label: str, well_formed: bool, **fields: object) -> FuzzMessage:
    return FuzzMessage(kind, label, well_formed, dict(fields))


def stamp_ns(message: FuzzMessage, now_ns: int) -> int:
    """The header (or JSON) stamp for ``message`` published at ``now_ns``; never negative. A stamp in
    the past stays in the past when the clock is younger than the offset (a sim's first minute): 1 ns,
    never 0, which ROS reads as "now" (the sim followed such an "ended_in_the_past" arm command)."""
    if message.fields.get("stamp", STAMP_NOW) == STAMP_ZERO:
        return 0
    offset_ns = int(round(float(message.fields.get("stamp_offset_s", 0.0)) * 1e9))
    return max(1 if offset_ns < 0 else 0, now_ns + offset_ns)


def render_text(message: FuzzMessage, now_ns: int) -> str:
    """The std_msgs/String payload: ``text`` as is, or ``body`` as JSON with its stamp filled in."""
    if "text" in message.fields:
        return message.fields["text"]
    body = dict(message.fields["body"])
    if "stamp_ns" in body and body["stamp_ns"] is None:
        body["stamp_ns"] = stamp_ns(message, now_ns)
    return message.fields.get("prefix", "") + json.dumps(body) + message.fields.get("suffix", "")


def _pattern(n_bytes: int, content_seed: int) -> bytes:
    """Deterministic pixel bytes (drawn as a seed, not as bytes: hypothesis is slow on megabytes)."""
    return np.random.default_rng(content_seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()


def _nested(depth: int) -> str:
    return "[" * depth + "0.0" + "]" * depth


# --- camera frames (sensor_msgs/Image) ------------------------------------------------------------

_sizes = st.tuples(st.integers(1, 640), st.integers(1, 480))
_content = st.integers(0, 2**31 - 1)
_encodings = st.sampled_from(sorted(IMAGE_CHANNELS))


def _frame(label: str, width: int, height: int, encoding: str, content: int, **extra: object) -> FuzzMessage:
    channels = IMAGE_CHANNELS.get(encoding, 3)
    step = width * channels
    fields: dict = {"width": width, "height": height, "encoding": encoding, "step": step}
    fields["data"] = _pattern(step * height, content)
    fields.update(extra)
    return FuzzMessage("image", label, label in ("valid", "frozen"), fields)


def _lengthened(message: FuzzMessage, delta: int) -> FuzzMessage:
    data = message.fields["data"]
    data = data[:delta] if delta < 0 else data + bytes(delta)
    return FuzzMessage("image", "data_length_mismatch", False, {**message.fields, "data": data})


def image_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Raw camera frames: varied sizes and encodings, and every way a frame can be wrong."""
    valid = st.builds(lambda size, enc, c: _frame("valid", *size, enc, c), _sizes, _encodings, _content)
    # The same content every time, under fresh stamps (a small jitter, so that hypothesis, which
    # never repeats an example within a batch, can draw it more than once).
    frozen = st.builds(
        lambda jitter: _frame("frozen", 64, 48, "rgb8", 0, stamp_offset_s=jitter), st.floats(-0.02, 0.0)
    )
    mismatch = st.builds(
        _lengthened,
        valid,
        st.one_of(st.integers(-5000, -1), st.integers(1, 5000)),
    )
    bad_step = st.builds(
        lambda m, cut: FuzzMessage(
            "image", "step_too_small", False, {**m.fields, "step": max(0, m.fields["step"] - cut)}
        ),
        valid.filter(lambda m: m.fields["step"] > 1),
        st.integers(1, 64),
    )
    bad_encoding = st.builds(
        lambda size, enc, c: _frame("bad_encoding", *size, enc, c),
        _sizes,
        st.sampled_from(UNSUPPORTED_ENCODINGS),
        _content,
    )
    stamps = st.builds(
        lambda m, which, offset: FuzzMessage(
            "image",
            f"{which}_stamp",
            False,
            {**m.fields, **({"stamp": STAMP_ZERO} if which == "zero" else {"stamp_offset_s": offset})},
        ),
        valid,
        st.sampled_from(["zero", "future", "past"]),
        st.floats(5.0, 120.0),
    ).map(_signed_past)
    lying = st.builds(
        lambda c: _msg(
            "image",
            "huge_dimensions",
            False,
            width=LYING_DIMENSIONS[0],
            height=LYING_DIMENSIONS[1],
            encoding="rgb8",
            step=LYING_DIMENSIONS[0] * 3,
            data=_pattern(1024, c),
        ),
        _content,
    )
    oversized = st.builds(lambda c: _frame("oversized", *OVERSIZED_FRAME, "mono8", c), _content)
    empty = st.builds(
        lambda enc: _msg("image", "empty", False, width=0, height=0, encoding=enc, step=0, data=b""),
        _encodings,
    )
    return st.one_of(valid, frozen, mismatch, bad_step, bad_encoding, stamps, lying, oversized, empty)


def _signed_past(message: FuzzMessage) -> FuzzMessage:
    """A past stamp lies before now: the drawn offset is a magnitude."""
    if message.label != "past_stamp":
        return message
    offset = -abs(float(message.fields["stamp_offset_s"]))
    return FuzzMessage(message.kind, message.label, False, {**message.fields, "stamp_offset_s": offset})


# --- compressed camera frames (sensor_msgs/CompressedImage) -----------------------------------------


def _jpeg(width: int, height: int, content: int) -> bytes:
    pixels = np.frombuffer(_pattern(width * height * 3, content), np.uint8).reshape(height, width, 3)
    buffer = io.BytesIO()
    PilImage.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _compressed(label: str, data: bytes, fmt: str = "jpeg") -> FuzzMessage:
    return _msg("compressed_image", label, label == "valid_jpeg", format=fmt, data=data)


def _overwrite_middle(data: bytes) -> bytes:
    third = len(data) // 3
    return data[:third] + bytes(len(data) - 2 * third) + data[len(data) - third :]


def compressed_image_strategy() -> st.SearchStrategy[FuzzMessage]:
    """JPEG frames: valid, truncated, the middle third overwritten, not a JPEG, an unknown format."""
    jpeg = st.builds(_jpeg, st.integers(8, 320), st.integers(8, 240), _content)
    return st.one_of(
        jpeg.map(lambda d: _compressed("valid_jpeg", d)),
        st.builds(
            lambda d, keep: _compressed("truncated", d[: max(1, int(len(d) * keep))]),
            jpeg,
            st.floats(0.05, 0.9),
        ),
        jpeg.map(lambda d: _compressed("middle_overwritten", _overwrite_middle(d))),
        st.builds(lambda c: _compressed("not_an_image", _pattern(2048, c)), _content),
        jpeg.map(lambda d: _compressed("unknown_format", d, fmt="bmp; xyz")),
    )


# --- /vla/instruction ---------------------------------------------------------------------------


def instruction_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Instruction strings: plain, empty, huge, any unicode, control characters."""
    plain = st.text(st.characters(codec="ascii", categories=["L", "N", "Zs"]), min_size=1, max_size=80)
    return st.one_of(
        plain.map(lambda t: _msg("instruction", "valid", True, text=t)),
        st.just(_msg("instruction", "empty", False, text="")),
        st.builds(
            lambda n, c: _msg("instruction", "huge", False, text=c * n),
            st.integers(*HUGE_TEXT_CHARS),
            st.sampled_from("ab漢🙂"),
        ),
        st.text(min_size=1, max_size=200).map(lambda t: _msg("instruction", "unicode", False, text=t)),
        st.text(st.characters(codec="ascii", categories=["Cc"]), min_size=1, max_size=50).map(
            lambda t: _msg("instruction", "control_chars", False, text=t)
        ),
    )


# --- /vla/action --------------------------------------------------------------------------------

_finite_small = st.floats(-0.05, 0.05, allow_nan=False)
_extreme = st.sampled_from([1e300, -1e300, 1e38, -1e38, 5e-324, -5e-324, 1e6, -1e6, 0.0])


def _action_body(rows: list[list]) -> dict:
    return {
        "schema": ACTION_SCHEMA,
        "stamp_ns": None,
        "policy": "soak_fuzz",
        "space": "bridge_ee_delta",
        "dims": list(ACTION_DIMS),
        "step_dt_s": STEP_DT_S,
        "kind": "continuous",
        "terminate": False,
        "inference_ms": 0.0,
        "values": rows,
    }


def _action(label: str, rows: list[list], offset_s: float = 0.0, **changes: object) -> FuzzMessage:
    body = {**_action_body(rows), **changes}
    return _msg("action", label, label in ("valid", "extreme_finite"), body=body, stamp_offset_s=offset_s)


def _chunk(cells: st.SearchStrategy, max_steps: int = 8) -> st.SearchStrategy[list[list]]:
    return st.lists(
        st.lists(cells, min_size=len(ACTION_DIMS), max_size=len(ACTION_DIMS)), min_size=1, max_size=max_steps
    )


def _poisoned(rows: list[list], value: object, where: int) -> list[list]:
    out = [list(r) for r in rows]
    out[where % len(out)][where % len(ACTION_DIMS)] = value
    return out


def action_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Action chunks: valid small deltas, extreme but finite values, NaN/Inf, strings, booleans,
    deep nesting, far too many steps or bytes, wrong dims, stale or future stamps, not JSON."""
    rows = _chunk(_finite_small)
    where = st.integers(0, 100)
    return st.one_of(
        rows.map(lambda r: _action("valid", r)),
        _chunk(_extreme).map(lambda r: _action("extreme_finite", r)),
        st.builds(
            lambda r, v, w: _action("non_finite", _poisoned(r, v, w)),
            rows,
            st.sampled_from([math.nan, math.inf, -math.inf]),
            where,
        ),
        st.builds(lambda r, w: _action("numeric_string", _poisoned(r, "0.01", w)), rows, where),
        st.builds(lambda r, v, w: _action("boolean", _poisoned(r, v, w)), rows, st.booleans(), where),
        st.builds(lambda r, w: _action("null_value", _poisoned(r, None, w)), rows, where),
        st.integers(*NEST_DEPTH).map(lambda d: _msg("action", "nested", False, text=_nested(d))),
        st.builds(
            lambda d: _action("nested_values", [], values=json.loads(_nested(min(d, 900)))),
            st.integers(3, 900),
        ),
        st.integers(*HUGE_CHUNK_STEPS).map(lambda n: _action("huge_steps", [[0.001] * 7] * n)),
        st.integers(*HUGE_JSON_BYTES).map(lambda n: _action("huge_bytes", [[0.0] * 7], policy="x" * n)),
        rows.map(lambda r: _action("wrong_dims", [row[:6] for row in r], dims=list(ACTION_DIMS[:6]))),
        rows.map(lambda r: _action("ragged", [*r, [0.0]])),
        st.builds(lambda r, s: _action("stale_stamp", r, -s), rows, st.floats(1.0, 100.0)),
        st.builds(lambda r, s: _action("future_stamp", r, s), rows, st.floats(1.0, 100.0)),
        rows.map(lambda r: _action("wrong_step_dt", r, step_dt_s=0.1)),
        rows.map(lambda r: _action("wrong_space", r, space="joint_position")),
        st.builds(
            lambda r, v: _action("bad_stamp_type", r, stamp_ns=v),
            rows,
            st.sampled_from(["1", -5, 1.5, True, None, []]),
        ).map(_fixed_stamp),
        _not_json("action"),
        st.sampled_from(["[]", "null", "42", '"chunk"', "{}"]).map(
            lambda t: _msg("action", "not_an_object", False, text=t)
        ),
    )


def _fixed_stamp(message: FuzzMessage) -> FuzzMessage:
    """A body whose stamp_ns is deliberately wrong keeps it: a None is sent as JSON null."""
    body = dict(message.fields["body"])
    if body["stamp_ns"] is None:
        return FuzzMessage(message.kind, message.label, False, {"text": json.dumps(body)})
    return message


# --- /vla/episode -------------------------------------------------------------------------------


def episode_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Episode events: valid starts and ends (stamped now), and malformed JSON of every kind."""
    seeds = st.integers(0, 2**31 - 1)
    start = st.builds(
        lambda s: _msg(
            "episode",
            "valid_start",
            True,
            body={"event": "start", "episode": 0, "seed": s, "instruction": "soak", "stamp_ns": None},
        ),
        seeds,
    )
    end = st.builds(
        lambda s, ok: _msg(
            "episode",
            "valid_end",
            True,
            body={"event": "end", "episode": 0, "seed": s, "success": ok, "steps": 1, "instruction": "soak"},
        ),
        seeds,
        st.booleans(),
    )
    bad_field = st.builds(
        lambda key, value: _msg(
            "episode", f"bad_{key}", False, text=json.dumps({"event": "start", key: value})
        ),
        st.sampled_from(["stamp_ns", "seed"]),
        st.sampled_from(["12", -1, 1.5, True, [], {}, 10**40]),
    )
    return st.one_of(
        start,
        end,
        bad_field,
        st.sampled_from([None, 7, [], "start"]).map(
            lambda e: _msg("episode", "bad_event", False, text=json.dumps({"event": e}))
        ),
        _not_json("episode"),
        st.sampled_from(["[]", "null", "3", '"start"']).map(
            lambda t: _msg("episode", "not_an_object", False, text=t)
        ),
        st.integers(*NEST_DEPTH).map(lambda d: _msg("episode", "nested", False, text=_nested(d))),
        st.integers(*HUGE_JSON_BYTES).map(
            lambda n: _msg("episode", "huge", False, text=json.dumps({"event": "start", "pad": "x" * n}))
        ),
    )


def _not_json(kind: str) -> st.SearchStrategy[FuzzMessage]:
    """Text that opens an object and never parses ("{" + "}" would: such draws are left out)."""
    return (
        st.text(max_size=100)
        .map(lambda t: "{" + t)
        .filter(lambda text: not _parses(text))
        .map(lambda text: _msg(kind, "not_json", False, text=text))
    )


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# --- /sim/privileged_state ----------------------------------------------------------------------

_position = st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=3, max_size=3)


def _state(objects: dict, **extra: object) -> dict:
    return {"objects": objects, "target_object": next(iter(objects), None), "stamp_ns": None, **extra}


def privileged_state_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Privileged sim state: plausible states stamped now, and malformed ones."""
    objects = st.dictionaries(
        st.sampled_from(["red_cube", "green_cube", "blue_cube", "bowl"]),
        st.builds(lambda p, s: {"position": p, "size_m": s}, _position, st.floats(0.01, 0.08)),
        min_size=1,
        max_size=3,
    )
    valid = objects.map(lambda o: _msg("privileged_state", "valid", True, body=_state(o)))

    def broken(label: str, change: Callable[[dict], dict]) -> st.SearchStrategy[FuzzMessage]:
        return objects.map(lambda o: _msg("privileged_state", label, False, body=change(_state(o))))

    first = lambda s: next(iter(s["objects"]))  # noqa: E731
    return st.one_of(
        valid,
        broken("nan_position", lambda s: {**s, "objects": {first(s): {"position": [math.nan, 0.0, 0.0]}}}),
        broken("wrong_shape", lambda s: {**s, "objects": {first(s): {"position": [0.1, 0.2]}}}),
        broken("string_position", lambda s: {**s, "objects": {first(s): {"position": ["0.1", "0", "0"]}}}),
        broken("unknown_target", lambda s: {**s, "target_object": "unicorn"}),
        broken("objects_not_a_map", lambda s: {**s, "objects": [1, 2, 3]}),
        broken("bad_tool_pose", lambda s: {**s, "tool_pose": [[1.0, 0.0], [math.inf, 1.0]]}),
        broken("negative_stamp", lambda s: {**s, "stamp_ns": -5}),
        _not_json("privileged_state"),
        st.sampled_from(["[]", "null", "1"]).map(
            lambda t: _msg("privileged_state", "not_an_object", False, text=t)
        ),
        st.integers(*NEST_DEPTH).map(lambda d: _msg("privileged_state", "nested", False, text=_nested(d))),
        st.integers(*HUGE_JSON_BYTES).map(
            lambda n: _msg("privileged_state", "huge", False, text=json.dumps({"pad": "x" * n}))
        ),
    )


# --- joint states (malformed only) ----------------------------------------------------------------


def _joints(label: str, names: list[str], positions: list[float]) -> FuzzMessage:
    return _msg("joint_state", label, False, names=list(names), positions=[float(p) for p in positions])


def joint_state_strategy() -> st.SearchStrategy[FuzzMessage]:
    """Joint states a driver must never be believed on: NaN, Inf, -pi for every joint (a read
    failure), wrong names, wrong sizes. None is well-formed: a plausible but false joint state is a
    lie no validation can see, and the soak judges the stack, not a liar."""
    n = len(JOINT_NAMES)
    real = st.lists(st.floats(-1.0, 1.0), min_size=n, max_size=n)
    names = list(JOINT_NAMES)
    return st.one_of(
        st.just(_joints("nan_all", names, [math.nan] * n)),
        st.builds(lambda p, k: _joints("nan_one", names, _set(p, k, math.nan)), real, st.integers(0, n - 1)),
        st.builds(
            lambda p, k, v: _joints("inf_one", names, _set(p, k, v)),
            real,
            st.integers(0, n - 1),
            st.sampled_from([math.inf, -math.inf]),
        ),
        st.just(_joints("minus_pi_all", names, [-math.pi] * n)),
        st.builds(lambda p: _joints("wrong_names", [f"joint_{i}" for i in range(n)], p), real),
        st.builds(lambda p, k: _joints("short", names, p[:k]), real, st.integers(0, n - 1)),
        st.builds(
            lambda p, extra: _joints("long", names, p + extra),
            real,
            st.lists(st.floats(-1, 1), min_size=1, max_size=4),
        ),
        st.builds(
            lambda p, k: _joints("missing_name", names[:k], p), real, st.integers(0, len(ARM_JOINT_NAMES) - 1)
        ),
    )


def _set(values: list[float], index: int, value: float) -> list[float]:
    out = list(values)
    out[index] = value
    return out


# --- the sim's arm and gripper commands (malformed only) ------------------------------------------


def _trajectory(
    kind: str, label: str, names: list[str], points: list[tuple[float, list[float]]], **extra
) -> FuzzMessage:
    return _msg(
        kind, label, False, names=list(names), points=[(float(t), list(p)) for t, p in points], **extra
    )


def trajectory_strategy(kind: str, joint_names: tuple[str, ...]) -> st.SearchStrategy[FuzzMessage]:
    """JointTrajectory commands the sim's controller must reject: wrong names, no points, NaN, wrong
    sizes, times that do not increase, a trajectory that ended long ago."""
    n = len(joint_names)
    names = list(joint_names)
    pose = st.lists(st.floats(-0.3, 0.3), min_size=n, max_size=n)
    return st.one_of(
        st.builds(lambda p: _trajectory(kind, "wrong_names", [f"{j}_x" for j in names], [(0.1, p)]), pose),
        st.just(_trajectory(kind, "no_points", names, [])),
        st.builds(
            lambda p, k: _trajectory(kind, "nan_position", names, [(0.1, _set(p, k, math.nan))]),
            pose,
            st.integers(0, n - 1),
        ),
        st.builds(lambda p: _trajectory(kind, "wrong_size", names, [(0.1, p + [0.0])]), pose),
        st.builds(
            lambda p, q: _trajectory(kind, "non_increasing_time", names, [(0.2, p), (0.2, q)]), pose, pose
        ),
        st.builds(
            lambda p, s: _trajectory(kind, "ended_in_the_past", names, [(0.1, p)], stamp_offset_s=-s),
            pose,
            st.floats(30.0, 100.0),
        ),
    )


# --- streams --------------------------------------------------------------------------------------

STRATEGIES: dict[str, Callable[[], st.SearchStrategy[FuzzMessage]]] = {
    "image": image_strategy,
    "compressed_image": compressed_image_strategy,
    "instruction": instruction_strategy,
    "action": action_strategy,
    "episode": episode_strategy,
    "privileged_state": privileged_state_strategy,
    "joint_state": joint_state_strategy,
    "arm_command": lambda: trajectory_strategy("arm_command", ARM_JOINT_NAMES),
    "gripper_command": lambda: trajectory_strategy("gripper_command", FINGER_JOINT_NAMES[:1]),
}


def draw_batch(kind: str, batch_seed: int, count: int) -> list[FuzzMessage]:
    """``count`` (or fewer, if hypothesis exhausts the strategy) messages of ``kind``, the same for
    the same seed. Runs hypothesis's generate phase only: no database, no shrinking, no deadline."""
    if kind not in STRATEGIES:
        raise ValueError(f"fuzz kind '{kind}' is unknown; kinds: {', '.join(STRATEGIES)}")
    drawn: list[FuzzMessage] = []

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @seed(batch_seed)
    @given(STRATEGIES[kind]())
    def collect(message: FuzzMessage) -> None:
        drawn.append(message)

    collect()
    return drawn
