"""The evaluation-time image options (Bridge JPEG + Lanczos-3 resize, LIBERO centre crop) against
independent implementations of what OpenVLA's evaluation code runs in TensorFlow.

- Lanczos-3: a float64 numpy transcription of TensorFlow's ScaleAndTranslate kernel (the op behind
  ``tf.image.resize(method="lanczos3", antialias=True)``: sample point (o + 0.5) / scale, kernel
  widened by 1 / scale when shrinking, span [ceil(c - r - 0.5), floor(c + r - 0.5)], weights
  normalised), not PIL.
- JPEG and the whole Bridge resize: TensorFlow's output on a small image, fixtures/bridge_resize_tf.npz
  (written by ``bash crosscheck/openvla/run.sh --write-fixture`` with tensorflow-cpu).
- Centre crop: torch's grid_sample (bilinear, align_corners=True) at tf.image.crop_and_resize's
  sample points, then tf.image.convert_image_dtype's float -> uint8 rule.
``make crosscheck`` compares the same functions with TensorFlow itself (docs/crosscheck.md).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vla_policy.backends.openvla.processing import (
    CENTER_CROP_AREA,
    ImageOptions,
    center_crop,
    jpeg_lanczos3_resize,
    jpeg_round_trip,
    lanczos3_resize,
    pixel_values,
    prepare_image,
)

NOISE = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
TF_FIXTURE = Path(__file__).parent / "fixtures" / "bridge_resize_tf.npz"


def _tf_lanczos3_matrix(in_size: int, out_size: int, radius: float = 3.0) -> np.ndarray:
    """Rows of TensorFlow's ScaleAndTranslate weights (scale_and_translate_op.cc, ComputeSpansCore)."""
    inv_scale = in_size / out_size
    kernel_scale = max(inv_scale, 1.0)
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        sample = (out + 0.5) * inv_scale
        start = max(int(np.ceil(sample - radius * kernel_scale - 0.5)), 0)
        end = min(int(np.floor(sample + radius * kernel_scale - 0.5)), in_size - 1) + 1
        distance = np.abs((np.arange(start, end) + 0.5 - sample) / kernel_scale)
        safe = np.maximum(distance, 1e-3)
        kernel = radius * np.sin(np.pi * safe) * np.sin(np.pi * safe / radius) / (np.pi**2 * safe**2)
        kernel = np.where(distance <= 1e-3, 1.0, np.where(distance > radius, 0.0, kernel))
        weights[out, start:end] = kernel / kernel.sum()
    return weights


