"""load_bounded_json's depth and container checks against the plain definition they shortcut (the
regular expression and cumulative sum it used before): the same result or the same error for any
text (hypothesis), valid JSON or not."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_common.inbound import json_depth, load_bounded_json

_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]")


def reference_brackets(text: str) -> str:
    return _NOT_BRACKET.sub("", _LITERAL.sub('""', text))


def reference_depth(text: str) -> int:
    brackets = reference_brackets(text)
    if not brackets:
        return 0
    steps = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    return int(np.cumsum(np.where((steps == ord("[")) | (steps == ord("{")), 1, -1)).max())


def reference_load(text: str, max_depth: int, max_containers: int | None):
    depth = reference_depth(text)
    if depth > max_depth:
        raise ValueError(f"m: JSON nested {depth} levels deep, more than the limit of {max_depth}")
    brackets = reference_brackets(text)
    if max_containers is not None and brackets.count("[") + brackets.count("{") > max_containers:
        raise ValueError(
            f"m: {brackets.count('[') + brackets.count('{')} JSON arrays/objects, "
            f"more than the limit of {max_containers}"
        )
    try:
        return json.loads(text)
    except ValueError:
        return "not JSON"


def outcome(load, text: str, max_depth: int, max_containers: int | None):
    try:
        return ("value", load(text, max_depth, max_containers))
    except ValueError as exc:
        message = str(exc)
        return ("not JSON",) if "not JSON" in message or "cannot be read" in message else ("error", message)


def bounded(text: str, max_depth: int, max_containers: int | None):
    return load_bounded_json(
        text, what="m", max_bytes=1 << 20, max_depth=max_depth, max_containers=max_containers
    )


def normalised(result):
    return ("not JSON",) if result == ("value", "not JSON") else result


TEXT = st.text(alphabet='[]{}"\\\n ,:a1', max_size=60) | st.recursive(
    st.none() | st.integers() | st.text(alphabet='[]{}"\\ a', max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet="[]{}a", max_size=3), inner),
    max_leaves=30,
).map(json.dumps)


@settings(max_examples=1500, deadline=None)
@given(TEXT, st.integers(-1, 8), st.none() | st.integers(0, 8))
def test_the_same_acceptance_and_errors_as_the_plain_definition(text, max_depth, max_containers):
    assert outcome(bounded, text, max_depth, max_containers) == normalised(
        outcome(reference_load, text, max_depth, max_containers)
    )
    assert json_depth(text) == reference_depth(text)


@pytest.mark.parametrize("depth", [0, 1, 15, 16, 17, 2000])
def test_nesting_at_and_beyond_the_limit(depth: int):
    text = "[" * depth + "0" + "]" * depth
    if depth <= 16:
        assert bounded(text, 16, None) == json.loads(text)
    else:
        with pytest.raises(ValueError, match=f"nested {depth} levels deep, more than the limit of 16"):
            bounded(text, 16, None)


def test_a_long_chunk_needs_the_bracket_scan_and_passes_it():
    rows = [[0.1] * 7 for _ in range(50)]
    text = json.dumps({"dims": ["[a", "b]"], "values": rows})  # 54 opening brackets, 53 outside strings
    assert bounded(text, 3, 53)["values"] == rows
    with pytest.raises(ValueError, match="nested 3 levels deep, more than the limit of 2"):
        bounded(text, 2, None)
    with pytest.raises(ValueError, match="53 JSON arrays/objects, more than the limit of 52"):
        bounded(text, 3, 52)
