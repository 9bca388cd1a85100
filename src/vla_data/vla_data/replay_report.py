"""The replay report: predicted actions against the bag's recorded ones, plus timing (pure, no ROS).

Predicted and recorded actions are both ``/vla/action`` chunks (vla_common.action_message). They
are paired by the observation stamp each carries: a replay feeds the graph the same frames under
the same stamps, so a recorded action and the replayed one computed from the same observation share
``stamp_ns``; when no stamp matches exactly, the nearest recorded action within ``tolerance_ns``
is used. Only the first row of each chunk is compared: it is the step that is executed first.

When the bag has no recorded actions the report says so (``reference: "none"``) and holds no error
section: deriving Bridge end-effector deltas from recorded joint commands would compare the policy
against the controller's smoothing and the safety layer's clipping, not against another policy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_common.action_message import decode_action_chunk

GRIPPER_DIM = "gripper"
# Bridge convention: gripper 1 = open, 0 = closed; agreement compares the open/closed decision.
GRIPPER_OPEN_THRESHOLD = 0.5


@dataclass(frozen=True)
class TimedAction:
    """The first step of one action chunk, with the observation stamp it was computed from."""

    stamp_ns: int
    dims: tuple[str, ...]
    values: np.ndarray  # [dims]
    inference_ms: float = 0.0


def parse_actions(texts: Sequence[str]) -> list[TimedAction]:
    """Decode /vla/action JSON messages; raises ValueError naming the message index."""
    actions = []
    for index, text in enumerate(texts):
        try:
            chunk = decode_action_chunk(text)
        except ValueError as exc:
            raise ValueError(f"action message {index}: {exc}") from exc
        actions.append(
            TimedAction(chunk.stamp_ns, chunk.space.dim_names, chunk.values[0].copy(), chunk.inference_ms)
        )
    return actions


def pair_actions(
    predicted: Sequence[TimedAction], recorded: Sequence[TimedAction], tolerance_ns: int
) -> list[tuple[TimedAction, TimedAction]]:
    """Each predicted action with the recorded one of the same (or nearest, within tolerance) stamp."""
    if not recorded:
        return []
    stamps = np.array([r.stamp_ns for r in recorded], dtype=np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps = stamps[order]
    pairs = []
    for action in predicted:
        i = int(np.searchsorted(stamps, action.stamp_ns))
        candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
        best = min(candidates, key=lambda j: abs(int(stamps[j]) - action.stamp_ns))
        if abs(int(stamps[best]) - action.stamp_ns) <= tolerance_ns:
            pairs.append((action, recorded[int(order[best])]))
    return pairs


def latency_stats(values_ms: Sequence[float]) -> dict[str, float | int]:
    """count, mean, p50, p90, p99, max of a list of milliseconds (count 0 and nothing else if empty)."""
    if len(values_ms) == 0:
        return {"count": 0}
    array = np.asarray(values_ms, dtype=np.float64)
    return {
        "count": int(array.size),
        "mean": round(float(array.mean()), 3),
        "p50": round(float(np.percentile(array, 50)), 3),
        "p90": round(float(np.percentile(array, 90)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "max": round(float(array.max()), 3),
    }


def action_errors(pairs: Sequence[tuple[TimedAction, TimedAction]]) -> dict[str, object]:
    """Per-dimension MAE and RMSE and the gripper agreement over paired actions."""
    if not pairs:
        return {"pairs": 0}
    dims = pairs[0][0].dims
    for predicted, recorded in pairs:
        if predicted.dims != dims or recorded.dims != dims:
            raise ValueError(
                f"action at stamp {predicted.stamp_ns}: dims {list(recorded.dims)} (recorded) and "
                f"{list(predicted.dims)} (predicted) differ from {list(dims)}"
            )
    predicted_values = np.stack([p.values for p, _ in pairs])
    recorded_values = np.stack([r.values for _, r in pairs])
    error = predicted_values - recorded_values
    out: dict[str, object] = {
        "pairs": len(pairs),
        "mae": {d: round(float(v), 6) for d, v in zip(dims, np.abs(error).mean(axis=0), strict=True)},
        "rmse": {d: round(float(v), 6) for d, v in zip(dims, np.sqrt((error**2).mean(axis=0)), strict=True)},
    }
    if GRIPPER_DIM in dims:
        k = dims.index(GRIPPER_DIM)
        open_predicted = predicted_values[:, k] >= GRIPPER_OPEN_THRESHOLD
        open_recorded = recorded_values[:, k] >= GRIPPER_OPEN_THRESHOLD
        out["gripper_agreement"] = round(float(np.mean(open_predicted == open_recorded)), 6)
    return out


# One name, one quantity: the report's latency_ms key says which one the replay measured.
LATENCY_KINDS = {
    # --fast (lockstep): wall time from the tick's /clock to the policy's action on that tick
    "tick_to_action": "wall ms from the control tick's /clock to the action (--fast)",
    # --rate R: from the observation's camera frame stamp to the action, in graph time / R
    "frame_to_action": "ms from the observation's frame stamp to the action (--rate)",
}


@dataclass(frozen=True)
class PlaybackStats:
    """What the player saw: counts per played topic, control ticks and the graph's answers."""

    frames_published: dict[str, int]
    frame_stamps: frozenset[int]  # header stamps of every published camera frame
    ticks: int
    observation_stamps: tuple[int, ...]  # one per observation perception produced
    action_latency_ms: tuple[float, ...]  # what it measures: action_latency_kind
    cameras: int
    action_latency_kind: str = "tick_to_action"  # one of LATENCY_KINDS

    def __post_init__(self) -> None:
        if self.action_latency_kind not in LATENCY_KINDS:
            raise ValueError(
                f"action_latency_kind {self.action_latency_kind!r} is not one of {', '.join(LATENCY_KINDS)}"
            )


