"""The arrival checks of a camera frame: stamps, size bounds, data, structure, frozen content."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest

from vla_perception.frame_gate import FrameGate, FrameLimits, Refusal, check_stamp, wire_fingerprint
from vla_perception.sync import ApproximateSync

MS = 1_000_000
S = 1_000_000_000
NOW = 1_000 * S
LIMITS = FrameLimits(
    max_age_ns=S // 2,
    max_future_ns=S // 2,
    frozen_after_ns=S,
    max_pixels=640 * 480,
    max_compressed_bytes=100_000,
)


@dataclass
class Raw:
    height: int = 48
    width: int = 64
    encoding: str = "rgb8"
    is_bigendian: int = 0
    step: int = 64 * 3
    data: bytes = field(
        default_factory=lambda: (
            np.random.default_rng().integers(0, 256, 48 * 64 * 3).astype(np.uint8).tobytes()
        )
    )


@dataclass
class Compressed:
    data: bytes
    format: str = "bgr8; jpeg compressed bgr8"


def jpeg(height: int = 48, width: int = 64, seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def admit(gate: FrameGate, msg, stamp_ns: int = NOW, now_ns: int = NOW, camera: str = "primary"):
    transport = "compressed" if isinstance(msg, Compressed) else "raw"
    return gate.admit(camera, transport, msg, stamp_ns, now_ns)


def test_a_good_frame_passes():
    gate = FrameGate(LIMITS)
    assert admit(gate, Raw()) is None
    assert admit(gate, Compressed(jpeg())) is None


@pytest.mark.parametrize(
    ("stamp_ns", "cause", "text"),
    [
        (0, "zero_stamp", "camera 'primary': zero stamp (header.stamp not set)"),
        (
            NOW + 30 * S,
            "future_stamp",
            "camera 'primary': stamp 30.000 s in the future (limit max_future_s=0.500)",
        ),
        (
            NOW - 2 * S,
            "old_stamp",
            "camera 'primary': frame older than the bound: 2.000 s old (limit max_image_age_s=0.500)",
        ),
    ],
)
def test_each_bad_stamp_is_named(stamp_ns, cause, text):
    refusal = admit(FrameGate(LIMITS), Raw(), stamp_ns=stamp_ns)
    assert refusal.cause == cause and refusal.reason.startswith(text), refusal


def test_stamps_within_the_bounds_pass_and_a_stopped_clock_skips_the_clock_checks():
    assert check_stamp("c", NOW + S // 2, NOW, LIMITS) is None
    assert check_stamp("c", NOW - S // 2, NOW, LIMITS) is None
    assert check_stamp("c", NOW + 30 * S, 0, LIMITS) is None  # sim clock not started
    assert check_stamp("c", 0, 0, LIMITS).cause == "zero_stamp"


def test_a_raw_frame_over_max_pixels_is_refused_before_its_data_is_read():
    huge = Raw(height=3000, width=3000, step=9000, data=b"")
    refusal = admit(FrameGate(LIMITS), huge)
    assert refusal == Refusal(
        "too_large",
        "camera 'primary': 3000x3000 = 9000000 pixels, more than the limit of 307200 (max_pixels)",
    )


def test_raw_data_longer_than_max_pixels_can_fill_is_refused():
    refusal = admit(FrameGate(LIMITS), Raw(data=bytes(640 * 480 * 4 + 1)))
    assert (
        refusal.cause == "too_large" and "more than max_pixels 307200 x 4 bytes per pixel" in refusal.reason
    )


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"data": bytes(100)}, "data has 100 bytes, fewer than step 192 x height 48"),
        ({"encoding": "yuv422"}, "encoding 'yuv422' is not supported"),
        ({"step": 10}, "step 10 is less than width 64"),
        ({"width": 0}, "camera 'primary': size 0x48 (width x height) is empty"),
    ],
)
def test_raw_data_that_does_not_match_its_fields_is_named(fields, text):
    refusal = admit(FrameGate(LIMITS), Raw(**fields))
    assert refusal.cause == "bad_data" and text in refusal.reason and "max_pixels" not in refusal.reason, (
        refusal
    )


def test_compressed_frames_over_the_byte_or_pixel_limits_are_refused_before_decoding():
    gate = FrameGate(LIMITS)
    refusal = admit(gate, Compressed(b"\xff\xd8\xff" + bytes(100_000)))
    assert refusal == Refusal(
        "too_large",
        "camera 'primary': compressed data has 100003 bytes, more than max_compressed_bytes 100000",
    )
    big = cv2.imencode(".jpg", np.zeros((1000, 1000, 3), np.uint8))[1].tobytes()  # small file, many pixels
    assert len(big) < 100_000
    refusal = admit(gate, Compressed(big))
    assert refusal.cause == "too_large"
    assert (
        "header declares: 1000x1000 = 1000000 pixels, more than the limit of 307200 (max_pixels)"
        in refusal.reason
    )


def test_compressed_data_of_the_wrong_kind_or_broken_structure_is_named():
    gate = FrameGate(LIMITS)
    assert admit(gate, Compressed(jpeg(), format="bgr8; webp compressed")).cause == "bad_data"
    assert admit(gate, Compressed(b"GIF89a" + bytes(100))).cause == "bad_data"
    data = jpeg()
    refusal = admit(gate, Compressed(data[: len(data) // 2]))
    assert refusal.cause == "corrupt" and "truncated JPEG" in refusal.reason


def test_a_frozen_camera_is_refused_after_frozen_after_s_and_recovers_when_content_changes():
    gate = FrameGate(LIMITS)
    frame = Raw()
    period = 33 * MS
    results = [admit(gate, frame, stamp_ns=NOW + i * period, now_ns=NOW + i * period) for i in range(40)]
    first = next(i for i, r in enumerate(results) if r is not None)
    assert first * period >= S and (first - 1) * period < S  # refused from 1 s of unchanged content on
    assert all(r is not None and r.cause == "frozen" for r in results[first:])
    assert results[first].reason.startswith(
        "camera 'primary': frozen: content unchanged for 1.023 s over 32 frames"
    )
    assert "(limit frozen_after_s=1.000)" in results[first].reason
    assert admit(gate, Raw(), stamp_ns=NOW + 40 * period, now_ns=NOW + 40 * period) is None  # new content


def test_cameras_freeze_independently_and_the_check_can_be_switched_off():
    gate = FrameGate(LIMITS)
    frame = Raw()
    for i in range(40):
        admit(gate, frame, stamp_ns=NOW + i * 33 * MS, now_ns=NOW + i * 33 * MS, camera="wrist")
    assert (
        admit(gate, frame, stamp_ns=NOW + 41 * 33 * MS, now_ns=NOW + 41 * 33 * MS, camera="primary") is None
    )
    off = FrameGate(FrameLimits(S, S, 0, 640 * 480, 100_000))
    assert all(
        admit(off, frame, stamp_ns=NOW + i * 100 * MS, now_ns=NOW + i * 100 * MS) is None for i in range(40)
    )


def test_the_same_frame_resent_with_its_stamp_is_not_frozen():
    gate = FrameGate(LIMITS)
    frame = Raw()
    assert all(admit(gate, frame, stamp_ns=NOW, now_ns=NOW + i * MS) is None for i in range(100))


def test_the_fingerprint_sees_noise_in_a_large_frame_and_costs_little():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, 1920 * 1200 * 3).astype(np.uint8)
    noisy = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    assert wire_fingerprint(image.tobytes()) == wire_fingerprint(bytes(image.tobytes()))
    assert wire_fingerprint(image.tobytes()) != wire_fingerprint(noisy.tobytes())


def _sampled_blocks(data: bytes, blocks: int = 64, block: int = 256) -> list[bytes]:
    """The fingerprint's sample, written out: evenly spaced blocks, the last ending at the end."""
    spacing = (len(data) - block) // (blocks - 1)
    first = len(data) - block - (blocks - 1) * spacing
    return [data[first + i * spacing : first + i * spacing + block] for i in range(blocks)]


