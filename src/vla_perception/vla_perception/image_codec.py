"""sensor_msgs/Image and CompressedImage <-> numpy, without ROS.

The functions take plain values or duck-typed message objects, so this module never imports rclpy or
message types; the ROS layer copies fields on and off the messages. Layouts follow cv_bridge:

- ``image_to_array`` returns what ``imgmsg_to_cv2(msg, "passthrough")`` returns: HxW for one-channel
  encodings, HxWxC otherwise, in the message's own channel order, with row padding (``step``)
  removed and multi-byte samples in native byte order.
- ``compressed_to_array`` returns what ``compressed_imgmsg_to_cv2(msg, "passthrough")`` returns:
  OpenCV's decode with IMREAD_UNCHANGED (BGR or BGRA for colour, HxW for grey, uint16 for 16-bit
  PNG). Unlike cv_bridge it never returns None: corrupt or truncated data raises ValueError.
- ``array_to_compressed`` writes the ``format`` strings that image_transport's compressed publisher
  writes, e.g. ``"rgb8; jpeg compressed bgr8"`` or ``"16UC1; png compressed "``.

Every error is a ValueError that names the field and the bad value, prefixed with the camera name
when one is given.
"""

from __future__ import annotations

import contextlib
import operator
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


@dataclass(frozen=True)
class _Layout:
    dtype: np.dtype  # sample type, byte order not yet decided
    channels: int
    colour_order: str  # "rgb", "bgr", "rgba", "bgra" or "mono"


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(np.dtype(np.uint8), 3, "rgb"),
    "bgr8": _Layout(np.dtype(np.uint8), 3, "bgr"),
    "rgba8": _Layout(np.dtype(np.uint8), 4, "rgba"),
    "bgra8": _Layout(np.dtype(np.uint8), 4, "bgra"),
    "mono8": _Layout(np.dtype(np.uint8), 1, "mono"),
    "mono16": _Layout(np.dtype(np.uint16), 1, "mono"),
    "16UC1": _Layout(np.dtype(np.uint16), 1, "mono"),
    "32FC1": _Layout(np.dtype(np.float32), 1, "mono"),
    # OpenCV type names carry no channel order; like OpenCV we read 3 and 4 channels as BGR(A).
    "8UC1": _Layout(np.dtype(np.uint8), 1, "mono"),
    "8UC3": _Layout(np.dtype(np.uint8), 3, "bgr"),
    "8UC4": _Layout(np.dtype(np.uint8), 4, "bgra"),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
MAX_BYTES_PER_PIXEL = max(layout.channels * layout.dtype.itemsize for layout in _LAYOUTS.values())
# Encodings whose pixel values are measurements (depth) rather than intensities: to_rgb8 stretches
# them per frame unless a value range is given.
_MEASUREMENT_ENCODINGS = frozenset({"16UC1", "32FC1"})

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_COMPRESSED_DEPTH_HEADER_BYTES = 12  # compressed_depth_image_transport ConfigHeader: int32 + 2 float32


@dataclass(frozen=True)
class ImageFields:
    """The fields of a sensor_msgs/Image, ready for the ROS layer to copy onto a message."""

    height: int
    width: int
    encoding: str
    is_bigendian: int  # always 0: data is written little-endian
    step: int  # bytes per row, >= width * bytes per pixel
    data: bytes


def _prefix(camera: str | None) -> str:
    return f"camera '{camera}': " if camera else "image: "


def _layout(encoding: object, camera: str | None) -> _Layout:
    layout = _LAYOUTS.get(encoding) if isinstance(encoding, str) else None
    if layout is None:
        raise ValueError(
            f"{_prefix(camera)}encoding {encoding!r} is not supported; use {', '.join(SUPPORTED_ENCODINGS)}"
        )
    return layout


def _non_negative_int(value: object, field: str, camera: str | None) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{_prefix(camera)}{field} {value!r} is not an integer") from None
    if number < 0:
        raise ValueError(f"{_prefix(camera)}{field} {number} is negative")
    return number


