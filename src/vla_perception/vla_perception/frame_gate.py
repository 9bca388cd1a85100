"""What a camera frame must pass on arrival, before it is queued for synchronisation (pure, no ROS).

``FrameGate.admit`` refuses a frame with a :class:`Refusal`: a ``cause`` (a short stable name, for
counters) and a ``reason`` (a sentence naming the camera, the value, the limit and the parameter
that sets it). In the order checked (``malformed``, a serialized message that does not parse, is
refused before the gate, by wire_frame):

- ``zero_stamp``: ``header.stamp`` was never set;
- ``too_large``: a raw frame over ``max_pixels`` pixels (or with more data than that many pixels
  can fill), compressed data over ``max_compressed_bytes`` bytes or whose header declares more
  than ``max_pixels`` pixels; checked from the header fields alone, before the data is touched;
- ``bad_data``: a raw frame whose encoding is unsupported or whose step or data length does not
  match its size; compressed data whose format names no codec or whose signature is wrong;
- ``corrupt``: a compressed frame whose structure is broken (truncated, overwritten: see
  ``image_codec.check_compressed``); what only the decoder sees is refused when it is decoded;
- ``future_stamp``: more than ``max_future_s`` ahead of the node's clock;
- ``old_stamp``: older than ``max_image_age_s`` (checked again when the frame is used);
- ``frozen``: the same content (a cheap fingerprint of the wire data: :func:`wire_fingerprint`)
  with fresh stamps for ``frozen_after_s`` or longer. The first frame with new content is
  accepted again. The fingerprint samples 16 KiB spread over the frame: a frozen driver re-sends
  byte-identical frames, a live camera's read noise changes every sampled block (the sim adds
  such noise to its renders, vla_sim.sensor_noise).

Frames with bad stamps never reach the synchroniser, so a camera whose clock jumped ahead for a
moment is used again from its first sane frame on.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from vla_common.inbound import check_pixel_count
from vla_perception.image_codec import (
    MAX_BYTES_PER_PIXEL,
    check_compressed,
    compressed_size,
    image_to_array,
)

NS_PER_S = 1_000_000_000
# The frozen check hashes this many blocks of this many bytes, evenly spaced over a frame's data:
# 16 KiB, 7 us on a 640x480 frame (a strided 64 KiB sample touched every cache line of it: 29 us).
_FINGERPRINT_BLOCKS = 64
_FINGERPRINT_BLOCK_BYTES = 256


@dataclass(frozen=True)
class Refusal:
    """Why a frame was refused: ``cause`` names the check, ``reason`` says it for people."""

    cause: str
    reason: str


@dataclass(frozen=True)
class FrameLimits:
    """The limits a frame is held to, in the units the checks take (ns, pixels, bytes)."""

    max_age_ns: int
    max_future_ns: int
    frozen_after_ns: int  # 0: the frozen check is off
    max_pixels: int
    max_compressed_bytes: int

    def __post_init__(self) -> None:
        for name in ("max_age_ns", "max_pixels", "max_compressed_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"frame limits: {name} {getattr(self, name)} must be positive")
        for name in ("max_future_ns", "frozen_after_ns"):
            if getattr(self, name) < 0:
                raise ValueError(f"frame limits: {name} {getattr(self, name)} is negative")


def _s(ns: int) -> str:
    return f"{ns / NS_PER_S:.3f}"


def check_stamp(camera: str, stamp_ns: int, now_ns: int, limits: FrameLimits) -> Refusal | None:
    """A zero, future or too old stamp; the clock checks are skipped while ``now_ns`` is 0 (a sim
    clock that has not started)."""
    if stamp_ns == 0:
        return Refusal("zero_stamp", f"camera '{camera}': zero stamp (header.stamp not set)")
    if now_ns == 0:
        return None
    if stamp_ns - now_ns > limits.max_future_ns:
        return Refusal(
            "future_stamp",
            f"camera '{camera}': stamp {_s(stamp_ns - now_ns)} s in the future "
            f"(limit max_future_s={_s(limits.max_future_ns)}); is the camera's clock in sync?",
        )
    if now_ns - stamp_ns > limits.max_age_ns:
        return Refusal(
            "old_stamp",
            f"camera '{camera}': frame older than the bound: {_s(now_ns - stamp_ns)} s old "
            f"(limit max_image_age_s={_s(limits.max_age_ns)})",
        )
    return None


def _byte_length(data: Any) -> int:
    try:
        return memoryview(data).nbytes
    except TypeError:
        return len(data)


def _pixel_refusal(exc: ValueError) -> Refusal:
    """check_pixel_count's error: too many pixels (the parameter named) or an empty size."""
    if "more than" in str(exc):
        return Refusal("too_large", f"{exc} (max_pixels)")
    return Refusal("bad_data", str(exc))


