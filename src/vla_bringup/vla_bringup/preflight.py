"""``vla-stack inspect``: a checkpoint against the graph that would run it, before anything moves (pure).

:func:`graph_parameters` merges each node's params files of a launch profile in the order the
launcher loads them (config/<node>.yaml, the profile's overrides file, config/control.yaml), then
the profile's fixed parameters and the ``--set`` overrides (a named policy expanded as the launcher
does). :func:`preflight` reads what the policy node would build from them (backend, checkpoint,
cameras, action kind, chunk length, backend options), what perception feeds each camera (topic,
size after its resize) and what actuation plays (execution mode, control period, open-loop bound),
and compares that with the checkpoint's :class:`~vla_policy.checkpoint_summary.CheckpointSummary`.
Every mismatch (the run would fail or act wrongly) is a line that names the parameter or flag to
change; notes say what will happen that is not an error (an absent camera Octo pads, a resize).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vla_bringup.deployment import node_parameters
from vla_bringup.policies import expand_policy_overrides
from vla_bringup.profiles import profile
from vla_policy.checkpoint_summary import CheckpointSummary

_EPS = 1e-9  # as the chunk executor: a step that ends exactly at max_open_loop_s is played


@dataclass
class Preflight:
    """The report's facts and findings."""

    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def graph_parameters(profile_name: str, overrides: Mapping[str, Mapping[str, object]]) -> dict[str, dict]:
    """{node: parameters} of ``profile_name`` as its nodes would start (files, fixed, then overrides)."""
    expanded = expand_policy_overrides(overrides)
    params: dict[str, dict] = {}
    for spec in profile(profile_name):
        merged: dict[str, Any] = {}
        for name in spec.params:
            merged.update(node_parameters(name, spec.name))
        merged.update(spec.parameters)
        merged.update(expanded.get(spec.name, {}))
        params[spec.name] = merged
    return params


def _options(policy: Mapping[str, Any]) -> dict[str, Any]:
    raw = policy.get("backend_options", "{}")
    options = json.loads(raw) if isinstance(raw, str) else dict(raw)
    if not isinstance(options, dict):
        raise ValueError(f"policy.backend_options: expected a JSON object, got {raw!r}")
    return options


def _size(hw: tuple[int, int] | list[int]) -> str:
    return f"{int(hw[0])}x{int(hw[1])}"


