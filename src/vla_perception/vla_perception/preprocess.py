"""Per-camera crop and resize of an RGB frame to a policy's input size (pure numpy + OpenCV).

Order of operations: the optional fixed ``crop`` (top, left, height, width) in source pixels, then
the ``mode``:

- ``resize``: stretch to (height, width), ignoring the aspect ratio (what OpenVLA and Octo do).
- ``center_crop``: cut the largest centred region with the output's aspect ratio, then resize.
- ``letterbox``: resize to fit inside the output keeping the aspect ratio, centre it, pad the
  rest with ``pad_value``.

Interpolation ``antialias`` (the default) halves with a Gaussian pyramid (cv2.pyrDown: low-pass,
then decimate) while the image is at least 1.8x the output on both axes, then resizes bilinearly:
it does not alias, stays within about one grey level of INTER_AREA on camera images, and costs
about 0.2 ms for 640x480 -> 256x256. ``area`` is OpenCV's INTER_AREA (a box filter). For
speed, a shrink by a factor of two or more on both axes first averages whole pixel blocks (exact,
and fast in OpenCV) and then area-resizes the rest; on camera images this stays within a few grey
levels of a single INTER_AREA pass. Measured on a 2-core machine, 640x480 input: ``area`` to
224x224 0.45 ms, to 256x256 0.85 ms (OpenCV's general INTER_AREA; no faster exact path);
``linear`` (INTER_LINEAR, aliases when shrinking a lot) 0.1 ms; ``lanczos`` (INTER_LANCZOS4) 1.2 ms.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import cv2
import numpy as np

from vla_perception.image_codec import to_rgb8

MODES = ("resize", "center_crop", "letterbox")
INTERPOLATIONS = {
    "antialias": cv2.INTER_LINEAR,  # Gaussian pyramid halving, then bilinear: see _resize
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "lanczos": cv2.INTER_LANCZOS4,
}
# Halve with the pyramid while the image is at least this many times the output on both axes.
_PYRAMID_MIN_RATIO = 1.8


def _positive_int(value: object, field: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"preprocess: {field} {value!r} is not an integer")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"preprocess: {field} {value!r} is not an integer") from None
    if number <= 0:
        raise ValueError(f"preprocess: {field} {number} must be positive")
    return number


@dataclass(frozen=True)
class CameraPreprocess:
    """How one camera's RGB frame becomes a policy input of shape (height, width, 3) uint8."""

    height: int  # output rows
    width: int  # output columns
    mode: str = "resize"  # "resize" | "center_crop" | "letterbox"
    crop: tuple[int, int, int, int] | None = None  # (top, left, height, width), applied first
    interpolation: str = "antialias"  # "antialias" | "area" | "linear" | "lanczos"
    pad_value: int = 0  # letterbox border grey level, 0..255

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", _positive_int(self.height, "height"))
        object.__setattr__(self, "width", _positive_int(self.width, "width"))
        if self.mode not in MODES:
            raise ValueError(f"preprocess: mode {self.mode!r} is not supported; use {', '.join(MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"preprocess: interpolation {self.interpolation!r} is not supported; "
                f"use {', '.join(INTERPOLATIONS)}"
            )
        if self.crop is not None:
            if isinstance(self.crop, (str, bytes)) or len(self.crop) != 4:
                raise ValueError(f"preprocess: crop {self.crop!r} must be (top, left, height, width)")
            top, left = (self._non_negative(value, "crop top/left") for value in self.crop[:2])
            crop_height = _positive_int(self.crop[2], "crop height")
            crop_width = _positive_int(self.crop[3], "crop width")
            object.__setattr__(self, "crop", (top, left, crop_height, crop_width))  # lists from YAML too
        if (
            isinstance(self.pad_value, bool)
            or not isinstance(self.pad_value, int)
            or not 0 <= self.pad_value <= 255
        ):
            raise ValueError(f"preprocess: pad_value {self.pad_value!r} is not an integer in 0..255")

    @staticmethod
    def _non_negative(value: object, field: str) -> int:
        if isinstance(value, bool):
            raise ValueError(f"preprocess: {field} {value!r} is not an integer")
        try:
            number = operator.index(value)
        except TypeError:
            raise ValueError(f"preprocess: {field} {value!r} is not an integer") from None
        if number < 0:
            raise ValueError(f"preprocess: {field} {number} is negative")
        return number

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Crop and resize an HxWx3 uint8 image; returns a new (height, width, 3) uint8 array."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            raise ValueError(f"preprocess: image shape {shape} dtype {dtype} is not HxWx3 uint8")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"preprocess: image shape {rgb.shape} is empty")
        region = self._fixed_crop(rgb)
        if self.mode == "resize":
            return _resize(region, self.width, self.height, self.interpolation)
        if self.mode == "center_crop":
            return _resize(
                _centre_to_aspect(region, self.width / self.height),
                self.width,
                self.height,
                self.interpolation,
            )
        return self._letterbox(region)

    def _fixed_crop(self, rgb: np.ndarray) -> np.ndarray:
        if self.crop is None:
            return rgb
        top, left, crop_height, crop_width = self.crop
        if top + crop_height > rgb.shape[0] or left + crop_width > rgb.shape[1]:
            raise ValueError(
                f"preprocess: crop (top, left, height, width) {self.crop} does not fit in an image of "
                f"{rgb.shape[0]} rows x {rgb.shape[1]} columns"
            )
        return rgb[top : top + crop_height, left : left + crop_width]

    def _letterbox(self, region: np.ndarray) -> np.ndarray:
        source_height, source_width = region.shape[:2]
        scale = min(self.width / source_width, self.height / source_height)
        inner_width = min(self.width, max(1, round(source_width * scale)))
        inner_height = min(self.height, max(1, round(source_height * scale)))
        output = np.full(self.output_shape, self.pad_value, dtype=np.uint8)
        top = (self.height - inner_height) // 2
        left = (self.width - inner_width) // 2
        output[top : top + inner_height, left : left + inner_width] = _resize(
            region, inner_width, inner_height, self.interpolation
        )
        return output