def check_raw(camera: str, msg_like: Any, max_pixels: int) -> Refusal | None:
    """A raw Image-like frame: its size against ``max_pixels`` first, then its fields against its data."""
    what = f"camera '{camera}'"
    try:
        check_pixel_count(int(msg_like.width), int(msg_like.height), what=what, max_pixels=max_pixels)
    except ValueError as exc:
        return _pixel_refusal(exc)
    nbytes = _byte_length(msg_like.data)
    if nbytes > max_pixels * MAX_BYTES_PER_PIXEL:
        return Refusal(
            "too_large",
            f"{what}: data has {nbytes} bytes, more than max_pixels {max_pixels} x "
            f"{MAX_BYTES_PER_PIXEL} bytes per pixel",
        )
    try:
        image_to_array(msg_like, camera=camera, copy=False)
    except ValueError as exc:
        return Refusal("bad_data", str(exc))
    return None


def check_compressed_frame(camera: str, msg_like: Any, limits: FrameLimits) -> Refusal | None:
    """A CompressedImage-like frame: bytes, then the size its header declares, then its structure."""
    nbytes = _byte_length(msg_like.data)
    if nbytes > limits.max_compressed_bytes:
        return Refusal(
            "too_large",
            f"camera '{camera}': compressed data has {nbytes} bytes, more than max_compressed_bytes "
            f"{limits.max_compressed_bytes}",
        )
    payload = bytes(msg_like.data)
    try:
        width, height = compressed_size(msg_like.format, payload, camera=camera)
    except ValueError as exc:
        return Refusal("bad_data", str(exc))
    try:
        check_pixel_count(
            width, height, what=f"camera '{camera}': header declares", max_pixels=limits.max_pixels
        )
    except ValueError as exc:
        return _pixel_refusal(exc)
    try:
        check_compressed(msg_like.format, payload, camera=camera)
    except ValueError as exc:
        return Refusal("corrupt", str(exc))
    return None


def wire_fingerprint(data: Any) -> int:
    """CRC32 of a frame's bytes and their number; of a sample for frames over 16 KiB.

    The sample: 64 contiguous blocks of 256 bytes, evenly spaced, the first within the first 64
    bytes and the last ending at the data's end. A frozen driver re-sends the same bytes; a live
    camera's noise changes the sampled bytes. Contiguous blocks read only the cache lines they
    hash, where a byte-strided sample read the whole frame.
    """
    buffer = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    size = buffer.size
    if size > _FINGERPRINT_BLOCKS * _FINGERPRINT_BLOCK_BYTES:
        spacing = (size - _FINGERPRINT_BLOCK_BYTES) // (_FINGERPRINT_BLOCKS - 1)
        first = size - _FINGERPRINT_BLOCK_BYTES - (_FINGERPRINT_BLOCKS - 1) * spacing
        blocks = as_strided(
            buffer[first:],
            shape=(_FINGERPRINT_BLOCKS, _FINGERPRINT_BLOCK_BYTES),
            strides=(spacing, 1),
            writeable=False,
        )
        buffer = np.ascontiguousarray(blocks)
    return zlib.crc32(buffer, size)


@dataclass
class _Run:
    """Frames in a row with the same content."""

    fingerprint: int
    first_stamp_ns: int
    frames: int = 1


class FrameGate:
    """Admits or refuses each arriving frame; keeps one content run per camera for the frozen check."""

    def __init__(self, limits: FrameLimits) -> None:
        self.limits = limits
        self._runs: dict[str, _Run] = {}

    def admit(self, camera: str, transport: str, msg_like: Any, stamp_ns: int, now_ns: int) -> Refusal | None:
        """None to queue the frame, else why not. ``msg_like``: an Image (raw) or CompressedImage."""
        if stamp_ns == 0:
            return check_stamp(camera, stamp_ns, now_ns, self.limits)
        if transport == "compressed":
            refusal = check_compressed_frame(camera, msg_like, self.limits)
        else:
            refusal = check_raw(camera, msg_like, self.limits.max_pixels)
        return (
            refusal
            or check_stamp(camera, stamp_ns, now_ns, self.limits)
            or self._frozen(camera, stamp_ns, msg_like.data)
        )

    def reset(self) -> None:
        """Forget every camera's content run (a new episode)."""
        self._runs.clear()

    def _frozen(self, camera: str, stamp_ns: int, data: Any) -> Refusal | None:
        if self.limits.frozen_after_ns == 0:
            return None
        fingerprint = wire_fingerprint(data)
        run = self._runs.get(camera)
        if run is None or run.fingerprint != fingerprint or stamp_ns < run.first_stamp_ns:
            self._runs[camera] = _Run(fingerprint, stamp_ns)
            return None
        run.frames += 1
        unchanged_ns = stamp_ns - run.first_stamp_ns
        if unchanged_ns < self.limits.frozen_after_ns:
            return None
        return Refusal(
            "frozen",
            f"camera '{camera}': frozen: content unchanged for {_s(unchanged_ns)} s over {run.frames} frames "
            f"with fresh stamps (limit frozen_after_s={_s(self.limits.frozen_after_ns)})",
        )
