"""Where a new action chunk meets the actions already committed to the arm (real-time chunking;
issue 24, point 3), without torch.

While a chunk is computed the arm keeps running the previous one (``contract.CommittedActions``:
``actions[j]`` is the previous chunk's action for the new chunk's step ``j``, of which the first
``frozen_steps`` will have started before the new chunk arrives). The new chunk's steps fall in
three parts:

- the *frozen prefix* (steps ``< frozen``): decided already, the new chunk takes the committed
  actions exactly;
- the *overlap* (the next ``overlap`` steps the previous chunk also covers): bent toward the
  committed actions with the weights of :func:`soft_mask`, so that the join is smooth;
- the *fresh tail*: the policy's own.

:func:`join_extent` computes the two lengths for a chunk of ``horizon`` steps (one rule for every
backend); :func:`soft_mask` the per-step weights (Black et al. 2025, "Real-Time Execution of Action
Chunking Flow Policies", eq. 5). Octo's diffusion head inpaints its sampler toward them
(``backends.octo.realtime_chunking``); a chunking backend that cannot guide its sampler gets the
same constraint after the fact with :func:`blend_prefix`: the prefix-consistent blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_policy.contract import CommittedActions


def soft_mask(frozen: int, overlap: int, horizon: int) -> np.ndarray:
    """Per-step guidance weights (horizon,), float64: 1 on the ``frozen`` prefix, exponential decay
    (Black et al. 2025, eq. 5: w_i = c_i (e^{c_i} - 1) / (e - 1), c_i = (d + overlap - i) /
    (overlap + 1)) over the next ``overlap`` steps, 0 on the rest."""
    for name, value in (("frozen", frozen), ("overlap", overlap), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"soft_mask: {name} must be an integer, got {value!r}")
    if horizon < 1:
        raise ValueError(f"soft_mask: horizon must be >= 1, got {horizon}")
    if frozen < 0 or overlap < 0:
        raise ValueError(f"soft_mask: frozen and overlap must be >= 0, got frozen={frozen} overlap={overlap}")
    if frozen >= horizon:
        raise ValueError(
            f"soft_mask: frozen={frozen} leaves nothing new in a chunk of horizon={horizon}; the "
            "inference latency exceeds the chunk: use a longer chunk or a faster model"
        )
    if frozen + overlap > horizon:
        raise ValueError(
            f"soft_mask: frozen + overlap = {frozen} + {overlap} exceeds horizon={horizon}; "
            "the overlap is at most the previous chunk's remaining steps after the frozen prefix"
        )
    weights = np.zeros(horizon)
    weights[:frozen] = 1.0
    i = np.arange(frozen, frozen + overlap)
    c = (frozen + overlap - i) / (overlap + 1)
    weights[frozen : frozen + overlap] = c * np.expm1(c) / math.expm1(1.0)
    return weights


@dataclass(frozen=True)
class JoinExtent:
    """How a chunk of ``horizon`` steps joins the committed actions: ``frozen`` steps taken exactly,
    then ``overlap`` steps blended; ``clamped`` when the committed frozen prefix
    (``requested_frozen``) covered the whole chunk and was cut to ``horizon - 1`` so that the chunk
    still holds one new step (the inference took longer than the chunk lasts)."""

    frozen: int
    overlap: int
    requested_frozen: int

    @property
    def clamped(self) -> bool:
        return self.frozen < self.requested_frozen

    def info(self) -> dict[str, int | bool]:
        """The figures a backend reports in ``PolicyOutput.info``: rtc_frozen, rtc_overlap,
        rtc_frozen_clamped."""
        return {"rtc_frozen": self.frozen, "rtc_overlap": self.overlap, "rtc_frozen_clamped": self.clamped}


def join_extent(committed: CommittedActions, horizon: int) -> JoinExtent:
    """frozen = min(frozen_steps, horizon - 1), overlap = min(K, horizon) - frozen for K committed
    actions and a chunk of ``horizon`` steps."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"join_extent: horizon must be an integer >= 1 (the chunk's steps), got {horizon!r}")
    requested = committed.frozen_steps
    frozen = min(requested, int(horizon) - 1)
    overlap = min(len(committed.actions), int(horizon)) - frozen
    return JoinExtent(frozen=frozen, overlap=overlap, requested_frozen=requested)


def check_committed_dim(committed: CommittedActions, dim: int) -> None:
    """A ValueError naming ``observation.committed`` when its actions are not ``dim`` wide."""
    if committed.actions.shape[1] != dim:
        raise ValueError(
            f"observation.committed: actions are {committed.actions.shape[1]} wide, this backend's "
            f"action space has {dim} dimensions; give the previous chunk's actions in the backend's "
            "own (unnormalised) action space"
        )


def blend_prefix(chunk: np.ndarray, committed: CommittedActions) -> np.ndarray:
    """The prefix-consistent blend of a new ``chunk`` (H x D, continuous) with the committed actions:
    steps < frozen take the committed action exactly, the overlap steps are
    w * committed + (1 - w) * chunk with the :func:`soft_mask` weights, the rest are the chunk's
    (extents from :func:`join_extent`). Returns a new float64 array; ``chunk`` is not modified."""
    chunk = np.asarray(chunk, dtype=np.float64)
    if chunk.ndim != 2 or chunk.shape[0] < 1:
        raise ValueError(f"blend_prefix: chunk must be H x D with H >= 1, got shape {list(chunk.shape)}")
    check_committed_dim(committed, chunk.shape[1])
    if not np.all(np.isfinite(chunk)):
        raise ValueError("blend_prefix: chunk holds non-finite values")
    horizon = chunk.shape[0]
    extent = join_extent(committed, horizon)
    covered = extent.frozen + extent.overlap
    weights = soft_mask(extent.frozen, extent.overlap, horizon)[:covered, None]
    out = chunk.copy()
    out[:covered] = weights * committed.actions[:covered] + (1.0 - weights) * chunk[:covered]
    out[: extent.frozen] = committed.actions[: extent.frozen]  # exactly, not 1.0 * a + 0.0 * b
    return out