@pytest.mark.parametrize("size", [16 * 1024 + 1, 640 * 480 * 3, 640 * 480 * 3 + 61, 1920 * 1200 * 3])
def test_the_fingerprint_hashes_evenly_spaced_blocks_that_span_the_frame(size: int):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    blocks = _sampled_blocks(data)
    assert data.find(blocks[0]) < 64 and data.endswith(blocks[-1])  # the sample spans the frame
    assert wire_fingerprint(data) == zlib.crc32(b"".join(blocks), size)
    for position in (size - 1, data.find(blocks[32]) + 100):  # the last byte, one in a middle block
        changed = bytearray(data)
        changed[position] ^= 0xFF
        assert wire_fingerprint(bytes(changed)) != wire_fingerprint(data)


def test_a_small_frame_is_hashed_whole_and_its_length_counts():
    data = bytes(range(256)) * 64  # 16 KiB: every byte hashed
    for position in range(0, len(data), 997):
        changed = bytearray(data)
        changed[position] ^= 1
        assert wire_fingerprint(bytes(changed)) != wire_fingerprint(data)
    assert wire_fingerprint(bytes(10)) != wire_fingerprint(bytes(11))


def test_a_frozen_large_frame_is_refused_and_a_noisy_one_never_is():
    rng = np.random.default_rng(3)
    scene = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    frozen, live = FrameGate(LIMITS), FrameGate(LIMITS)
    period = 100 * MS
    frozen_results, live_results = [], []
    for i in range(20):
        stamp = NOW + i * period
        frame = Raw(height=480, width=640, step=640 * 3, data=scene.tobytes())
        frozen_results.append(admit(frozen, frame, stamp_ns=stamp, now_ns=stamp))
        noisy = np.clip(scene + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8)  # sensor noise
        live_results.append(admit(live, Raw(480, 640, step=640 * 3, data=noisy.tobytes()), stamp, stamp))
    assert [r is not None and r.cause == "frozen" for r in frozen_results] == [False] * 10 + [True] * 10
    assert live_results == [None] * 20


