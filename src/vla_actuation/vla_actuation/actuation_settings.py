"""The actuation node's parameters in one place, and the settings they build (pure, no ROS).

Topics, the control rate and the servo rate size the node's publishers and timers, so they are
read-only. The safety limits, the execution mode and its tuning, and the joint-state timeout may
change while the node runs: :func:`build_settings` checks a full set of values exactly as at
start-up, and the node swaps the result in whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vla_actuation.chunk_executor import MODES, ChunkExecutor
from vla_actuation.ee_delta_controller import ControllerConfig
from vla_actuation.execution_stats import ExecutionStats
from vla_actuation.safety import SafetyLimits
from vla_common.action_message import MAX_ACTION_BYTES, MAX_CHUNK_STEPS
from vla_common.control_period import step_period_s
from vla_common.parameters import ParameterSpec, control_hz_spec, max_open_loop_spec

_DEFAULT_LIMITS = SafetyLimits()

PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec("robot_name", "wx250s", "Robot namespace of the driver topics", read_only=True),
    control_hz_spec("Control steps per second: one chunk step every 1/control_hz s"),
    ParameterSpec(
        "servo_hz", 50.0, "Rate of streamed joint targets (Hz)", minimum=1.0, maximum=1000.0, read_only=True
    ),
    ParameterSpec("execution_mode", "receding_horizon", "How action chunks are executed", choices=MODES),
    max_open_loop_spec(),  # shared with the policy: config/control.yaml
    ParameterSpec(
        "ensemble_decay",
        0.0,
        "Temporal ensembling weight decay (0 = uniform, Octo)",
        minimum=0.0,
        maximum=10.0,
    ),
    ParameterSpec(
        "joint_state_timeout_s", 0.5, "Hold when joint states are older (s)", minimum=0.01, maximum=10.0
    ),
    ParameterSpec(
        "servo_overrun_s",
        0.1,
        "A servo tick this late after the previous one is an overrun: re-plan from the measured joints (s)",
        minimum=0.005,
        maximum=5.0,
    ),
    ParameterSpec(
        "max_joint_state_jump_rad",
        0.3,
        "A measured joint moving more than this between two joint states is a jump (rad)",
        minimum=0.01,
        maximum=6.3,
    ),
    ParameterSpec(
        "joint_state_jump_confirm_s",
        0.1,
        "A jump is a reset (re-plan from there) once joint states agreeing with it span this long; "
        "before, it changes nothing (s)",
        minimum=0.0,
        maximum=5.0,
    ),
    ParameterSpec(
        "max_action_bytes",
        MAX_ACTION_BYTES,
        "Larger /vla/action messages are rejected before decoding (bytes)",
        minimum=1024,
        maximum=64 * 1024 * 1024,
    ),
    ParameterSpec(
        "max_action_steps",
        MAX_CHUNK_STEPS,
        "Action chunks with more steps are rejected (steps)",
        minimum=1,
        maximum=100_000,
    ),
    ParameterSpec(
        "max_translation_step_m",
        _DEFAULT_LIMITS.max_translation_step_m,
        "Per-step tool translation clip (m)",
        minimum=0.0,
        maximum=0.5,
    ),
    ParameterSpec(
        "max_rotation_step_rad",
        _DEFAULT_LIMITS.max_rotation_step_rad,
        "Per-step tool rotation clip (rad)",
        minimum=0.0,
        maximum=3.2,
    ),
    ParameterSpec(
        "workspace_low_m", list(_DEFAULT_LIMITS.workspace_low_m), "Workspace box low corner x,y,z (m)"
    ),
    ParameterSpec(
        "workspace_high_m", list(_DEFAULT_LIMITS.workspace_high_m), "Workspace box high corner x,y,z (m)"
    ),
    ParameterSpec(
        "joint_margin_rad",
        _DEFAULT_LIMITS.joint_margin_rad,
        "Motion toward a joint limit halts inside this margin (rad)",
        minimum=0.0,
        maximum=1.0,
    ),
    ParameterSpec(
        "max_joint_velocity_rad_s",
        float(_DEFAULT_LIMITS.max_joint_velocity_rad_s),
        "Joint speed limit (rad/s)",
        minimum=0.01,
        maximum=10.0,
    ),
    ParameterSpec(
        "command_timeout_s",
        _DEFAULT_LIMITS.command_timeout_s,
        "Actions older than this are stale (s)",
        minimum=0.01,
        maximum=10.0,
    ),
)


@dataclass(frozen=True)
class ActuationSettings:
    """Everything the actuation node's callbacks read from its parameters, validated together."""

    robot_name: str
    control_hz: float
    step_dt_s: float  # 1 / control_hz: the period of chunk steps and control ticks
    servo_hz: float
    execution_mode: str
    max_open_loop_s: float
    ensemble_decay: float
    joint_state_timeout_s: float
    servo_overrun_s: float
    max_joint_state_jump_rad: float
    joint_state_jump_confirm_s: float
    max_action_bytes: int
    max_action_steps: int
    limits: SafetyLimits

    @property
    def controller_config(self) -> ControllerConfig:
        return ControllerConfig(step_dt_s=self.step_dt_s, limits=self.limits)

    def chunk_executor(self) -> ChunkExecutor:
        """A fresh executor for chunks, in the chosen mode."""
        return ChunkExecutor(
            self.execution_mode,
            self.step_dt_s,
            max_open_loop_s=self.max_open_loop_s,
            ensemble_decay=self.ensemble_decay,
        )

    def step_executor(self) -> ChunkExecutor:
        """A fresh executor for one-step actions (OpenVLA, RT-2): always single steps."""
        return ChunkExecutor("single_step", self.step_dt_s, max_open_loop_s=self.max_open_loop_s)

    def execution_stats(self) -> ExecutionStats:
        """Fresh execution statistics, their step bounds from the control period and the limits."""
        return ExecutionStats(self.step_dt_s, self.limits)

    def same_step_bounds(self, other: ActuationSettings) -> bool:
        """Whether ``other`` has the same per-step bounds (else the execution statistics restart)."""
        return self.step_dt_s == other.step_dt_s and self.limits == other.limits

    def same_execution(self, other: ActuationSettings) -> bool:
        """Whether ``other`` executes chunks the same way (else the executors must be rebuilt)."""
        fields = ("step_dt_s", "execution_mode", "max_open_loop_s", "ensemble_decay")
        return all(getattr(self, name) == getattr(other, name) for name in fields)