def _as_byte_array(data: object, camera: str | None) -> np.ndarray:
    """A flat uint8 view of a bytes-like object (bytes, bytearray, array.array, memoryview, ndarray)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    except (TypeError, ValueError, BufferError):
        pass
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (OverflowError, TypeError, ValueError):
            pass
    raise ValueError(f"{_prefix(camera)}data of type {type(data).__name__} is not a byte buffer")


def image_to_array(msg_like: Any, *, camera: str | None = None, copy: bool = True) -> np.ndarray:
    """Convert an Image-like object to an array in the message's own encoding layout.

    ``msg_like`` needs ``height``, ``width``, ``encoding``, ``is_bigendian``, ``step`` and ``data``.
    Data longer than ``step * height`` is accepted (cv_bridge ignores the tail too). With
    ``copy=False`` the result may be a read-only view of ``data`` when no byte swap is needed.
    """
    layout = _layout(msg_like.encoding, camera)
    height = _non_negative_int(msg_like.height, "height", camera)
    width = _non_negative_int(msg_like.width, "width", camera)
    step = _non_negative_int(msg_like.step, "step", camera)
    if height == 0 or width == 0:
        raise ValueError(f"{_prefix(camera)}size {width}x{height} (width x height) is empty")
    big_endian = msg_like.is_bigendian
    if big_endian not in (0, 1):  # also admits False/True
        raise ValueError(f"{_prefix(camera)}is_bigendian {big_endian!r} is not 0 or 1")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ValueError(
            f"{_prefix(camera)}step {step} is less than width {width} x {row_bytes // width} bytes per "
            f"pixel = {row_bytes} for encoding '{msg_like.encoding}'"
        )
    buffer = _as_byte_array(msg_like.data, camera)
    if buffer.size < step * height:
        raise ValueError(
            f"{_prefix(camera)}data has {buffer.size} bytes, fewer than step {step} x height {height} "
            f"= {step * height}"
        )
    rows = buffer[: step * height].reshape(height, step)[:, :row_bytes]
    wire_dtype = layout.dtype.newbyteorder(">" if big_endian else "<")
    pixels = rows.view(wire_dtype) if layout.dtype.itemsize > 1 else rows
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    pixels = pixels.reshape(shape)
    native_dtype = layout.dtype.newbyteorder("=")
    if copy or (layout.dtype.itemsize > 1 and bool(big_endian) != _NATIVE_BIG_ENDIAN):
        return np.array(pixels, dtype=native_dtype, order="C")  # copies and swaps bytes if needed
    return pixels


def _check_array(array: np.ndarray, encoding: str, layout: _Layout, camera: str | None) -> np.ndarray:
    """Validate an array against an encoding; returns it with one-channel images as HxW."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{_prefix(camera)}array of type {type(array).__name__} is not a numpy array")
    if array.dtype.newbyteorder("=") != layout.dtype:
        raise ValueError(
            f"{_prefix(camera)}array dtype {array.dtype} does not match encoding '{encoding}' "
            f"(needs {layout.dtype})"
        )
    if layout.channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    wanted_ndim = 2 if layout.channels == 1 else 3
    if array.ndim != wanted_ndim or (wanted_ndim == 3 and array.shape[2] != layout.channels):
        wanted = "HxW" if layout.channels == 1 else f"HxWx{layout.channels}"
        raise ValueError(
            f"{_prefix(camera)}array shape {array.shape} does not match encoding '{encoding}' "
            f"(needs {wanted})"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{_prefix(camera)}array shape {array.shape} is empty")
    return array


def array_to_image_fields(array: np.ndarray, encoding: str, *, step: int | None = None) -> ImageFields:
    """Pack an array into Image fields; ``step`` larger than a row pads each row with zero bytes."""
    layout = _layout(encoding, None)
    array = _check_array(array, encoding, layout, None)
    height, width = array.shape[:2]
    row_bytes = width * layout.channels * layout.dtype.itemsize
    little_endian = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    if step is None or step == row_bytes:
        return ImageFields(height, width, encoding, 0, row_bytes, little_endian.tobytes())
    step = _non_negative_int(step, "step", None)
    if step < row_bytes:
        raise ValueError(
            f"image: step {step} is less than the row size {row_bytes} for encoding '{encoding}'"
        )
    padded = np.zeros((height, step), dtype=np.uint8)
    padded[:, :row_bytes] = little_endian.view(np.uint8).reshape(height, row_bytes)
    return ImageFields(height, width, encoding, 0, step, padded.tobytes())


def _codec_from_format(format_str: str) -> str | None:
    lowered = format_str.lower()
    if "compresseddepth" in lowered:
        return "compressedDepth"
    if "png" in lowered:
        return "png"
    if "jpeg" in lowered or "jpg" in lowered:
        return "jpeg"
    return None


_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start of frame (not DHT, JPG, DAC)
# Markers that may follow a scan before the next one (progressive JPEG): tables, restart interval,
# comments, application data, start of scan.
_JPEG_BETWEEN_SCANS = frozenset({0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE}) | frozenset(range(0xE0, 0xF0))
_JPEG_EOI_SEARCH_BYTES = 64  # some cameras pad a few bytes after the end-of-image marker
# libjpeg prints these (and goes on, filling with grey or garbage) for data it could not decode
_LIBJPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid JPEG file structure")


def _jpeg_segments(payload: bytes, at: int, camera: str | None) -> tuple[tuple[int, int] | None, int]:
    """Walk marker segments from byte ``at`` to the next SOS: ((width, height) from SOF, scan start)."""
    size = None
    while True:
        if at + 4 > len(payload):
            raise ValueError(f"{_prefix(camera)}corrupt JPEG ({len(payload)} bytes): ends inside its headers")
        if payload[at] != 0xFF:
            raise ValueError(
                f"{_prefix(camera)}corrupt JPEG: byte {at} is {payload[at]:#04x} where a marker belongs"
            )
        marker = payload[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        length = int.from_bytes(payload[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > len(payload):
            raise ValueError(
                f"{_prefix(camera)}corrupt JPEG: segment 0xff{marker:02x} at byte {at} has length {length}, "
                f"less than 2 or beyond the {len(payload)} bytes of data"
            )
        if marker in _JPEG_SOF_MARKERS and length >= 7:
            height = int.from_bytes(payload[at + 5 : at + 7], "big")
            width = int.from_bytes(payload[at + 7 : at + 9], "big")
            size = (width, height)
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return size, at


def _check_jpeg_scans(payload: bytes, scan_start: int, camera: str | None) -> None:
    """Check the entropy-coded data of every scan, and that the image ends with EOI.

    Inside a scan a 0xFF byte is followed only by 0x00 (stuffing), a restart marker, another 0xFF
    (fill) or a marker that ends the scan (tables and the next scan, or EOI at the very end).
    Overwritten or spliced data breaks this almost surely; what it misses, libjpeg's warnings catch.
    """
    end = payload.rfind(b"\xff\xd9", max(0, len(payload) - _JPEG_EOI_SEARCH_BYTES))
    if end < scan_start:
        raise ValueError(
            f"{_prefix(camera)}data ({len(payload)} bytes) is a truncated JPEG: no EOI marker at the end"
        )
    data = np.frombuffer(payload, dtype=np.uint8)
    at = scan_start
    while True:
        ff = at + np.flatnonzero(data[at:end] == 0xFF)
        following = data[ff + 1]
        ends = ff[(following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))]
        if ends.size == 0:
            return
        stop = int(ends[0])
        marker = int(data[stop + 1])
        if marker not in _JPEG_BETWEEN_SCANS:
            what = "an end of image before the end" if marker == 0xD9 else "a marker that cannot occur there"
            raise ValueError(
                f"{_prefix(camera)}corrupt JPEG: bytes {stop}-{stop + 1} of {len(payload)} in the image data "
                f"read 0xff{marker:02x}, {what} (overwritten or spliced data)"
            )
        _, at = _jpeg_segments(payload, stop, camera)


def jpeg_size(payload: bytes, *, camera: str | None = None) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding; ValueError if there is none."""
    if not payload.startswith(_JPEG_MAGIC):
        raise ValueError(f"{_prefix(camera)}data starts {payload[:8].hex()}, not JPEG")
    size, _ = _jpeg_segments(payload, 2, camera)
    if size is None:
        raise ValueError(f"{_prefix(camera)}JPEG has no frame header (SOF) before its scan")
    return size


def png_size(payload: bytes, *, camera: str | None = None) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding; ValueError if it is missing."""
    if not payload.startswith(_PNG_MAGIC) or payload[12:16] != b"IHDR" or len(payload) < 24:
        raise ValueError(f"{_prefix(camera)}data starts {payload[:16].hex()}, not a PNG with its IHDR")
    return int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big")


def compressed_size(format_str: str, payload: bytes, *, camera: str | None = None) -> tuple[int, int]:
    """(width, height) of CompressedImage data read from its header, so a limit holds before decoding."""
    codec, payload = _codec_and_payload(format_str, payload, camera)
    return jpeg_size(payload, camera=camera) if codec == "jpeg" else png_size(payload, camera=camera)


def _check_complete(codec: str, payload: bytes, format_str: str, camera: str | None) -> None:
    """Reject data that does not start with the codec's signature, lacks its end marker or (JPEG)
    whose structure is broken: headers, markers inside the scan, the end-of-image marker."""
    head = payload[:8]
    if codec == "jpeg":
        if not payload.startswith(_JPEG_MAGIC):
            raise ValueError(f"{_prefix(camera)}format '{format_str}' but data starts {head.hex()}, not JPEG")
        # Decoders fill a truncated or overwritten JPEG with grey or garbage and only warn.
        _, scan_start = _jpeg_segments(payload, 2, camera)
        _check_jpeg_scans(payload, scan_start, camera)
    else:
        if not payload.startswith(_PNG_MAGIC):
            raise ValueError(f"{_prefix(camera)}format '{format_str}' but data starts {head.hex()}, not PNG")
        if payload.rfind(b"IEND", max(0, len(payload) - 32)) < 0:
            raise ValueError(
                f"{_prefix(camera)}data ({len(payload)} bytes) is a truncated PNG: no IEND chunk"
            )


def _codec_and_payload(format_str: object, payload: bytes, camera: str | None) -> tuple[str, bytes]:
    """The codec ("jpeg" or "png") named by ``format_str`` (or the data when it is empty) and the
    payload without a compressedDepth header."""
    if not isinstance(format_str, str):
        raise ValueError(f"{_prefix(camera)}format {format_str!r} is not a string")
    codec = _codec_from_format(format_str)
    if codec == "compressedDepth":
        if not format_str.strip().startswith("16UC1") or "rvl" in format_str.lower():
            raise ValueError(
                f"{_prefix(camera)}format '{format_str}' is not supported; only 16UC1 compressedDepth PNG is"
            )
        payload = payload[_COMPRESSED_DEPTH_HEADER_BYTES:]
        codec = "png"
    elif codec is None and not format_str.strip():
        codec = (
            "png" if payload.startswith(_PNG_MAGIC) else "jpeg" if payload.startswith(_JPEG_MAGIC) else None
        )
    if codec is None:
        raise ValueError(f"{_prefix(camera)}format '{format_str}' names no supported codec; use jpeg or png")
    if not payload:
        raise ValueError(f"{_prefix(camera)}data is empty for format '{format_str}'")
    return codec, payload


def check_compressed(format_str: str, data: Any, *, camera: str | None = None) -> str:
    """Check CompressedImage data without decoding it (format, signature, structure); returns the codec."""
    codec, payload = _codec_and_payload(format_str, _as_byte_array(data, camera).tobytes(), camera)
    _check_complete(codec, payload, format_str, camera)
    return codec


@contextlib.contextmanager
def _stderr_captured() -> Iterator[list[str]]:
    """Capture what C code writes to file descriptor 2 (libjpeg's warnings) into the yielded list.

    Used around one decode on the caller's thread; anything captured that is not a decoder warning
    is written back to stderr, so nothing another thread logs in that window is lost.
    """
    captured: list[str] = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    for line in text.splitlines():
        if line.startswith(_LIBJPEG_WARNINGS):
            captured.append(line)
        else:
            print(line, file=sys.stderr)


def compressed_to_array(format_str: str, data: Any, *, camera: str | None = None) -> np.ndarray:
    """Decode CompressedImage data (JPEG, PNG, or 16UC1 compressedDepth PNG) to an array.

    Colour comes back BGR (BGRA for PNG with alpha), grey as HxW, 16-bit PNG as uint16, exactly as
    OpenCV's IMREAD_UNCHANGED decode. An empty format is accepted and the codec read from the data.
    """
    codec, payload = _codec_and_payload(format_str, _as_byte_array(data, camera).tobytes(), camera)
    _check_complete(codec, payload, format_str, camera)
    warnings: list[str] = []
    try:
        if codec == "jpeg":
            with _stderr_captured() as warnings:
                decoded = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        else:
            decoded = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ValueError(
            f"{_prefix(camera)}data ({len(payload)} bytes) is corrupt {codec}: {error}"
        ) from None
    if decoded is None or decoded.size == 0:
        raise ValueError(f"{_prefix(camera)}data ({len(payload)} bytes) is corrupt {codec}: decoder failed")
    if warnings:
        raise ValueError(
            f"{_prefix(camera)}corrupt JPEG ({len(payload)} bytes): the decoder said '{warnings[0]}'"
        )
    return decoded


def decoded_encoding(array: np.ndarray, format_str: str = "") -> str:
    """The encoding name of an array from ``compressed_to_array``, to pass on to ``to_rgb8``.

    uint8: HxW -> mono8, HxWx3 -> bgr8, HxWx4 -> bgra8; uint16 HxW -> 16UC1 when the format string
    names 16UC1 as the original encoding (depth), else mono16.
    """
    shape = getattr(array, "shape", None)
    dtype = getattr(array, "dtype", None)
    if dtype == np.uint8 and len(shape or ()) == 2:
        return "mono8"
    if dtype == np.uint8 and len(shape or ()) == 3 and shape[2] in (3, 4):
        return "bgr8" if shape[2] == 3 else "bgra8"
    if dtype == np.uint16 and len(shape or ()) == 2:
        return "16UC1" if format_str.strip().startswith("16UC1") else "mono16"
    raise ValueError(f"image: decoded shape {shape} dtype {dtype} has no supported encoding")


def array_to_compressed(
    array: np.ndarray, fmt: str = "jpeg", encoding: str = "bgr8", quality: int = 90
) -> tuple[str, bytes]:
    """Encode an array given in ``encoding`` as image_transport would; returns (format, data).

    JPEG takes 8-bit images only (colour is stored BGR, alpha dropped); PNG also takes mono16/16UC1
    and keeps alpha (stored BGRA). ``quality`` is the JPEG quality 0..100 and is ignored for PNG.
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"image: fmt {fmt!r} is not supported; use 'jpeg' or 'png'")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality <= 100:
        raise ValueError(f"image: quality {quality!r} is not an integer in 0..100")
    layout = _layout(encoding, None)
    array = _check_array(array, encoding, layout, None)
    if layout.dtype == np.float32 or (fmt == "jpeg" and layout.dtype != np.uint8):
        raise ValueError(f"image: encoding '{encoding}' cannot be stored as {fmt}; use png for 16-bit images")
    if layout.channels == 1:
        pixels, target = array, ("mono8" if fmt == "jpeg" else "")
    else:
        keep_alpha = fmt == "png" and layout.channels == 4
        pixels = _reorder(array, layout.colour_order, "bgra" if keep_alpha else "bgr")
        target = "bgra8" if keep_alpha else "bgr8"
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(pixels), params)
    if not ok:
        raise ValueError(f"image: OpenCV failed to encode shape {array.shape} as {fmt}")
    return f"{encoding}; {fmt} compressed {target}", encoded.tobytes()


# OpenCV conversions are ~30x faster than numpy fancy indexing for channel reordering.
_REORDER_CODES = {
    ("bgr", "rgb"): cv2.COLOR_BGR2RGB,
    ("rgb", "bgr"): cv2.COLOR_RGB2BGR,
    ("rgba", "rgb"): cv2.COLOR_RGBA2RGB,
    ("bgra", "rgb"): cv2.COLOR_BGRA2RGB,
    ("rgba", "bgr"): cv2.COLOR_RGBA2BGR,
    ("bgra", "bgr"): cv2.COLOR_BGRA2BGR,
    ("rgba", "bgra"): cv2.COLOR_RGBA2BGRA,
}


def _reorder(array: np.ndarray, source: str, target: str) -> np.ndarray:
    """Reorder colour channels by name, e.g. "bgra" -> "rgb" (alpha dropped when target has none)."""
    if source == target:
        return array
    return cv2.cvtColor(array, _REORDER_CODES[(source, target)])


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:
        return np.zeros(values.shape, dtype=np.uint8)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN (also signalling) and huge floats
        scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(scaled + 0.5, 0.0, 255.0).astype(np.uint8)


def to_rgb8(
    array: np.ndarray, encoding: str, *, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    """Convert an array in any supported encoding to an HxWx3 uint8 RGB image.

    - Colour: channels reordered, alpha dropped. Grey: replicated to three channels.
    - mono16 (an intensity image): full range, 0..65535 -> 0..255.
    - 16UC1 and 32FC1 (depth): stretched per frame from the smallest to the largest finite value,
      as cv_bridge's cvtColorForDisplay does; NaN and -inf become 0, +inf 255.
    - ``value_range=(low, high)`` overrides both for 16-bit and float images: low -> 0, high -> 255,
      clipped; use it when frames must stay comparable (a fixed depth range in metres or mm).
    The result may share memory with ``array`` when that already is contiguous rgb8.
    """
    layout = _layout(encoding, None)
    array = _check_array(array, encoding, layout, None)
    if layout.dtype == np.uint8:
        grey_or_colour = array
    elif value_range is not None:
        low, high = (float(bound) for bound in value_range)
        if not high > low:
            raise ValueError(f"image: value_range {value_range!r} needs low < high")
        grey_or_colour = _scale_to_uint8(array, low, high)
    elif encoding in _MEASUREMENT_ENCODINGS:
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        grey_or_colour = _scale_to_uint8(array, low, high)
    else:
        grey_or_colour = (array >> 8).astype(np.uint8)  # mono16: the high byte is the 8-bit intensity
    if layout.channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(grey_or_colour), cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(_reorder(grey_or_colour, layout.colour_order, "rgb"))
