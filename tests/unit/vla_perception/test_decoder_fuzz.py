"""Fuzz the decoders: random bytes, sizes and damaged real data raise ValueError or decode, nothing else.

Also checks that the pure perception modules import with rclpy and message packages blocked.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from vla_perception.frame_gate import FrameGate, FrameLimits, Refusal
from vla_perception.image_codec import (
    SUPPORTED_ENCODINGS,
    array_to_compressed,
    compressed_to_array,
    image_to_array,
    to_rgb8,
)

S = 1_000_000_000


@dataclass
class FakeImage:
    height: object
    width: object
    encoding: object
    is_bigendian: object
    step: object
    data: object


def test_random_raw_messages_only_ever_raise_value_error() -> None:
    rng = np.random.default_rng(1234)
    encodings = [*SUPPORTED_ENCODINGS, "yuv422", "", "RGB8", "bayer_rggb8"]
    decoded = 0
    for _ in range(3000):
        encoding = encodings[rng.integers(len(encodings))]
        height, width = (int(v) for v in rng.integers(-2, 12, 2))
        step = int(rng.integers(-2, 60))
        data = rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8).tobytes()
        msg = FakeImage(height, width, encoding, int(rng.integers(0, 3)), step, data)
        try:
            image = image_to_array(msg)
        except ValueError:
            continue
        decoded += 1
        assert image.shape[:2] == (height, width)
        try:
            rgb = to_rgb8(image, encoding)
        except ValueError:
            pytest.fail(f"to_rgb8 rejected a decoded {encoding} image")
        assert rgb.shape == (height, width, 3)
    assert decoded > 100  # the fuzz also reaches the success path


def _damaged_variants(data: bytes, rng: np.random.Generator) -> list[bytes]:
    variants = [data[: int(rng.integers(0, len(data)))] for _ in range(20)]
    for _ in range(40):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), int(rng.integers(1, 20))):
            damaged[position] = int(rng.integers(0, 256))
        variants.append(bytes(damaged))
    return variants


@pytest.mark.parametrize(
    ("fmt", "encoding", "image"),
    [
        ("jpeg", "bgr8", np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)),
        ("jpeg", "mono8", np.random.default_rng(1).integers(0, 256, (40, 50), dtype=np.uint8)),
        ("png", "rgba8", np.random.default_rng(2).integers(0, 256, (40, 50, 4), dtype=np.uint8)),
        ("png", "16UC1", np.random.default_rng(3).integers(0, 65536, (40, 50), dtype=np.uint16)),
    ],
)
def test_damaged_compressed_data_only_ever_raises_value_error(
    fmt: str, encoding: str, image: np.ndarray
) -> None:
    format_str, data = array_to_compressed(image, fmt, encoding)
    rng = np.random.default_rng(99)
    for variant in _damaged_variants(data, rng):
        try:
            decoded = compressed_to_array(format_str, variant)
        except ValueError:
            continue
        assert isinstance(decoded, np.ndarray) and decoded.size > 0


def test_random_bytes_and_formats_only_ever_raise_value_error() -> None:
    rng = np.random.default_rng(7)
    prefixes = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x00" * 12 + b"\x89PNG\r\n\x1a\n"]
    formats = ["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth png", "tiff", "🙂"]
    for _ in range(2000):
        body = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        tail = b"\xff\xd9" if rng.random() < 0.5 else b"IEND\xaeB`\x82"
        data = prefixes[rng.integers(len(prefixes))] + body + tail
        with pytest.raises(ValueError):
            compressed_to_array(formats[rng.integers(len(formats))], data)


@dataclass
class FakeCompressed:
    format: object
    data: object


def test_the_frame_gate_never_raises_on_random_frames() -> None:
    """Every arriving frame gets a Refusal or None: random fields, bytes, stamps, damaged JPEGs."""
    gate = FrameGate(FrameLimits(S // 2, S // 2, S, 640 * 480, 50_000))
    rng = np.random.default_rng(5)
    _, jpeg = array_to_compressed(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "jpeg", "bgr8")
    encodings = [*SUPPORTED_ENCODINGS, "yuv422", ""]
    damaged = _damaged_variants(jpeg, rng)
    outcomes: dict[str, int] = {}
    for i in range(2000):
        stamp = int(rng.choice([0, 1000 * S, 1000 * S + 40 * S, 990 * S, int(rng.integers(1, 2000)) * S]))
        if i % 2:
            height, width, step = (int(v) for v in rng.integers(-2, 3000, 3))
            data = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
            msg = FakeImage(height, width, encodings[rng.integers(len(encodings))], 0, step, data)
            refusal = gate.admit("primary", "raw", msg, stamp, 1000 * S)
        else:
            data = damaged[int(rng.integers(0, len(damaged)))] if rng.random() < 0.7 else jpeg
            msg = FakeCompressed(["jpeg", "png", "", "tiff"][rng.integers(4)], data)
            refusal = gate.admit("wrist", "compressed", msg, stamp, 1000 * S)
        assert refusal is None or (isinstance(refusal, Refusal) and refusal.reason.startswith("camera '"))
        key = "admitted" if refusal is None else refusal.cause
        outcomes[key] = outcomes.get(key, 0) + 1
    assert set(outcomes) >= {
        "admitted",
        "zero_stamp",
        "future_stamp",
        "old_stamp",
        "too_large",
        "bad_data",
        "corrupt",
    }


def test_pure_modules_import_without_ros() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('rclpy', 'sensor_msgs', 'std_msgs', 'cv_bridge'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import vla_perception.image_codec, vla_perception.preprocess, vla_perception.sync\n"
        "import vla_perception.frame_gate, vla_perception.camera_topics, vla_common.heap\n"
        "import vla_perception.perception_settings\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
