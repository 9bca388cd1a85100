"""Per-camera crop / resize / letterbox: validation, output shapes, where content lands, speed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vla_perception.preprocess import CameraPreprocess

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def quadrants(height: int = 480, width: int = 640) -> np.ndarray:
    """Top-left red, top-right green, bottom-left blue, bottom-right white."""
    image = np.zeros((height, width, 3), np.uint8)
    half_h, half_w = height // 2, width // 2
    image[:half_h, :half_w] = RED
    image[:half_h, half_w:] = GREEN
    image[half_h:, :half_w] = BLUE
    image[half_h:, half_w:] = WHITE
    return image


def colour_at(image: np.ndarray, row: int, column: int) -> tuple[int, ...]:
    return tuple(int(value) for value in image[row, column])


@pytest.mark.parametrize("mode", ["resize", "center_crop", "letterbox"])
@pytest.mark.parametrize("interpolation", ["antialias", "area", "linear", "lanczos"])
@pytest.mark.parametrize("size", [(224, 224), (256, 256), (180, 320), (600, 800)])
def test_output_shape_and_dtype(mode: str, interpolation: str, size: tuple[int, int]) -> None:
    out = CameraPreprocess(*size, mode=mode, interpolation=interpolation).apply(quadrants())
    assert out.shape == (*size, 3)
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_resize_keeps_quadrants_in_place() -> None:
    out = CameraPreprocess(224, 224).apply(quadrants())
    assert colour_at(out, 10, 10) == RED
    assert colour_at(out, 10, 213) == GREEN
    assert colour_at(out, 213, 10) == BLUE
    assert colour_at(out, 213, 213) == WHITE


def test_fast_area_path_matches_single_pass_area_on_a_smooth_image() -> None:
    import cv2

    rows, columns = np.mgrid[0:480, 0:640]
    ramps = [columns * 255 // 639, rows * 255 // 479, (rows + columns) * 255 // 1118]
    smooth = cv2.GaussianBlur(np.stack(ramps, axis=2).astype(np.uint8), (0, 0), 2)
    ours = CameraPreprocess(224, 224).apply(smooth).astype(int)
    reference = cv2.resize(smooth, (224, 224), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(ours - reference).max() <= 3


def test_center_crop_cuts_the_sides_of_a_wide_image() -> None:
    image = quadrants()
    image[:, :80] = 0  # left and right 80 columns black: a 480x480 centre crop removes them exactly
    image[:, 560:] = 0
    out = CameraPreprocess(240, 240, mode="center_crop").apply(image)
    assert out.max(axis=2).min() > 0  # no black strip survived
    assert colour_at(out, 5, 5) == RED
    assert colour_at(out, 234, 234) == WHITE


def test_letterbox_pads_top_and_bottom_of_a_wide_image() -> None:
    out = CameraPreprocess(256, 256, mode="letterbox", pad_value=7).apply(quadrants())
    # 640x480 fits as 256x192: 32 rows of padding above and below.
    assert colour_at(out, 0, 128) == (7, 7, 7)
    assert colour_at(out, 31, 128) == (7, 7, 7)
    assert colour_at(out, 224, 128) == (7, 7, 7)
    assert colour_at(out, 34, 5) == RED
    assert colour_at(out, 34, 250) == GREEN
    assert colour_at(out, 221, 5) == BLUE
    assert colour_at(out, 221, 250) == WHITE


def test_letterbox_pads_the_sides_of_a_tall_image() -> None:
    out = CameraPreprocess(100, 100, mode="letterbox").apply(quadrants(400, 200))
    assert out[:, :25].max() == 0 and out[:, 75:].max() == 0
    assert colour_at(out, 2, 27) == RED
    assert colour_at(out, 97, 72) == WHITE


def test_fixed_crop_is_applied_before_the_resize() -> None:
    # The bottom-right quadrant alone, resized: all white.
    out = CameraPreprocess(64, 64, crop=(240, 320, 240, 320)).apply(quadrants())
    assert out.min() == 255
    # A crop straddling the vertical boundary: left half red, right half green.
    out = CameraPreprocess(50, 100, crop=[0, 220, 200, 200], interpolation="linear").apply(quadrants())
    assert colour_at(out, 25, 10) == RED
    assert colour_at(out, 25, 90) == GREEN


def test_crop_outside_the_image_names_both_sizes() -> None:
    with pytest.raises(ValueError, match=r"crop .*\(400, 0, 100, 100\).*480 rows x 640 columns"):
        CameraPreprocess(64, 64, crop=(400, 0, 100, 100)).apply(quadrants())


def test_identity_size_returns_an_equal_copy() -> None:
    image = quadrants(224, 224)
    out = CameraPreprocess(224, 224).apply(image)
    np.testing.assert_array_equal(out, image)
    assert not np.shares_memory(out, image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"height": 0, "width": 224}, "height 0"),
        ({"height": 224, "width": -3}, "width -3"),
        ({"height": 224.0, "width": 224}, "height 224.0"),
        ({"height": True, "width": 224}, "height True"),
        ({"height": 224, "width": 224, "mode": "stretch"}, "mode 'stretch'"),
        ({"height": 224, "width": 224, "interpolation": "cubic"}, "interpolation 'cubic'"),
        ({"height": 224, "width": 224, "crop": (0, 0, 10)}, r"crop \(0, 0, 10\)"),
        ({"height": 224, "width": 224, "crop": (-1, 0, 10, 10)}, "crop top/left -1"),
        ({"height": 224, "width": 224, "crop": (0, 0, 0, 10)}, "crop height 0"),
        ({"height": 224, "width": 224, "pad_value": 300}, "pad_value 300"),
    ],
)
def test_invalid_configuration_names_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CameraPreprocess(**kwargs)


@pytest.mark.parametrize(
    "image",
    [np.zeros((48, 64), np.uint8), np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64, 3), np.float32)],
)
def test_apply_rejects_anything_but_hxwx3_uint8(image: np.ndarray) -> None:
    with pytest.raises(ValueError, match="is not HxWx3 uint8"):
        CameraPreprocess(32, 32).apply(image)


def test_config_is_frozen_and_crop_lists_become_tuples() -> None:
    config = CameraPreprocess(224, 224, crop=[1, 2, 3, 4])
    assert config.crop == (1, 2, 3, 4)
    with pytest.raises(AttributeError):
        config.height = 10  # type: ignore[misc]


def _checkerboard(height: int = 480, width: int = 640) -> np.ndarray:
    board = ((np.indices((height, width)).sum(axis=0) % 2) * 255).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


@pytest.mark.parametrize("size", [(224, 224), (256, 256), (128, 128)])
def test_antialias_does_not_alias_a_pixel_checkerboard(size: tuple[int, int]) -> None:
    # A 1-pixel checkerboard is pure high frequency: a proper shrink gives flat grey (127.5);
    # plain bilinear sampling keeps stripes of the pattern.
    board = _checkerboard()
    antialiased = CameraPreprocess(*size, interpolation="antialias").apply(board).astype(float)
    bilinear = CameraPreprocess(*size, interpolation="linear").apply(board).astype(float)
    assert np.abs(antialiased - 127.5).max() < 12
    assert np.abs(bilinear - 127.5).max() > 40


def test_antialias_stays_close_to_area_on_smooth_images() -> None:
    rng = np.random.default_rng(3)
    smooth = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 4)
    for size in [(224, 224), (256, 256)]:
        area = CameraPreprocess(*size, interpolation="area").apply(smooth).astype(int)
        antialiased = CameraPreprocess(*size, interpolation="antialias").apply(smooth).astype(int)
        assert np.abs(area - antialiased).mean() < 1.5 and np.abs(area - antialiased).max() < 12
