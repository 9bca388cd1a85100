"""The control period, derived from ``control_hz`` in one place, and the check that a chunk matches it.

Every action chunk carries ``step_dt_s``: the time between its steps that the policy assumed. A
node running at another rate would replay the chunk faster or slower than it was meant to, so the
actuation refuses it (and the policy warns at start-up when its backend's step differs).
"""

from __future__ import annotations

import math

# Relative difference below which a chunk's step_dt_s counts as the control period: JSON round
# trips and 1 / control_hz differ in the last bits only, a real mismatch (10 Hz vs 5 Hz) by 50 %.
STEP_DT_REL_TOLERANCE = 1e-3


def step_period_s(control_hz: float) -> float:
    """Seconds per control tick; ``control_hz`` must be a finite number > 0."""
    if isinstance(control_hz, bool) or not isinstance(control_hz, (int, float)):
        raise ValueError(f"control_hz: expected a number, got {control_hz!r}")
    if not (math.isfinite(control_hz) and control_hz > 0.0):
        raise ValueError(f"control_hz: must be a finite number > 0, got {control_hz!r}")
    return 1.0 / float(control_hz)


def step_dt_mismatch(
    chunk_step_dt_s: float, control_hz: float, rel_tolerance: float = STEP_DT_REL_TOLERANCE
) -> str | None:
    """Why a chunk stepped every ``chunk_step_dt_s`` cannot run at ``control_hz`` (None: it can)."""
    period_s = step_period_s(control_hz)
    if isinstance(chunk_step_dt_s, (int, float)) and math.isclose(
        chunk_step_dt_s, period_s, rel_tol=rel_tolerance, abs_tol=0.0
    ):
        return None
    return (
        f"chunk step_dt_s {chunk_step_dt_s!r} s differs from this node's control period "
        f"{period_s:g} s (control_hz {control_hz:g})"
    )
