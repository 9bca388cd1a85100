"""Octo's inputs and outputs around the model (numpy): image crop and resize, history window, unnormalising.

History (Octo's ``HistoryWrapper``): the policy sees the last ``window`` observations. Until that
many have arrived the window is padded by repeating the first observation, and the pad timesteps are
masked out (``timestep_mask`` False). ``reset()`` starts a new episode.

Unnormalisation: Octo normalises actions with mean/std where the mask is True (the gripper is left
as it is, absolute 0..1): a = a_n * std + mean where mask, else a_n. The gripper is then clipped to
[0, 1], the range the actuation's sticky-gripper threshold expects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from vla_common.action_space import NormStats


def resize_image(image: np.ndarray, size: tuple[int, int], camera: str) -> np.ndarray:
    """HxWx3 uint8 -> size (h, w) uint8; antialiased bilinear when the size differs."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera '{camera}': expected an HxWx3 RGB image, got shape {list(image.shape)}")
    if image.shape[:2] == tuple(size):
        return image.astype(np.uint8, copy=False)
    # lazy: torch, only when a frame needs resizing; demonstrations imports this module without torch
    # and loads it only in its worker processes
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def crop_image(image: np.ndarray, box: tuple[float, float, float, float], camera: str) -> np.ndarray:
    """The region (top, left, height, width), given as fractions of the image, of an HxWx3 image."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"camera '{camera}': expected an HxWx3 RGB image, got shape {list(image.shape)}")
    rows, cols = image.shape[:2]
    top, left = round(box[0] * rows), round(box[1] * cols)
    bottom, right = round((box[0] + box[2]) * rows), round((box[1] + box[3]) * cols)
    if bottom <= top or right <= left:
        raise ValueError(f"camera '{camera}': crop {list(box)} of a {rows}x{cols} image is empty")
    return image[top:bottom, left:right]


def prepare_image(
    image: np.ndarray,
    size: tuple[int, int],
    camera: str,
    crop: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """What the model sees of a camera frame: the fixed crop (if any), then the resize to ``size``."""
    if crop is not None:
        image = crop_image(image, crop, camera)
    return resize_image(image, size, camera)


class ObservationHistory:
    """The last ``window`` frames per camera, padded with the first frame, and the pad mask."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"history window must be >= 1, got {window}")
        self.window = window
        self.frames: deque[dict[str, np.ndarray]] = deque(maxlen=window)

    def reset(self) -> None:
        self.frames.clear()

    def add(self, images: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Append one observation; returns {camera: (window, H, W, 3)} and timestep_mask (window,)."""
        self.frames.append(dict(images))
        pads = self.window - len(self.frames)
        frames = [self.frames[0]] * pads + list(self.frames)
        stacked = {camera: np.stack([frame[camera] for frame in frames]) for camera in images}
        mask = np.array([False] * pads + [True] * len(self.frames))
        return stacked, mask


def unnormalize_actions(normalized: np.ndarray, stats: NormStats, dim_names: tuple[str, ...]) -> np.ndarray:
    """a * std + mean where mask, else a; the gripper clipped to [0, 1]."""
    if not stats.mean or not stats.std:
        raise ValueError("norm stats lack mean/std, which Octo's unnormalisation needs (a * std + mean)")
    normalized = np.asarray(normalized, dtype=np.float64)
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    mask = np.asarray(stats.mask, dtype=bool)
    if normalized.shape[-1] != mean.shape[0]:
        raise ValueError(f"action dim {normalized.shape[-1]} does not match the {mean.shape[0]} norm stats")
    actions = np.where(mask, normalized * std + mean, normalized)
    if "gripper" in dim_names:
        g = dim_names.index("gripper")
        actions[..., g] = np.clip(actions[..., g], 0.0, 1.0)
    return actions