def _tf_lanczos3(image: np.ndarray, size: int) -> np.ndarray:
    rows, cols = _tf_lanczos3_matrix(image.shape[0], size), _tf_lanczos3_matrix(image.shape[1], size)
    resized = np.einsum("oh,hwc->owc", rows, image.astype(np.float64))
    resized = np.einsum("owc,pw->opc", resized, cols)
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(120, 160), (256, 256), (480, 640), (100, 100)])
def test_lanczos3_matches_tensorflows_scale_and_translate(shape):
    image = np.random.default_rng(shape[0]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, reference = lanczos3_resize(image, 224), _tf_lanczos3(image, 224)
    differing = np.count_nonzero(ours != reference)
    # float32 vs float64 sums can only flip a value that lies within ~1e-4 of a rounding tie
    assert np.abs(ours.astype(int) - reference).max() <= 1 and differing <= 3


def test_jpeg_round_trip_and_bridge_resize_match_tensorflow():
    """bridge_resize_tf.npz: TensorFlow's own output (crosscheck/openvla/reference.py wrote it)."""
    reference = np.load(TF_FIXTURE)
    np.testing.assert_array_equal(jpeg_round_trip(reference["image"]), reference["tf_jpeg_round_trip"])
    ours = jpeg_lanczos3_resize(reference["image"], 32)
    assert np.abs(ours.astype(int) - reference["tf_resize_image_32"]).max() <= 1
    assert np.count_nonzero(ours != reference["tf_resize_image_32"]) <= 3


def test_jpeg_decoding_is_tensorflows_fast_idct_not_the_accurate_one():
    """Pillow/OpenCV's accurate IDCT of the same bytes differs by several levels: the test can tell."""
    ok, encoded = cv2.imencode(
        ".jpg",
        NOISE[..., ::-1],
        [
            cv2.IMWRITE_JPEG_QUALITY,
            95,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ],
    )
    assert ok
    accurate = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    ours = jpeg_round_trip(NOISE)
    assert np.abs(ours.astype(int) - NOISE).max() > 10  # noise does not survive JPEG: it really ran
    assert 0 < np.abs(ours.astype(int) - accurate).max() <= 16


def test_bridge_resize_is_jpeg_then_lanczos3():
    np.testing.assert_array_equal(
        jpeg_lanczos3_resize(NOISE, 224), lanczos3_resize(jpeg_round_trip(NOISE), 224)
    )


def _tf_center_crop(image: np.ndarray, size: int, area: float) -> np.ndarray:
    """tf.image.crop_and_resize of the centred box (sample points y1 (H-1) + i (y2-y1)(H-1)/(size-1)),
    bilinear through grid_sample, then convert_image_dtype(uint8, saturate=True)."""
    f32 = np.float32
    side = np.sqrt(f32(area))
    start = (f32(1) - side) / f32(2)
    end = start + side
    grids = []
    for length in image.shape[:2]:
        positions = start * f32(length - 1) + np.arange(size, dtype=f32) * (
            (end - start) * f32(length - 1) / f32(size - 1)
        )
        grids.append(torch.from_numpy(positions / f32(length - 1) * 2 - 1))
    grid_y, grid_x = torch.meshgrid(grids[0], grids[1], indexing="ij")
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() * f32(1 / 255)
    sampled = torch.nn.functional.grid_sample(
        pixels, torch.stack([grid_x, grid_y], dim=-1)[None], mode="bilinear", align_corners=True
    )[0].permute(1, 2, 0)
    return torch.clamp(torch.trunc(sampled.clamp(0, 1) * 255.5), 0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("shape", [(224, 224), (256, 256), (180, 240)])
def test_center_crop_matches_tensorflows_crop_and_resize(shape):
    image = np.random.default_rng(shape[1]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours, reference = center_crop(image, 224), _tf_center_crop(image, 224, CENTER_CROP_AREA)
    assert ours.shape == (224, 224, 3)
    # one float32 rounding step apart (grid_sample re-derives the positions from [-1, 1])
    assert np.abs(ours.astype(int) - reference).max() <= 1
    assert np.count_nonzero(ours != reference) <= ours.size // 1000


def test_center_crop_keeps_the_centre_and_drops_the_border():
    image = np.zeros((224, 224, 3), np.uint8)
    image[:5] = 255  # a bright band inside the 2.6 % border that a 90 % area crop removes
    image[100:124, 100:124] = 200
    cropped = center_crop(image, 224)
    assert cropped[:3].max() == 0 and cropped[112, 112, 0] == 200


def test_options_compose_in_the_evaluation_order():
    bridge_then_crop = prepare_image(NOISE, 224, ImageOptions(resize="jpeg-lanczos3", center_crop=True))
    np.testing.assert_array_equal(bridge_then_crop, center_crop(jpeg_lanczos3_resize(NOISE, 224), 224))
    plain = pixel_values(NOISE, 224)
    cropped = pixel_values(NOISE, 224, ImageOptions(center_crop=True))
    assert plain.shape == cropped.shape == (6, 224, 224) and not np.array_equal(plain, cropped)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="resize 'lanczos' is not one of bicubic, jpeg-lanczos3"):
        ImageOptions(resize="lanczos")
    with pytest.raises(ValueError, match="center_crop must be true or false, got 'yes'"):
        ImageOptions(center_crop="yes")
    with pytest.raises(ValueError, match=r"area must be in \(0, 1\], got 1.5"):
        center_crop(NOISE, 224, area=1.5)
