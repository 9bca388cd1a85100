"""Camera sensor noise for rendered frames (pure).

A renderer returns bit-identical frames while nothing moves, which a real camera never does; the
perception node's frozen-frame detector would then (rightly) refuse them. A little seeded Gaussian
read noise makes rendered frames behave like a sensor's.
"""

from __future__ import annotations

import numpy as np


def add_read_noise(rgb: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    if sigma <= 0:
        return rgb
    noise = rng.normal(0.0, sigma, size=rgb.shape).astype(np.float32)
    return np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)