def build_report(
    predicted_texts: Sequence[str],
    recorded_texts: Sequence[str],
    stats: PlaybackStats,
    *,
    tolerance_ns: int,
    bag: str = "",
    mode: str = "",
) -> dict[str, object]:
    """The JSON-ready replay report."""
    predicted = parse_actions(predicted_texts)
    recorded = parse_actions(recorded_texts)
    used = {s for s in stats.observation_stamps if s in stats.frame_stamps}
    answered = {a.stamp_ns for a in predicted}
    report: dict[str, object] = {
        "bag": bag,
        "mode": mode,
        "reference": "recorded /vla/action" if recorded else "none",
        "actions": {"predicted": len(predicted), "recorded": len(recorded)},
        "frames": {
            "published": dict(sorted(stats.frames_published.items())),
            "control_ticks": stats.ticks,
            "observations": len(stats.observation_stamps),
            # Perception samples the cameras at the control rate: frames between ticks are not used
            # by design; a tick without an observation, or an observation without an action, is a drop.
            "camera_sets_used": len(used),
            "ticks_without_observation": max(stats.ticks - len(stats.observation_stamps), 0),
            "observations_without_action": len(set(stats.observation_stamps) - answered),
        },
        "latency_ms": {
            "inference": latency_stats([a.inference_ms for a in predicted]),
            stats.action_latency_kind: latency_stats(stats.action_latency_ms),
        },
    }
    if recorded:
        report["action_error"] = action_errors(pair_actions(predicted, recorded, tolerance_ns))
    return report


def write_plot(
    path: Path,
    predicted_texts: Sequence[str],
    recorded_texts: Sequence[str],
) -> str | None:
    """Predicted vs recorded first-step actions over time, one panel per dimension.

    Returns None when the plot is written, else why not (and writes nothing): matplotlib is not
    installed, or there is no action to plot.
    """
    try:
        import matplotlib  # lazy: matplotlib is optional (no plot without it)

        matplotlib.use("Agg")  # before pyplot: no display needed
        import matplotlib.pyplot as plt  # lazy: matplotlib is optional
    except ImportError:
        return "matplotlib missing"
    predicted = parse_actions(predicted_texts)
    recorded = parse_actions(recorded_texts)
    series = [s for s in (predicted, recorded) if s]
    if not series:
        return "no action, predicted or recorded"
    dims = series[0][0].dims
    origin = min(s[0].stamp_ns for s in series)
    figure, axes = plt.subplots(len(dims), 1, figsize=(8, 1.6 * len(dims)), sharex=True, squeeze=False)
    for k, dim in enumerate(dims):
        axis = axes[k][0]
        for actions, label, style in ((recorded, "recorded", "-"), (predicted, "predicted", "--")):
            if actions:
                t = [(a.stamp_ns - origin) * 1e-9 for a in actions]
                axis.plot(t, [a.values[k] for a in actions], style, label=label)
        axis.set_ylabel(dim)
    axes[0][0].legend(loc="upper right")
    axes[-1][0].set_xlabel("observation time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return None


def write_report(path: Path, report: dict[str, object]) -> None:
    path.write_text(json.dumps(report, indent=2))
