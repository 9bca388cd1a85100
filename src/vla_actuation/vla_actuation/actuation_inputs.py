"""Checks on the actuation node's inputs before they are decoded or acted on (pure, no ROS).

Each returns a value or a reason naming the offending value; none raises on input. /vla/episode
is read by vla_common.inbound.decode_episode_event, as in every node.
"""

from __future__ import annotations

import numpy as np

from vla_actuation.safety import JOINT_OUT_OF_LIMITS, Violation, validate_joint_state
from vla_common.robot import ARM_JOINT_NAMES, FINGER_JOINT_NAME, FINGER_LOWER_M, FINGER_UPPER_M

# A measured finger this far outside its travel is a bad reading, not a small overshoot (m).
FINGER_STATE_TOLERANCE_M = 0.005


def action_size_problem(n_bytes: int, max_bytes: int) -> str | None:
    """Why an action message of ``n_bytes`` is refused before decoding, or None."""
    if n_bytes > max_bytes:
        return f"message of {n_bytes} bytes exceeds max_action_bytes {max_bytes}"
    return None


def joint_state_jump_rad(
    previous: object, current: object, elapsed_s: float = 0.0, speed_rad_s: object = 0.0
) -> float:
    """How far a measured joint moved between two joint states beyond what ``speed_rad_s`` (one per
    joint, or one for all) allows over the ``elapsed_s`` between their stamps (rad, the largest over
    the joints); 0 without a previous state. An arm moving at its speed limit while joint states
    arrive late or bunched never counts as a jump; a reset we were not told of does."""
    if previous is None:
        return 0.0
    change = np.abs(np.asarray(current, dtype=float) - np.asarray(previous, dtype=float))
    allowed = np.asarray(speed_rad_s, dtype=float) * max(0.0, float(elapsed_s))
    return float(np.max(change - allowed))


def joint_state_stamp_problem(stamp_ns: int, now_ns: int, max_ahead_s: float) -> str | None:
    """Why a joint state's stamp is refused (more than ``max_ahead_s`` ahead of the node's clock), or
    None. A state from the future would keep the measurement fresh, and the hold on silent joint
    states (joint_state_timeout_s) off, until the clock caught up."""
    ahead_s = (stamp_ns - now_ns) * 1e-9
    if ahead_s > max_ahead_s:
        return f"joint_states: stamped {ahead_s:.3f} s ahead of this node's clock (> {max_ahead_s} s)"
    return None


def decode_joint_state(names: object, positions: object) -> tuple[np.ndarray | None, float | None, tuple]:
    """The arm joints (``ARM_JOINT_NAMES`` order) and the finger (None when the state has none) of a
    JointState, or ``(None, None, violations)``: every joint the node uses is checked before anything
    is stored (a finite arm with a NaN or infinite ``left_finger`` is refused whole; so is a finger
    more than ``FINGER_STATE_TOLERANCE_M`` outside its travel)."""
    names = list(names)
    wanted = ARM_JOINT_NAMES + ((FINGER_JOINT_NAME,) if FINGER_JOINT_NAME in names else ())
    values, violations = validate_joint_state(names, positions, wanted)
    if values is None:
        return None, None, violations
    if len(values) == len(ARM_JOINT_NAMES):
        return values, None, ()
    finger = float(values[-1])
    excess = max(FINGER_LOWER_M - finger, finger - FINGER_UPPER_M)
    if excess > FINGER_STATE_TOLERANCE_M:
        message = (
            f"{FINGER_JOINT_NAME}: {finger:.4f} m is {excess:.4f} m outside its travel "
            f"[{FINGER_LOWER_M}, {FINGER_UPPER_M}]"
        )
        return None, None, (Violation(JOINT_OUT_OF_LIMITS, FINGER_JOINT_NAME, finger, message),)
    return values[: len(ARM_JOINT_NAMES)], finger, ()


