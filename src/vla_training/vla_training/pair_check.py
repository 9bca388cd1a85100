"""Does a trained Octo checkpoint act on the word that tells two objects apart? (``vla-stack pair-check``)

A decision clip and its counterfactual clip (``CollectOptions.counterfactual``, same seed) share
their first frame pixel for pixel; only the instruction and the expert's opening move differ. For
each such pair the checkpoint predicts the first chunk under both instructions (same sampler
seed), and the check compares the summed x, y of the chunk with the expert's:

- ``right``: the prediction points more along its own expert's move than along the other's;
- ``same_object_both``: one instruction right and the other wrong, i.e. the same object either way;
- ``word_shift_cm`` against ``expert_shift_cm``: how far the word moves the prediction, and how far
  it moves the expert; ``noise_shift_cm``: how far another sampler seed moves it (the scale of
  "no effect").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

PAIR_FAMILIES = ("pick_up", "place_in_bowl")


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-9))


def pair_outcome(predicted: list[np.ndarray], expert: list[np.ndarray], other_seed: np.ndarray) -> dict:
    """One pair: the predicted and expert summed xy moves (metres) under instruction 0 and 1, and the
    prediction under instruction 0 with another sampler seed."""
    right = [_cosine(predicted[i], expert[i]) > _cosine(predicted[i], expert[1 - i]) for i in range(2)]
    return {
        "right": right,
        "word_shift_cm": 100 * float(np.linalg.norm(predicted[0] - predicted[1])),
        "expert_shift_cm": 100 * float(np.linalg.norm(expert[0] - expert[1])),
        "noise_shift_cm": 100 * float(np.linalg.norm(predicted[0] - other_seed)),
    }


def summarise_pairs(outcomes: list[dict]) -> dict:
    if not outcomes:
        raise ValueError("pair check: no pairs to summarise (no counterfactual clip of the families asked)")
    right = np.array([o["right"] for o in outcomes], dtype=bool)
    median = {k: round(float(np.median([o[k] for o in outcomes])), 2) for k in outcomes[0] if k != "right"}
    return {
        "pairs": len(outcomes),
        "right_share": round(float(right.mean()), 3),
        "both_right": round(float(right.all(axis=1).mean()), 3),
        "same_object_both": round(float((right[:, 0] != right[:, 1]).mean()), 3),
        **{f"median_{k}": v for k, v in median.items()},
    }


def _first_move(backend, clip, instruction: str, seed: int) -> np.ndarray:
    backend.reset(seed)
    images = {c: clip[c][0] for c in backend.camera_names}
    chunk = backend.infer_prepared(images, clip["proprio"][0].astype(np.float64), instruction).chunk
    return np.asarray(chunk)[:, :2].sum(axis=0)


def pair_check(
    backend, decisions_dir: str | Path, counterfactuals_dir: str | Path, max_pairs: int = 100
) -> dict:
    """Run the check over the first ``max_pairs`` pick/place pairs (by seed) of the two folders."""
    decisions, counterfactuals = Path(decisions_dir), Path(counterfactuals_dir)
    files = sorted(counterfactuals.glob("episode_*.npz"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise FileNotFoundError(f"no episode_*.npz under {counterfactuals}; collect counterfactual frames")
    outcomes: list[dict] = []
    with tqdm(total=max_pairs, desc="pairs", unit="pair") as bar:
        for path in files:
            if len(outcomes) >= max_pairs:
                break
            partner = decisions / path.name
            with np.load(path) as b:
                if str(b["family"]) not in PAIR_FAMILIES:
                    continue
                if not partner.is_file():
                    raise FileNotFoundError(f"{path.name}: no decision clip of its seed under {decisions}")
                with np.load(partner) as a:
                    if not np.array_equal(a["proprio"][0], b["proprio"][0]):
                        raise ValueError(f"{path.name}: the two clips do not share their first frame")
                    clips = (a, b)
                    predicted = [_first_move(backend, c, str(c["instruction"]), 0) for c in clips]
                    expert = [np.asarray(c["actions"][0])[:, :2].sum(axis=0) for c in clips]
                    other = _first_move(backend, a, str(a["instruction"]), 1)
            outcomes.append(pair_outcome(predicted, expert, other))
            bar.update()
    return summarise_pairs(outcomes)
