"""RT-2's action text: "terminate dx dy dz droll dpitch dyaw gripper" as 8 integers (pure, no torch).

The first integer is the end-of-episode flag (0 or 1); the other seven are bin indices
0..n_bins-1 (256 in RT-2) of the continuous dimensions, in the Bridge order. ``parse_action_text``
never raises anything but ``ValueError`` (whatever the input), so the policy node can turn a
malformed answer into "no action published". ``integer_spellings`` lists how each integer may be
written, for the grammar that constrains decoding to this format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

N_ACTION_BINS = 256  # RT-2's uniform bins per continuous dimension (the default of a checkpoint's n_bins)
N_ACTION_DIMS = 7  # dx dy dz droll dpitch dyaw gripper
N_ACTION_INTEGERS = 1 + N_ACTION_DIMS  # the terminate flag, then the seven bins

_INTEGER = re.compile(r"[0-9]+", re.ASCII)  # ASCII digits only: no signs, no decimals, no other scripts


@dataclass(frozen=True)
class ParsedAction:
    """One decoded answer: the terminate flag and the seven bin indices (model order and convention)."""

    terminate: bool
    bins: np.ndarray  # (7,) int64 in 0..n_bins-1
    n_bins: int = N_ACTION_BINS

    def __post_init__(self) -> None:
        bins = np.asarray(self.bins)
        if bins.shape != (N_ACTION_DIMS,) or not np.issubdtype(bins.dtype, np.integer):
            raise ValueError(f"ParsedAction.bins: expected {N_ACTION_DIMS} integers, got {bins!r}")
        if bins.min() < 0 or bins.max() >= self.n_bins:
            raise ValueError(f"ParsedAction.bins: values outside 0..{self.n_bins - 1}: {bins.tolist()}")


def _shown(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} chars)"


def check_n_bins(n_bins: int) -> int:
    """``n_bins`` if it is an integer >= 2 (the terminate flag needs 0 and 1); else a ValueError."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2 (RT-2 uses {N_ACTION_BINS}), got {n_bins!r}")
    return int(n_bins)


def integer_spellings(n_bins: int = N_ACTION_BINS, width: int = 0) -> tuple[tuple[str, ...], ...]:
    """How each of the 8 integers may be written: the terminate flag "0"/"1", then the bins.

    ``width`` 0 writes plain decimals without leading zeros ("7", "128"); ``width`` w > 0 writes every
    bin zero-padded to exactly w digits ("007"), which must hold ``n_bins - 1``. The terminate flag is
    always one digit.
    """
    n_bins = check_n_bins(n_bins)
    digits = len(str(n_bins - 1))
    if isinstance(width, bool) or not isinstance(width, int) or (width and width < digits) or width < 0:
        raise ValueError(
            f"number width {width!r}: use 0 (no leading zeros) or at least {digits} "
            f"(zero-padded to hold {n_bins - 1})"
        )
    bins = tuple(f"{k:0{width}d}" if width else str(k) for k in range(n_bins))
    return (("0", "1"),) + (bins,) * N_ACTION_DIMS


def parse_action_text(text: str, n_bins: int = N_ACTION_BINS) -> ParsedAction:
    """Parse "t b1 .. b7"; raises ValueError naming the problem (empty, count, non-integer, range).

    Leading zeros are accepted here; the decoding grammar decides which spellings a model may emit.
    """
    n_bins = check_n_bins(n_bins)
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
        if len(word.lstrip("0")) > len(str(n_bins)) or int(word) >= n_bins:  # no huge int() conversions
            raise ValueError(
                f"action text: integer {position} is {_shown(word)}, outside 0..{n_bins - 1} "
                f"in {_shown(text)}"
            )
        values.append(int(word))
    if values[0] not in (0, 1):
        raise ValueError(f"action text: terminate flag is {values[0]}, expected 0 or 1 in {_shown(text)}")
    return ParsedAction(values[0] == 1, np.asarray(values[1:], dtype=np.int64), n_bins)


def format_action_text(terminate: bool, bins: np.ndarray, n_bins: int = N_ACTION_BINS, width: int = 0) -> str:
    """The inverse of :func:`parse_action_text`, spelled as :func:`integer_spellings` says."""
    action = ParsedAction(bool(terminate), np.asarray(bins, dtype=np.int64), check_n_bins(n_bins))
    spellings = integer_spellings(n_bins, width)
    values = [int(action.terminate), *action.bins.tolist()]
    return " ".join(spellings[position][value] for position, value in enumerate(values))
