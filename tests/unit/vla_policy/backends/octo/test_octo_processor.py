"""History window padding, image resizing and unnormalisation with the gripper mask."""

from __future__ import annotations

import numpy as np
import pytest

from vla_common.action_space import BRIDGE_DIM_NAMES, BRIDGE_ORIG_STATS, NormStats
from vla_policy.backends.octo.processor import (
    ObservationHistory,
    crop_image,
    prepare_image,
    resize_image,
    unnormalize_actions,
)


def frame(value: int) -> dict[str, np.ndarray]:
    return {"primary": np.full((4, 4, 3), value, np.uint8), "wrist": np.full((2, 2, 3), value, np.uint8)}


def test_window_pads_with_the_first_frame_and_masks_the_pad():
    history = ObservationHistory(window=2)
    stacked, mask = history.add(frame(1))
    assert mask.tolist() == [False, True]
    assert stacked["primary"].shape == (2, 4, 4, 3)
    assert (stacked["primary"][0] == 1).all() and (stacked["wrist"][1] == 1).all()
    stacked, mask = history.add(frame(2))
    assert mask.tolist() == [True, True]
    assert stacked["primary"][:, 0, 0, 0].tolist() == [1, 2]  # oldest first
    stacked, mask = history.add(frame(3))
    assert stacked["wrist"][:, 0, 0, 0].tolist() == [2, 3]
    history.reset()
    stacked, mask = history.add(frame(9))
    assert mask.tolist() == [False, True] and stacked["primary"][:, 0, 0, 0].tolist() == [9, 9]


def test_unnormalise_uses_mean_std_where_masked_and_passes_the_gripper():
    stats = BRIDGE_ORIG_STATS
    normalized = np.array([[1.0, -1.0, 0.5, 0.0, 2.0, -2.0, 0.7], [0, 0, 0, 0, 0, 0, 1.8]])
    actions = unnormalize_actions(normalized, stats, BRIDGE_DIM_NAMES)
    mean, std = np.array(stats.mean), np.array(stats.std)
    np.testing.assert_allclose(actions[:, :6], normalized[:, :6] * std[:6] + mean[:6])
    # mask False: the gripper is not unnormalised (0.7 * 0.4974 + 0.5765 would differ)
    assert actions[0, 6] == pytest.approx(0.7)
    assert actions[1, 6] == 1.0  # clipped into the gripper's [0, 1]


def test_unnormalise_follows_the_mask_not_the_position():
    stats = NormStats(q01=(0.0, 0.0), q99=(1.0, 1.0), mask=(False, True), mean=(10.0, 10.0), std=(2.0, 2.0))
    out = unnormalize_actions(np.array([1.0, 1.0]), stats, ("a", "b"))
    assert out.tolist() == [1.0, 12.0]


def test_unnormalise_without_mean_std_is_an_error():
    stats = NormStats(q01=(0.0,), q99=(1.0,), mask=(True,))
    with pytest.raises(ValueError, match="mean/std"):
        unnormalize_actions(np.zeros(1), stats, ("x",))


def test_resize_to_the_model_size_and_reject_non_rgb():
    out = resize_image(np.full((97, 131, 3), 200, np.uint8), (64, 32), "primary")
    assert out.shape == (64, 32, 3) and out.dtype == np.uint8 and (out == 200).all()
    same = np.zeros((8, 8, 3), np.uint8)
    assert resize_image(same, (8, 8), "wrist") is same
    with pytest.raises(ValueError, match="wrist"):
        resize_image(np.zeros((8, 8)), (8, 8), "wrist")


def test_crop_cuts_the_fractional_box_before_the_resize():
    image = np.arange(256 * 256 * 3, dtype=np.int64).reshape(256, 256, 3).astype(np.uint8)
    box = (0.3125, 0.21875, 0.625, 0.625)  # the sim preset's primary crop: rows 80-240, columns 56-216
    np.testing.assert_array_equal(crop_image(image, box, "primary"), image[80:240, 56:216])
    expected = resize_image(image[80:240, 56:216], (128, 128), "primary")
    np.testing.assert_array_equal(prepare_image(image, (128, 128), "primary", box), expected)
    np.testing.assert_array_equal(
        prepare_image(image, (64, 64), "wrist"), resize_image(image, (64, 64), "wrist")
    )
    with pytest.raises(ValueError, match="camera 'primary': crop .* is empty"):
        crop_image(np.zeros((4, 4, 3), np.uint8), (0.5, 0.5, 0.01, 0.5), "primary")
