import json
import random
from types import SimpleNamespace

import numpy as np
import pytest

from vla_common.inbound import (
    MAX_EPISODE_EVENT_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_INSTRUCTION_CHARS,
    check_instruction,
    check_pixel_count,
    decode_episode_event,
    decode_privileged_state,
    image_to_pixels,
    json_depth,
    load_bounded_json,
)


def test_json_depth_counts_arrays_and_objects_but_not_strings():
    assert json_depth('{"a": [[1], {"b": []}]}') == 4  # {, [, {, []
    assert json_depth('{"a": "[[[[{{{{"}') == 1
    assert json_depth('"no brackets"') == 0


def test_load_bounded_json_names_each_failure():
    with pytest.raises(ValueError, match="m: not JSON"):
        load_bounded_json("hello", what="m", max_bytes=100)
    with pytest.raises(ValueError, match="m: 101 bytes, more than the limit of 100"):
        load_bounded_json("1" * 101, what="m", max_bytes=100)
    with pytest.raises(ValueError, match="nested 40 levels deep"):
        load_bounded_json("[" * 40 + "]" * 40, what="m", max_bytes=1000)
    with pytest.raises(ValueError, match="not UTF-8"):
        load_bounded_json(b"\xff\xfe", what="m", max_bytes=100)
    assert load_bounded_json(b'{"a": 1}', what="m", max_bytes=100) == {"a": 1}
    with pytest.raises(ValueError, match="m: 3 JSON arrays/objects, more than the limit of 2"):
        load_bounded_json('[[1], {"a": "[[[["}]', what="m", max_bytes=100, max_containers=2)
    assert load_bounded_json('[[1], "[[[["]', what="m", max_bytes=100, max_containers=2) == [[1], "[[[["]


def _sim_start_event() -> str:
    # What vla_sim.sim_node publishes at an episode start.
    return json.dumps(
        {"event": "start", "episode": 2, "seed": 9, "family": "pick", "instruction": "x", "stamp_ns": 12}
    )


def test_the_largest_int64_seed_and_stamp_decode():
    event = decode_episode_event(
        '{"event": "start", "seed": 9223372036854775807, "stamp_ns": 9223372036854775807}'
    )
    assert (event.seed, event.stamp_ns) == (2**63 - 1, 2**63 - 1)


def test_episode_event_from_the_sim_decodes():
    event = decode_episode_event(_sim_start_event())
    assert (event.event, event.stamp_ns, event.seed) == ("start", 12, 9)
    assert event.body["instruction"] == "x"
    assert decode_episode_event('{"event": "done", "episodes": 3}').stamp_ns == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json at all", "episode event: not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"stamp_ns": 5}', "field 'event' is None"),
        ('{"event": "start", "stamp_ns": "12"}', "field 'stamp_ns' is '12'"),
        ('{"event": "start", "stamp_ns": -1}', "field 'stamp_ns' is -1"),
        ('{"event": "start", "seed": 1.5}', "field 'seed' is 1.5"),
        ('{"event": "start", "seed": true}', "field 'seed' is True"),
        # Generator.manual_seed raised on 10**40 in the Octo backend: bounded here, the range named.
        ('{"event": "start", "seed": 10000000000000000000000000000000000000000}', r"in \[0, 2\*\*63\)"),
        ('{"event": "start", "seed": 9223372036854775808}', "field 'seed' is 9223372036854775808"),
        ('{"event": "start", "seed": -1}', "field 'seed' is -1"),
        ('{"event": "start", "stamp_ns": 9223372036854775808}', "field 'stamp_ns' is 9223372036854775808"),
        ('{"event": "start", "episode": -3}', "field 'episode' is -3"),
        ('{"event": "start", "episode": 1e400}', "field 'episode' is inf"),
        ('{"event": "start", "episode": 100000000000000000000}', r"field 'episode' .*2\*\*63"),
        ('{"event": ' + "[" * 5000 + "]" * 5000 + "}", "nested 5001 levels"),
        ('{"event": "' + "x" * MAX_EPISODE_EVENT_BYTES + '"}', "more than the limit"),
    ],
)
def test_bad_episode_events_say_why(text, match):
    with pytest.raises(ValueError, match=match):
        decode_episode_event(text)


def _privileged() -> dict:
    return {
        "stamp_ns": 5,
        "tool_pose": np.eye(4).tolist(),
        "objects": {"cube": {"position": [0.1, 0.2, 0.03], "yaw": 0.0, "size_m": 0.04}},
        "target_object": "cube",
        "finger_m": 0.02,
        "release_z": None,
    }