def _centre_to_aspect(region: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred sub-image whose width / height is ``aspect``."""
    height, width = region.shape[:2]
    if width / height > aspect:
        new_width = max(1, min(width, round(height * aspect)))
        left = (width - new_width) // 2
        return region[:, left : left + new_width]
    new_height = max(1, min(height, round(width / aspect)))
    top = (height - new_height) // 2
    return region[top : top + new_height]


def _resize(image: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray:
    source_height, source_width = image.shape[:2]
    if (source_width, source_height) == (width, height):
        return np.array(image, dtype=np.uint8, order="C")
    if interpolation == "antialias":
        # Each pyrDown low-passes (5x5 Gaussian) before it halves, so the final bilinear step never
        # shrinks by much: no aliasing, at a quarter of INTER_AREA's cost for 640x480 -> 256x256.
        while min(image.shape[1] / width, image.shape[0] / height) >= _PYRAMID_MIN_RATIO:
            image = cv2.pyrDown(image)
    if interpolation == "area":
        block_x, block_y = max(1, source_width // width), max(1, source_height // height)
        exact_blocks = source_width % block_x == 0 and source_height % block_y == 0
        if block_x > 1 and block_y > 1 and exact_blocks:
            # Integer block averaging is OpenCV's fast INTER_AREA path; the remainder is a small shrink.
            # (With a block of 1 on one axis the two passes measured slower than one, so not then.)
            image = cv2.resize(
                image, (source_width // block_x, source_height // block_y), interpolation=cv2.INTER_AREA
            )
            if image.shape[:2] == (height, width):
                return image
    return cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])


def to_policy_input(array: np.ndarray, encoding: str, preprocess: CameraPreprocess) -> np.ndarray:
    """A decoded frame in its own encoding -> the policy's RGB input.

    For 3-channel 8-bit frames the resize runs first and the channel swap on the small image
    (the same pixels, a fraction of the work); other encodings are converted to RGB first.
    """
    if encoding in ("rgb8", "bgr8", "8UC3") and array.ndim == 3 and array.dtype == np.uint8:
        small = preprocess.apply(array)
        return small if encoding == "rgb8" else cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    return preprocess.apply(to_rgb8(array, encoding))
