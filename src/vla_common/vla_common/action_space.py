"""Action spaces, normalisation statistics and the 256-bin action codec (pure numpy).

The discrete codec follows OpenVLA's published formulas: actions are normalised to [-1, 1] with the
dataset's q01/q99 (dimensions whose mask is False, the gripper, pass through unnormalised), then
binned with ``bins = linspace(-1, 1, n_bins)``. Encoding gives a bin index in 0..n_bins-2 (OpenVLA's
``digitize`` index minus one, so the top bin and index 254 coincide after the decoder's clip);
decoding returns the bin centre and unnormalises it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BRIDGE_DIM_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
# Bridge V2 was recorded at 5 Hz: each action is the change over 0.2 s. A property of the models'
# action space; the graph's control rate is config/control.yaml's and must match the policy's.
BRIDGE_STEP_DT_S = 0.2

ACTION_KINDS = ("continuous", "discrete")


@dataclass(frozen=True)
class NormStats:
    """Per-dimension action statistics as published with a checkpoint (q01/q99 bound the bins)."""

    q01: tuple[float, ...]
    q99: tuple[float, ...]
    mask: tuple[bool, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        dim = len(self.q01)
        for name in ("q99", "mask", "mean", "std"):
            value = getattr(self, name)
            if name in ("mean", "std") and len(value) == 0:
                continue
            if len(value) != dim:
                raise ValueError(f"NormStats.{name}: expected {dim} values like q01, got {len(value)}")
        q01, q99 = np.asarray(self.q01, float), np.asarray(self.q99, float)
        if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))):
            raise ValueError(f"NormStats: q01/q99 must be finite, got q01={self.q01} q99={self.q99}")
        bad = np.flatnonzero(q99 < q01)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"NormStats.q99[{i}]={self.q99[i]} is below q01[{i}]={self.q01[i]}")

    def as_dict(self) -> dict[str, list]:
        out: dict[str, list] = {"q01": list(self.q01), "q99": list(self.q99), "mask": list(self.mask)}
        if self.mean:
            out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        for key in ("q01", "q99", "mask"):
            if key not in data:
                raise ValueError(f"NormStats: missing key '{key}' (have {sorted(data)})")
        return cls(
            q01=tuple(float(v) for v in data["q01"]),
            q99=tuple(float(v) for v in data["q99"]),
            mask=tuple(bool(v) for v in data["mask"]),
            mean=tuple(float(v) for v in data.get("mean", ())),
            std=tuple(float(v) for v in data.get("std", ())),
        )


# bridge_orig statistics as published with OpenVLA (vla-conventions.md).
BRIDGE_ORIG_STATS = NormStats(
    q01=(-0.02873, -0.04170, -0.02609, -0.08092, -0.09289, -0.20718, 0.0),
    q99=(0.02831, 0.04086, 0.04016, 0.08192, 0.07793, 0.20383, 1.0),
    mask=(True, True, True, True, True, True, False),
    mean=(2.33e-4, 1.30e-4, -1.28e-4, -1.56e-4, -4.04e-4, 2.36e-4, 0.5765),
    std=(0.00977, 0.01369, 0.01267, 0.02853, 0.03064, 0.07691, 0.4974),
)


@dataclass(frozen=True)
class ActionSpace:
    """What a policy's actions mean: the frame, the dimensions, the step and how they are coded."""

    name: str = "bridge_ee_delta"
    dim_names: tuple[str, ...] = BRIDGE_DIM_NAMES
    step_dt_s: float = BRIDGE_STEP_DT_S
    kind: str = "continuous"
    n_bins: int = 256
    stats: NormStats = field(default_factory=lambda: BRIDGE_ORIG_STATS)

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"ActionSpace.kind '{self.kind}' is not one of {ACTION_KINDS}")
        if not self.step_dt_s > 0:
            raise ValueError(f"ActionSpace.step_dt_s must be > 0, got {self.step_dt_s}")
        if len(self.stats.q01) != len(self.dim_names):
            raise ValueError(
                f"ActionSpace.stats: {len(self.stats.q01)} dimensions, dim_names has {len(self.dim_names)}"
            )
        if self.n_bins < 2:
            raise ValueError(f"ActionSpace.n_bins must be >= 2, got {self.n_bins}")

    @property
    def dim(self) -> int:
        return len(self.dim_names)


def normalize(actions: np.ndarray, stats: NormStats) -> np.ndarray:
    """Training normalisation: clip(2 (x - q01) / (q99 - q01 + 1e-8) - 1, -1, 1) where mask."""
    actions = np.asarray(actions, dtype=np.float64)
    q01, q99 = np.asarray(stats.q01), np.asarray(stats.q99)
    mask = np.asarray(stats.mask, dtype=bool)
    scaled = np.clip(2.0 * (actions - q01) / (q99 - q01 + 1e-8) - 1.0, -1.0, 1.0)
    return np.where(mask, scaled, actions)


def unnormalize(normalized: np.ndarray, stats: NormStats) -> np.ndarray:
    """a = 0.5 (a + 1)(q99 - q01) + q01 where mask, else a."""
    normalized = np.asarray(normalized, dtype=np.float64)
    q01, q99 = np.asarray(stats.q01), np.asarray(stats.q99)
    mask = np.asarray(stats.mask, dtype=bool)
    return np.where(mask, 0.5 * (normalized + 1.0) * (q99 - q01) + q01, normalized)


def bin_edges(n_bins: int = 256) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n_bins)


def bin_centers(n_bins: int = 256) -> np.ndarray:
    edges = bin_edges(n_bins)
    return (edges[:-1] + edges[1:]) / 2.0


def encode_bins(normalized: np.ndarray, n_bins: int = 256) -> np.ndarray:
    """Normalised actions in [-1, 1] -> bin indices in 0..n_bins-2 (OpenVLA's digitize index - 1, clipped)."""
    values = np.clip(np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
    digitized = np.digitize(values, bin_edges(n_bins))  # 1..n_bins
    return np.clip(digitized - 1, 0, n_bins - 2).astype(np.int64)


def decode_bins(indices: np.ndarray, n_bins: int = 256) -> np.ndarray:
    """Bin indices -> bin centres in [-1, 1]; out-of-range indices are clipped as OpenVLA does."""
    idx = np.clip(np.asarray(indices, dtype=np.int64), 0, n_bins - 2)
    return bin_centers(n_bins)[idx]


def quantize_actions(actions: np.ndarray, space: ActionSpace) -> np.ndarray:
    """Continuous actions in the space's units -> bin indices (the discrete wire form)."""
    return encode_bins(normalize(actions, space.stats), space.n_bins)


def dequantize_actions(indices: np.ndarray, space: ActionSpace) -> np.ndarray:
    """Bin indices -> continuous actions in the space's units."""
    return unnormalize(decode_bins(indices, space.n_bins), space.stats)


def openvla_token_from_bin(indices: np.ndarray, vocab_size: int = 32000) -> np.ndarray:
    """Bin index (digitize - 1) -> Llama token id: token = vocab_size - digitize."""
    return vocab_size - (np.asarray(indices, dtype=np.int64) + 1)


def openvla_bin_from_token(tokens: np.ndarray, vocab_size: int = 32000, n_bins: int = 256) -> np.ndarray:
    """Llama token id -> bin index: clip(vocab_size - token - 1, 0, n_bins - 2)."""
    return np.clip(vocab_size - np.asarray(tokens, dtype=np.int64) - 1, 0, n_bins - 2)
