"""RT-2 bins -> Bridge actions, and the ActionSpace whose codec decodes them exactly (pure numpy).

RT-2 codes each continuous dimension in N = 256 uniform bins over the checkpoint's [low, high] (a
checkpoint may declare another ``n_bins``). Two decodings of bin ``k`` are in use, and the checkpoint
says which one it was trained with:

- ``"rt1_levels"``: RT-1's action tokenizer, ``k = int((a - low) / (high - low) * (N - 1))`` on the
  way in and ``a = low + k (high - low) / (N - 1)`` on the way out (N levels including both ends);
- ``"bin_centers"``: the centre of the k-th of N equal bins, ``a = low + (k + 1/2)(high - low) / N``.

Both are affine in k: ``a = offset + k * step``. This project's discrete codec
(:func:`~vla_common.action_space.dequantize_actions`) decodes an index as the OpenVLA-style centre
``-1 + (k + 1/2) * 2 / (n_bins - 1)`` and unnormalises it with q01/q99, and it clips indices to
0..n_bins-2, i.e. ``n_bins`` counts bin *edges*. OpenVLA's 256 edges give only 255 bins, so with
``n_bins=256`` RT-2's top bin would decode one bin low. The space declared here therefore uses
``n_bins=N+1`` (N bins) and ``q01 = offset - step/2``, ``q99 = q01 + N step``: every one of RT-2's
N bins then decodes to exactly its value. Note the half-bin shift: q01/q99 are not low/high
(for "rt1_levels" they lie half a level outside them; for "bin_centers" they equal them).

The gripper is converted to the Bridge convention (1 = open, 0 = closed) here, in bin space, so that
the wire carries Bridge bins: ``b = (g - closed) / (open - closed)``; a convention where open < closed
(RT-1: -1 open, +1 closed) reverses the bin order (k -> N - 1 - k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_common.action_space import BRIDGE_DIM_NAMES, ActionSpace, NormStats
from vla_policy.backends.rt2.action_text import N_ACTION_BINS, N_ACTION_DIMS, check_n_bins

BIN_DECODINGS = ("rt1_levels", "bin_centers")

# Gripper conventions: (value meaning fully open, value meaning fully closed) in the model's units.
GRIPPER_CONVENTIONS = {"rt1": (-1.0, 1.0), "bridge": (1.0, 0.0)}

# RT-1's action ranges (vla-conventions.md): translation [-1, 1], rotation [-pi/2, pi/2], gripper
# [-1, 1] with -1 open and +1 closed.
RT1_ACTION_LOW = (-1.0, -1.0, -1.0, -np.pi / 2, -np.pi / 2, -np.pi / 2, -1.0)
RT1_ACTION_HIGH = (1.0, 1.0, 1.0, np.pi / 2, np.pi / 2, np.pi / 2, 1.0)

GRIPPER = N_ACTION_DIMS - 1


@dataclass(frozen=True)
class ActionBinning:
    """How a checkpoint's bins map to actions: per-dimension ranges, decoding, gripper convention.

    ``low``/``high`` are in the Bridge units the model was trained on (metres and radians per step),
    except the gripper, which is in the model's own convention (``gripper_convention``).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    bin_decoding: str = "rt1_levels"
    gripper_convention: str = "rt1"
    n_bins: int = N_ACTION_BINS  # uniform bins per dimension

    def __post_init__(self) -> None:
        check_n_bins(self.n_bins)
        if len(self.low) != N_ACTION_DIMS or len(self.high) != N_ACTION_DIMS:
            raise ValueError(
                f"action ranges: expected {N_ACTION_DIMS} values in low and high, "
                f"got {len(self.low)} and {len(self.high)}"
            )
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"action ranges must be finite: low={list(self.low)} high={list(self.high)}")
        bad = np.flatnonzero(high <= low)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"action ranges: high[{i}]={self.high[i]} is not above low[{i}]={self.low[i]}")
        if self.bin_decoding not in BIN_DECODINGS:
            raise ValueError(f"bin_decoding '{self.bin_decoding}' is not one of {BIN_DECODINGS}")
        if self.gripper_convention not in GRIPPER_CONVENTIONS:
            raise ValueError(
                f"gripper_convention '{self.gripper_convention}' is not one of {sorted(GRIPPER_CONVENTIONS)}"
            )

    def _model_affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset, step) per dimension so that the model-unit value of bin k is offset + k * step."""
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        if self.bin_decoding == "rt1_levels":
            step = (high - low) / (self.n_bins - 1)
            return low, step
        step = (high - low) / self.n_bins
        return low + 0.5 * step, step

    def _gripper_affine(self) -> tuple[float, float]:
        """(scale, shift) with bridge = scale * g + shift (1 = open, 0 = closed)."""
        open_value, closed_value = GRIPPER_CONVENTIONS[self.gripper_convention]
        scale = 1.0 / (open_value - closed_value)
        return scale, -closed_value * scale

    @property
    def gripper_reversed(self) -> bool:
        return self._gripper_affine()[0] < 0

    def model_values(self, bins: np.ndarray) -> np.ndarray:
        """Bins (..., 7) in the model's order and convention -> values in the model's units."""
        offset, step = self._model_affine()
        return offset + np.asarray(bins, dtype=np.int64) * step

    def gripper_to_bridge(self, gripper: np.ndarray) -> np.ndarray:
        """A gripper value in the model's convention -> Bridge (1 = open, 0 = closed)."""
        scale, shift = self._gripper_affine()
        return scale * np.asarray(gripper, dtype=np.float64) + shift

    def bridge_actions(self, bins: np.ndarray) -> np.ndarray:
        """Bins (..., 7) from the model -> continuous Bridge actions (m, rad, gripper 1 = open)."""
        values = self.model_values(bins)
        values[..., GRIPPER] = self.gripper_to_bridge(values[..., GRIPPER])
        return values

    def bridge_bins(self, bins: np.ndarray) -> np.ndarray:
        """Bins from the model -> the bins sent on the wire (the gripper in Bridge order)."""
        out = np.array(bins, dtype=np.int64, copy=True)
        if self.gripper_reversed:
            out[..., GRIPPER] = self.n_bins - 1 - out[..., GRIPPER]
        return out

    def norm_stats(self) -> NormStats:
        """q01/q99 that make ``dequantize_actions(bridge_bins(k))`` equal ``bridge_actions(k)``."""
        offset, step = self._model_affine()
        scale, shift = self._gripper_affine()
        # Bridge-bin affine map for the gripper: value = offset + k' * step with k' the Bridge bin.
        g_offset, g_step = scale * offset[GRIPPER] + shift, scale * step[GRIPPER]
        if g_step < 0:  # reversed: k' = n_bins - 1 - k
            g_offset, g_step = g_offset + (self.n_bins - 1) * g_step, -g_step
        offset, step = offset.copy(), step.copy()
        offset[GRIPPER], step[GRIPPER] = g_offset, g_step
        q01 = offset - 0.5 * step
        q99 = q01 + self.n_bins * step
        return NormStats(
            q01=tuple(float(v) for v in q01),
            q99=tuple(float(v) for v in q99),
            mask=(True,) * N_ACTION_DIMS,  # every dimension, the gripper included, is binned
        )

    def action_space(self, kind: str = "discrete") -> ActionSpace:
        """The Bridge end-effector delta space of this checkpoint (single steps at 5 Hz)."""
        return ActionSpace(
            name="bridge_ee_delta",
            dim_names=BRIDGE_DIM_NAMES,
            kind=kind,
            n_bins=self.n_bins + 1,  # ActionSpace.n_bins counts edges: n_bins + 1 edges hold n_bins bins
            stats=self.norm_stats(),
        )
