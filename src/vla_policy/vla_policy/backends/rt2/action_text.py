"""RT-2's action text: "terminate dx dy dz droll dpitch dyaw gripper" as 8 integers (pure, no torch).

The first integer is the end-of-episode flag (0 or 1); the other seven are bin indices 0..255 of
the continuous dimensions, in the Bridge order. ``parse_action_text`` never raises anything but
``ValueError`` (whatever the input), so the policy node can turn a malformed answer into "no action
published".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

N_ACTION_BINS = 256  # RT-2's uniform bins per continuous dimension
N_ACTION_DIMS = 7  # dx dy dz droll dpitch dyaw gripper
N_ACTION_INTEGERS = 1 + N_ACTION_DIMS  # the terminate flag, then the seven bins

_INTEGER = re.compile(r"[0-9]+", re.ASCII)  # ASCII digits only: no signs, no decimals, no other scripts


@dataclass(frozen=True)
class ParsedAction:
    """One decoded answer: the terminate flag and the seven bin indices (model order and convention)."""

    terminate: bool
    bins: np.ndarray  # (7,) int64 in 0..255

    def __post_init__(self) -> None:
        bins = np.asarray(self.bins)
        if bins.shape != (N_ACTION_DIMS,) or not np.issubdtype(bins.dtype, np.integer):
            raise ValueError(f"ParsedAction.bins: expected {N_ACTION_DIMS} integers, got {bins!r}")
        if bins.min() < 0 or bins.max() >= N_ACTION_BINS:
            raise ValueError(f"ParsedAction.bins: values outside 0..{N_ACTION_BINS - 1}: {bins.tolist()}")


def _shown(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def parse_action_text(text: str) -> ParsedAction:
    """Parse "t b1 .. b7"; raises ValueError naming the problem (empty, count, non-integer, range)."""
    if not isinstance(text, str):
        raise ValueError(f"action text: expected a string, got {type(text).__name__}")
    words = text.split()
    if not words:
        raise ValueError(f"action text is empty: {_shown(text)}")
    if len(words) != N_ACTION_INTEGERS:
        raise ValueError(
            f"action text: expected {N_ACTION_INTEGERS} integers "
            f"(terminate dx dy dz droll dpitch dyaw gripper), got {len(words)} words: {_shown(text)}"
        )
    values = []
    for position, word in enumerate(words):
        if not _INTEGER.fullmatch(word):
            raise ValueError(f"action text: word {position} {_shown(word)} is not an integer: {_shown(text)}")
        if len(word.lstrip("0")) > 3 or int(word) >= N_ACTION_BINS:  # no huge int() conversions
            raise ValueError(
                f"action text: integer {position} is {_shown(word)}, outside 0..{N_ACTION_BINS - 1} "
                f"in {_shown(text)}"
            )
        values.append(int(word))
    if values[0] not in (0, 1):
        raise ValueError(f"action text: terminate flag is {values[0]}, expected 0 or 1 in {_shown(text)}")
    return ParsedAction(terminate=values[0] == 1, bins=np.asarray(values[1:], dtype=np.int64))


def format_action_text(terminate: bool, bins: np.ndarray) -> str:
    """The inverse of :func:`parse_action_text` (for tests and training-data tools)."""
    action = ParsedAction(bool(terminate), np.asarray(bins, dtype=np.int64))
    return " ".join(str(v) for v in [int(action.terminate), *action.bins.tolist()])