def _model_cameras(summary: CheckpointSummary, options: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """The model's cameras under the names the graph uses (OpenVLA's one camera is an option)."""
    if summary.backend == "openvla" and "camera" in options:
        return {str(options["camera"]): next(iter(summary.cameras.values()))}
    return dict(summary.cameras)


def check_cameras(summary: CheckpointSummary, params: Mapping[str, dict], report: Preflight) -> None:
    policy, perception = params["policy"], params.get("perception", {})
    options = _options(policy)
    model = _model_cameras(summary, options)
    policy_cameras = list(policy.get("cameras", []))
    perceived = list(perception.get("cameras", []))
    report.lines.append("cameras (model <- graph):")
    present = []
    for camera, size in model.items():
        crop = summary.camera_crops.get(camera)
        shown = f"  {camera}: model {_size(size)}" + (f" (crop {list(crop)} first)" if crop else "")
        if camera not in policy_cameras or camera not in perceived:
            where = "policy.cameras" if camera not in policy_cameras else "perception.cameras"
            report.lines.append(f"{shown} <- nothing ({where} lacks it)")
            if summary.pads_absent_cameras:
                report.notes.append(
                    f"camera '{camera}' is absent: the model gets a pad mask for it, as upstream"
                )
            else:
                listed = policy_cameras if where.startswith("policy") else perceived
                report.mismatches.append(
                    f"camera '{camera}' is missing from {where} {listed}: "
                    f"add it (--set {where}=[...]) or pick another camera with --backend-options "
                    "'{\"camera\": ...}' (openvla) / rt2_config.json 'camera' (rt2)"
                )
            continue
        present.append(camera)
        entry = perception.get(camera, {})
        fed = (int(entry.get("height", 0)), int(entry.get("width", 0)))
        resize = "cropped and resized by the backend" if crop else "resized by the backend"
        resize = "as it is" if fed == tuple(size) and not crop else resize
        report.lines.append(
            f"{shown} <- {entry.get('topic', '?')} ({entry.get('transport', 'raw')}), perception "
            f"{_size(fed)} ({entry.get('resize_mode', 'resize')}, {entry.get('interpolation', '?')}), "
            f"{resize}"
        )
        box = crop or (0.0, 0.0, 1.0, 1.0)
        fed_aspect = (fed[1] * box[3]) / max(fed[0] * box[2], 1e-9)
        if fed[0] and abs(fed_aspect / (size[1] / size[0]) - 1) > 0.01:
            report.notes.append(
                f"camera '{camera}': perception's {_size(fed)} is stretched to the model's {_size(size)} "
                f"(aspect {fed_aspect:.2f} vs {size[1] / size[0]:.2f}); set perception.{camera}.height/width"
            )
    if model and not present:
        report.mismatches.append(
            f"none of the model's cameras {list(model)} is in the graph (policy.cameras {policy_cameras}, "
            f"perception.cameras {perceived}): set --set policy.cameras=[...] and perception.cameras"
        )
    for camera in policy_cameras:
        if camera not in perceived:
            report.mismatches.append(
                f"policy.cameras has '{camera}' but perception.cameras {perceived} does not publish it: the "
                "policy would wait for it forever (--set policy.cameras=[...])"
            )
        elif camera not in model:
            report.notes.append(f"camera '{camera}' is fed to the policy but this model does not use it")


def check_actions(summary: CheckpointSummary, params: Mapping[str, dict], report: Preflight) -> None:
    policy, actuation = params["policy"], params.get("actuation", {})
    kind = str(policy.get("action_kind", "continuous"))
    control_hz = float(policy.get("control_hz", actuation.get("control_hz", 5.0)))
    step_dt = 1.0 / control_hz
    if kind not in summary.action_kinds:
        if summary.backend == "openvla":
            report.notes.append(f"policy.action_kind '{kind}' is ignored: OpenVLA emits 256-bin indices")
        else:
            report.mismatches.append(
                f"policy.action_kind '{kind}': this checkpoint emits {list(summary.action_kinds)} "
                f"(--action-kind {summary.action_kinds[0]})"
            )
    horizon = int(policy.get("chunk_horizon", summary.chunk_length))
    played = summary.chunk_length
    if summary.backend == "octo":
        if horizon > summary.chunk_length:
            report.mismatches.append(
                f"policy.chunk_horizon {horizon} exceeds the model's {summary.chunk_length}-step chunk: the "
                f"backend refuses it (--set policy.chunk_horizon={summary.chunk_length})"
            )
        played = min(horizon, summary.chunk_length)
    mode = str(actuation.get("execution_mode", "receding_horizon"))
    open_loop_s = float(actuation.get("max_open_loop_s", 0.5))
    open_loop_steps = math.floor(open_loop_s / step_dt + _EPS)
    max_steps = int(actuation.get("max_action_steps", 1000))
    report.lines.append(
        f"action: {'/'.join(summary.action_kinds)}, {len(summary.action_dims)} dims "
        f"({' '.join(summary.action_dims)}), {summary.chunk_length} step(s) per inference, "
        f"{played} sent (policy.chunk_horizon {horizon}), {step_dt:.3g} s per step "
        f"(control_hz {control_hz:g})"
    )
    report.lines.append(
        f"actuation: {mode}, plays at most {open_loop_steps} step(s) of a chunk open loop "
        f"(max_open_loop_s {open_loop_s:g})"
    )
    if open_loop_steps < 1:
        report.mismatches.append(
            f"actuation.max_open_loop_s {open_loop_s:g} is shorter than one control step ({step_dt:.3g} s): "
            "actuation refuses to start (--set actuation.max_open_loop_s=...)"
        )
    if played > max_steps:
        report.mismatches.append(
            f"chunks of {played} steps exceed actuation.max_action_steps {max_steps}: every chunk is refused"
        )
    if mode != "single_step" and played > open_loop_steps >= 1:
        report.notes.append(
            f"{mode}: only the first {open_loop_steps} of each {played}-step chunk can play before the next "
            f"observation must take over (actuation.max_open_loop_s {open_loop_s:g})"
        )
    if mode != "single_step" and played == 1:
        report.notes.append(
            f"one action per inference: --execution-mode single_step is the natural mode ({mode} works)"
        )


def check_statistics(summary: CheckpointSummary, params: Mapping[str, dict], report: Preflight) -> None:
    options = _options(params["policy"])
    key = options.get("unnorm_key")
    if not summary.stats:
        report.lines.append("normalisation: none (fixed action ranges)")
        if key:
            report.notes.append(
                f"backend_options unnorm_key '{key}' is ignored: the checkpoint has no statistics"
            )
        return
    available = sorted(summary.stats)
    chosen = key if key in summary.stats else (available[0] if key is None and len(available) == 1 else None)
    if key is not None and key not in summary.stats:
        report.mismatches.append(
            f"unnorm_key '{key}' is not in the checkpoint's statistics {available}: "
            f'--backend-options \'{{"unnorm_key": "{available[0]}"}}\''
        )
    elif chosen is None:
        report.mismatches.append(
            f"the checkpoint has statistics for {len(available)} datasets {available} and no unnorm_key is "
            f'set: --backend-options \'{{"unnorm_key": "{available[0]}"}}\''
        )
    report.lines.append(f"normalisation: {len(available)} dataset(s) {available}; used: {chosen or '-'}")
    for name in [chosen] if chosen else []:
        stats = summary.stats[name]
        for i, dim in enumerate(summary.action_dims or [f"a{i}" for i in range(len(stats.q01))]):
            spread = f"mean {stats.mean[i]:+.4g} std {stats.std[i]:.4g}, " if stats.mean else ""
            report.lines.append(
                f"  {dim:>8}: {spread}q01 {stats.q01[i]:+.4g} q99 {stats.q99[i]:+.4g}, "
                f"{'normalised' if stats.mask[i] else 'absolute (mask False)'}"
            )


def preflight(summary: CheckpointSummary, params: Mapping[str, dict]) -> Preflight:
    """Compare the checkpoint with the graph's parameters (see the module docstring)."""
    report = Preflight()
    policy = params["policy"]
    backend = str(policy.get("backend", ""))
    report.lines += [f"checkpoint: {summary.directory} (backend {summary.backend})"]
    report.lines += [f"  {line}" for line in summary.architecture]
    report.lines.append(
        f"  parameters: {summary.parameters:,} stored "
        "(from the safetensors headers: a tied tensor stored twice counts twice)"
    )
    if backend != summary.backend:
        report.mismatches.append(
            f"policy.backend is '{backend}' but this checkpoint is loaded by '{summary.backend}' "
            f"(--policy {summary.backend})"
        )
    if str(policy.get("checkpoint", "")) not in ("", str(summary.directory)):
        report.notes.append(f"policy.checkpoint is {policy['checkpoint']}; inspected {summary.directory}")
    check_cameras(summary, params, report)
    check_actions(summary, params, report)
    check_statistics(summary, params, report)
    report.lines.append(f"gripper: {summary.gripper}")
    report.lines.append(f"prompt: {summary.prompt!r}")
    report.lines.append(f"device: {policy.get('device', 'auto')}")
    report.notes = summary.notes + report.notes
    return report


def format_report(report: Preflight) -> str:
    lines = list(report.lines)
    lines += [f"note: {note}" for note in report.notes]
    lines += [f"MISMATCH: {text}" for text in report.mismatches]
    verdict = f"{len(report.mismatches)} mismatch(es)" if report.mismatches else "no mismatch"
    lines.append(f"inspect: {verdict}")
    return "\n".join(lines)