@pytest.mark.parametrize(
    "limits",
    [
        {"max_age_ns": 0},
        {"max_pixels": 0},
        {"max_compressed_bytes": -1},
        {"max_future_ns": -1},
        {"frozen_after_ns": -5},
    ],
)
def test_limits_are_checked(limits):
    values = {**LIMITS.__dict__, **limits}
    with pytest.raises(ValueError, match=next(iter(limits))):
        FrameLimits(**values)


def test_a_camera_whose_clock_jumped_ahead_is_synchronised_again_from_its_first_sane_frame():
    """Issue 22: stamps 30 s ahead for 1 s kept the synchroniser blocked for 36 s. Far-future frames
    are refused at the gate; frames ahead within max_future_s are dropped when the stamps go back."""
    gate = FrameGate(LIMITS)
    sync = ApproximateSync(["a", "b"], slop_ns=50 * MS, max_reorder_ns=50 * MS)
    period = 100 * MS
    for i in range(5):  # sane
        now = NOW + i * period
        for camera in "ab":
            assert admit(gate, Raw(), stamp_ns=now, now_ns=now, camera=camera) is None
            sync.add(camera, now, camera)
        assert sync.pop_newest_set().stamp_ns == now
    for i in range(5, 15):  # 30 s ahead: refused, nothing queued
        now = NOW + i * period
        for camera in "ab":
            assert (
                admit(gate, Raw(), stamp_ns=now + 30 * S, now_ns=now, camera=camera).cause == "future_stamp"
            )
        assert sync.pop_newest_set() is None
    for i in range(15, 20):  # 0.4 s ahead: within max_future_s, used
        now = NOW + i * period
        for camera in "ab":
            assert admit(gate, Raw(), stamp_ns=now + 400 * MS, now_ns=now, camera=camera) is None
            sync.add(camera, now + 400 * MS, camera)
        assert sync.pop_newest_set().stamp_ns == now + 400 * MS
    now = NOW + 20 * period  # sane again: the very next set is handed out
    for camera in "ab":
        sync.add(camera, now, camera)
    assert sync.pop_newest_set().stamp_ns == now