def test_privileged_state_from_the_sim_decodes():
    state = decode_privileged_state(json.dumps(_privileged()))
    assert state["objects"]["cube"]["size_m"] == 0.04


@pytest.mark.parametrize(
    "change, match",
    [
        ({"stamp_ns": 1.5}, "stamp_ns"),
        ({"tool_pose": [[1, 0], [0, 1]]}, r"'tool_pose' has shape \[2, 2\]"),
        ({"tool_pose": [["1"] * 4] * 4}, "tool_pose"),
        ({"tool_pose": [[float("nan")] * 4] * 4}, "tool_pose' holds a value that is not finite"),
        ({"objects": []}, "field 'objects' is list"),
        ({"objects": {"cube": {"position": [0, 0]}}}, r"objects\['cube'\].position"),
        ({"objects": {"cube": {"position": [0, 0, 0], "size_m": "big"}}}, "size_m"),
        ({"target_object": "sphere"}, "'target_object' 'sphere' is not one of"),
        ({"finger_m": "0.02"}, "finger_m"),
    ],
)
def test_bad_privileged_states_say_why(change, match):
    state = _privileged()
    state.update(change)
    with pytest.raises(ValueError, match=match):
        decode_privileged_state(json.dumps(state))
    with pytest.raises(ValueError, match="privileged state: not JSON"):
        decode_privileged_state("{truncated")


def _image(height=2, width=3, step=None, encoding="rgb8", data=None):
    step = width * 3 if step is None else step
    data = bytes(range(step * height)) if data is None else data
    return SimpleNamespace(height=height, width=width, step=step, encoding=encoding, data=data)


def test_image_pixels_follow_the_rows_and_skip_padding():
    pixels = image_to_pixels(_image(step=10), what="cam")
    assert pixels.shape == (2, 3, 3)
    assert pixels[1, 0, 0] == 10 and pixels[1, 2, 2] == 18  # row 1 starts at byte step=10
    np.testing.assert_array_equal(image_to_pixels(_image(), what="cam").ravel(), np.arange(18))


@pytest.mark.parametrize(
    "image, match",
    [
        (_image(data=bytes(17)), r"cam: data has 17 bytes, fewer than step 9 x height 2 = 18"),
        (_image(step=8), r"step 8 is less than width 3 x 3 channels = 9"),
        (_image(encoding="bgr8"), r"encoding 'bgr8', expected 'rgb8'"),
        (_image(height=0, data=b""), "is empty"),
        (_image(height=MAX_IMAGE_PIXELS, width=2, data=b""), "more than the limit of"),
    ],
)
def test_bad_images_say_why(image, match):
    with pytest.raises(ValueError, match=match):
        image_to_pixels(image, what="cam")


def test_pixel_count_is_checked_from_the_size_alone():
    check_pixel_count(1920, 1200, what="cam")
    with pytest.raises(ValueError, match=r"cam: 3000x3000 = 9000000 pixels, more than the limit of 2304000"):
        check_pixel_count(3000, 3000, what="cam")


def _mutations(text: str, rng: random.Random):
    """Truncations, byte flips and type swaps of a valid message (a seeded, reproducible fuzz)."""
    for _ in range(300):
        cut = rng.randrange(len(text))
        yield text[:cut]
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice('[]{}",:0-9.eEtfnaIN\\x')
        yield "".join(chars)
    body = json.loads(text)
    for key in list(body):
        for junk in (None, True, "0.01", -1, 1e308, [], {}, [[1, 2]], "x" * 100):
            yield json.dumps({**body, key: junk})


@pytest.mark.parametrize(
    "decoder, valid",
    [
        (decode_episode_event, _sim_start_event()),
        (decode_privileged_state, json.dumps(_privileged())),
    ],
)
def test_decoders_raise_only_value_errors_on_fuzzed_input(decoder, valid):
    rng = random.Random(22)
    rejected = 0
    for text in _mutations(valid, rng):
        try:
            decoder(text)
        except ValueError:
            rejected += 1
    assert rejected > 100  # the fuzz does reach the checks


def test_instruction_length_is_bounded():
    assert check_instruction("put the spoon in the bowl") == "put the spoon in the bowl"
    with pytest.raises(ValueError, match=f"instruction: {MAX_INSTRUCTION_CHARS + 1} characters, more than"):
        check_instruction("x" * (MAX_INSTRUCTION_CHARS + 1))