def episode_start_problem(stamp_ns: int) -> str | None:
    """Why a start event is not acted on, or None: one without a stamp (``stamp_ns`` 0 or absent)
    orders nothing (no action or joint state is older than it) and would only make the stream forget
    the last point it sent, while the arm moves on."""
    if stamp_ns <= 0:
        return "a start event without stamp_ns (the episode's start on the sim's clock) orders nothing"
    return None


ACCEPT = "accept"  # continuous with the last accepted state (or the first one)
RESET = "reset"  # a jump confirmed by states that agree with it for confirm_s: the arm was moved
UNCONFIRMED = "unconfirmed"  # a jump nothing confirms yet: not stored, changes nothing


class JointStateContinuity:
    """Which measured joint states the node may act on, and which say the arm was moved (pure).

    A state that moved further than ``max_jump_rad`` beyond what ``speed_rad_s`` allows since the
    last accepted one is a jump. One state is not believed: a jump becomes a reset (the stream's
    speed reference may then follow the measurement) only once states that agree with it (no jump
    between them) span at least ``confirm_s``, by their stamps and by their arrivals (``now_ns``, the
    node's clock); until then it is not stored (``in_doubt``: the node sends nothing new), and a
    state continuous with the accepted ones discards it (a lie, a glitch). The time allowed between
    two states is their stamps' interval, at most their arrivals' interval plus ``arrival_slack_s``:
    a state stamped in the future does not buy itself room to jump.
    """

    def __init__(self, max_jump_rad: float, speed_rad_s: object, confirm_s: float, arrival_slack_s: float):
        self.max_jump_rad = float(max_jump_rad)
        self.speed_rad_s = np.asarray(speed_rad_s, dtype=float)
        self.confirm_s = float(confirm_s)
        self.arrival_slack_s = float(arrival_slack_s)
        self.accepted: tuple[np.ndarray, int, int] | None = None  # (joints, stamp ns, arrival ns)
        # (first stamp, first arrival, joints, stamp, arrival) of the states agreeing with a jump
        self._pending: tuple[int, int, np.ndarray, int, int] | None = None

    @property
    def in_doubt(self) -> bool:
        """A jump waits for confirmation: the measurement is in doubt (the node sends nothing new)."""
        return self._pending is not None

    def _jump(self, reference: tuple[np.ndarray, int, int], joints: np.ndarray, stamp_ns: int, now_ns: int):
        by_stamp = (stamp_ns - reference[1]) * 1e-9
        by_arrival = (now_ns - reference[2]) * 1e-9 + self.arrival_slack_s
        return joint_state_jump_rad(reference[0], joints, min(by_stamp, by_arrival), self.speed_rad_s)

    def admit(self, joints: np.ndarray, stamp_ns: int, now_ns: int) -> tuple[str, float]:
        """``(ACCEPT | RESET | UNCONFIRMED, jump rad from the last accepted state)``."""
        if self.accepted is None:
            self.accepted = (joints, stamp_ns, now_ns)
            return ACCEPT, 0.0
        jump = self._jump(self.accepted, joints, stamp_ns, now_ns)
        pending = self._pending
        # A state that agrees with a jump in doubt goes on confirming it, even once the time since the
        # last accepted state would allow the distance: the arm was moved (an episode's reset pose), and
        # only a reset moves the node's reference to it (accepted as continuous, the stream would go on
        # from the old pose).
        if pending is not None and self._jump(pending[2:], joints, stamp_ns, now_ns) <= self.max_jump_rad:
            first_ns, first_arrival_ns = pending[:2]
        elif jump <= self.max_jump_rad:
            self.accepted, self._pending = (joints, stamp_ns, now_ns), None
            return ACCEPT, jump
        else:
            first_ns, first_arrival_ns = stamp_ns, now_ns
        self._pending = (first_ns, first_arrival_ns, joints, stamp_ns, now_ns)
        if min(stamp_ns - first_ns, now_ns - first_arrival_ns) * 1e-9 >= self.confirm_s:
            self.accepted, self._pending = (joints, stamp_ns, now_ns), None
            return RESET, jump
        return UNCONFIRMED, jump
