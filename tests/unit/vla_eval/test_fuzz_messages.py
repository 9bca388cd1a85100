"""The soak's fuzz strategies: each label is the malformation it names, and a seed fixes the stream."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image as PilImage

from vla_eval.fuzz_messages import (
    IMAGE_CHANNELS,
    STAMP_ZERO,
    STRATEGIES,
    FuzzMessage,
    compressed_image_strategy,
    draw_batch,
    image_strategy,
    render_text,
    stamp_ns,
)

FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
NOW_NS = 50_000_000_000


def _batch(kind: str, count: int = 60) -> list[FuzzMessage]:
    return draw_batch(kind, 1234, count)


def test_a_seed_fixes_the_stream_and_another_seed_changes_it():
    for kind in STRATEGIES:
        first, again = draw_batch(kind, 7, 15), draw_batch(kind, 7, 15)
        assert [(m.label, m.fields) for m in first] == [(m.label, m.fields) for m in again], kind
    labels = [m.fields for m in draw_batch("action", 7, 15)]
    assert labels != [m.fields for m in draw_batch("action", 8, 15)]


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="fuzz kind 'video' is unknown; kinds: image"):
        draw_batch("video", 0, 1)


def test_every_kind_mixes_labels_and_only_command_kinds_are_malformed_only():
    for kind in STRATEGIES:
        batch = _batch(kind)
        assert len({m.label for m in batch}) >= 4, (kind, {m.label for m in batch})
        assert all(m.kind == kind for m in batch)
        well_formed = [m for m in batch if m.well_formed]
        if kind in ("arm_command", "gripper_command", "joint_state"):
            assert not well_formed, kind
        else:
            assert well_formed, kind


@FEW
@given(image_strategy())
def test_image_labels_match_their_fields(message: FuzzMessage):
    f = message.fields
    expected = f["step"] * f["height"]
    if message.label in ("valid", "frozen"):
        assert message.well_formed and f["encoding"] in IMAGE_CHANNELS
        assert f["step"] == f["width"] * IMAGE_CHANNELS[f["encoding"]] and len(f["data"]) == expected
        assert f.get("stamp") != STAMP_ZERO and -0.02 <= f.get("stamp_offset_s", 0.0) <= 0.0
    elif message.label == "data_length_mismatch":
        assert len(f["data"]) != expected
    elif message.label == "step_too_small":
        assert f["step"] < f["width"] * IMAGE_CHANNELS[f["encoding"]]
    elif message.label == "bad_encoding":
        assert f["encoding"] not in IMAGE_CHANNELS
    elif message.label == "zero_stamp":
        assert stamp_ns(message, NOW_NS) == 0
    elif message.label == "future_stamp":
        assert stamp_ns(message, NOW_NS) >= NOW_NS + 5e9
    elif message.label == "past_stamp":
        assert stamp_ns(message, NOW_NS) <= NOW_NS - 5e9
    elif message.label == "huge_dimensions":
        assert f["width"] * f["height"] >= 1e9 and len(f["data"]) < expected
    elif message.label == "oversized":
        assert f["width"] * f["height"] > 2_500_000 and len(f["data"]) == expected
    else:
        assert message.label == "empty" and f["width"] == f["height"] == 0 and not f["data"]
    assert message.well_formed == (message.label in ("valid", "frozen"))


def test_frozen_frames_repeat_their_content():
    frozen = [m.fields["data"] for m in draw_batch("image", 3, 100) if m.label == "frozen"]
    assert len(frozen) >= 2 and len(set(frozen)) == 1


def _decodes(data: bytes) -> bool:
    try:
        with PilImage.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except OSError:
        return False


@FEW
@given(compressed_image_strategy())
def test_compressed_labels(message: FuzzMessage):
    data = message.fields["data"]
    if message.label == "valid_jpeg":
        assert message.fields["format"] == "jpeg" and _decodes(data)
    elif message.label == "truncated":
        assert data[:2] == b"\xff\xd8" or len(data) < 2
    elif message.label == "middle_overwritten":
        third = len(data) // 3
        assert data[:2] == b"\xff\xd8" and data[third : len(data) - third] == bytes(len(data) - 2 * third)
    elif message.label == "not_an_image":
        assert not _decodes(data)
    else:
        assert message.label == "unknown_format" and message.fields["format"] != "jpeg"


def _parsed(message: FuzzMessage):
    try:
        return json.loads(render_text(message, NOW_NS))
    except (json.JSONDecodeError, RecursionError):
        return None


def test_action_labels_are_the_malformations_they_name():
    seen = set()
    for message in draw_batch("action", 5, 150):
        seen.add(message.label)
        body = _parsed(message)
        label = message.label
        if label in ("valid", "extreme_finite"):
            values = np.asarray(body["values"], dtype=float)
            assert values.shape[1] == 7 and np.all(np.isfinite(values)) and body["stamp_ns"] == NOW_NS
            assert label == "extreme_finite" or np.abs(values).max() <= 0.05
        elif label == "non_finite":
            assert not np.all(np.isfinite(np.asarray(body["values"], dtype=float)))
        elif label == "numeric_string":
            assert any(isinstance(v, str) for row in body["values"] for v in row)
        elif label == "boolean":
            assert any(isinstance(v, bool) for row in body["values"] for v in row)
        elif label == "huge_steps":
            assert len(body["values"]) > 1000
        elif label == "huge_bytes":
            assert len(render_text(message, NOW_NS)) > 512 * 1024
        elif label == "nested":
            assert render_text(message, NOW_NS).startswith("[" * 20)
        elif label == "stale_stamp":
            assert body["stamp_ns"] <= NOW_NS - 1e9
        elif label == "future_stamp":
            assert body["stamp_ns"] >= NOW_NS + 1e9
        elif label == "not_json":
            assert body is None or not isinstance(body, dict)
        elif label == "bad_stamp_type":
            assert not (isinstance(body["stamp_ns"], int) and not isinstance(body["stamp_ns"], bool)) or (
                body["stamp_ns"] < 0
            )
    assert {"valid", "non_finite", "numeric_string", "boolean", "huge_steps", "nested"} <= seen, seen


def test_episode_starts_are_stamped_now_and_bad_json_is_bad():
    for message in _batch("episode", 80):
        body = _parsed(message)
        if message.label == "valid_start":
            assert body["event"] == "start" and body["stamp_ns"] == NOW_NS and isinstance(body["seed"], int)
        elif message.label == "valid_end":
            assert body["event"] == "end"
        elif message.label in ("not_json", "not_an_object", "nested"):
            assert not isinstance(body, dict)
        elif message.label == "huge":
            assert len(render_text(message, NOW_NS)) > 512 * 1024


def test_joint_states_are_all_unbelievable():
    for message in _batch("joint_state", 80):
        names, positions = message.fields["names"], message.fields["positions"]
        arm = positions[:6]
        broken = (
            len(names) != len(positions)
            or not all(math.isfinite(p) for p in positions)
            or all(p == -math.pi for p in arm)
            or names[:6] != ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]
        )
        assert broken, message


@pytest.mark.parametrize("kind", ["arm_command", "gripper_command"])
def test_commands_for_the_sim_are_all_rejectable(kind):
    joints = 6 if kind == "arm_command" else 1
    for message in _batch(kind, 60):
        points = message.fields["points"]
        times = [t for t, _ in points]
        rejectable = (
            message.label == "wrong_names"
            and all(name.endswith("_x") for name in message.fields["names"])
            or not points
            or any(len(p) != joints or not all(math.isfinite(v) for v in p) for _, p in points)
            or any(b <= a for a, b in zip(times, times[1:], strict=False))
            or stamp_ns(message, NOW_NS) + max(times) * 1e9 < NOW_NS - 1e9
        )
        assert rejectable, message


def test_a_stamp_in_the_past_is_never_zero_on_a_young_clock():
    """Zero is "now" to a trajectory controller: an "ended_in_the_past" arm command stamped 0 in a
    soak's first 30-100 s of sim time moved the sim's arm (seen as commands from a previous episode)."""
    young_ns = 5_000_000_000
    for message in _batch("arm_command", 60):
        if message.label == "ended_in_the_past":
            assert 0 < stamp_ns(message, young_ns) < young_ns


def test_instructions_cover_empty_huge_unicode_and_control_characters():
    batch = _batch("instruction", 100)
    by_label = {m.label: m.fields["text"] for m in batch}
    assert by_label.get("empty") == "" and len(by_label["huge"]) >= 10_000
    control = [m.fields["text"] for m in batch if m.label == "control_chars"]
    assert control and all(all(ord(c) < 32 or ord(c) == 127 for c in text) for text in control)


def test_privileged_states_valid_ones_are_stamped_and_finite():
    for message in _batch("privileged_state", 80):
        body = _parsed(message)
        if message.label == "valid":
            assert body["stamp_ns"] == NOW_NS and body["target_object"] in body["objects"]
            assert all(math.isfinite(v) for o in body["objects"].values() for v in o["position"])
        elif message.label == "nan_position":
            assert any(not math.isfinite(v) for o in body["objects"].values() for v in o["position"])


def test_render_keeps_a_deliberate_stamp_and_never_goes_negative():
    early = FuzzMessage(
        "action", "stale_stamp", False, {"body": {"stamp_ns": None}, "stamp_offset_s": -100.0}
    )
    assert json.loads(render_text(early, NOW_NS))["stamp_ns"] == 1  # still in the past; 0 reads as "now"
    kept = FuzzMessage("action", "bad_stamp_type", False, {"body": {"stamp_ns": "12"}})
    assert json.loads(render_text(kept, NOW_NS))["stamp_ns"] == "12"


@pytest.mark.parametrize("kind", ["action", "episode", "privileged_state"])
def test_not_json_text_never_parses(kind):
    """'{' + a drawn text was valid JSON when the text was '}' (a CI run drew it for an episode)."""
    drawn = [m for seed in range(6) for m in draw_batch(kind, seed, 80) if m.label == "not_json"]
    assert drawn, kind
    for message in drawn:
        with pytest.raises(ValueError):
            json.loads(render_text(message, NOW_NS))