def build_settings(values: Mapping[str, Any]) -> ActuationSettings:
    """Settings from a full set of parameter values; ValueError names the parameter and the value."""
    limits = SafetyLimits(
        max_translation_step_m=float(values["max_translation_step_m"]),
        max_rotation_step_rad=float(values["max_rotation_step_rad"]),
        workspace_low_m=tuple(values["workspace_low_m"]),
        workspace_high_m=tuple(values["workspace_high_m"]),
        joint_margin_rad=float(values["joint_margin_rad"]),
        max_joint_velocity_rad_s=float(values["max_joint_velocity_rad_s"]),
        command_timeout_s=float(values["command_timeout_s"]),
    )
    settings = ActuationSettings(
        robot_name=str(values["robot_name"]),
        control_hz=float(values["control_hz"]),
        step_dt_s=step_period_s(values["control_hz"]),
        servo_hz=float(values["servo_hz"]),
        execution_mode=str(values["execution_mode"]),
        max_open_loop_s=float(values["max_open_loop_s"]),
        ensemble_decay=float(values["ensemble_decay"]),
        joint_state_timeout_s=float(values["joint_state_timeout_s"]),
        servo_overrun_s=float(values["servo_overrun_s"]),
        max_joint_state_jump_rad=float(values["max_joint_state_jump_rad"]),
        joint_state_jump_confirm_s=float(values["joint_state_jump_confirm_s"]),
        max_action_bytes=int(values["max_action_bytes"]),
        max_action_steps=int(values["max_action_steps"]),
        limits=limits,
    )
    # Built once here so that a bad combination is refused now, not on the next chunk: the executor
    # checks the open-loop time against one step, the controller its step and limits.
    _ = settings.chunk_executor(), settings.controller_config
    return settings
