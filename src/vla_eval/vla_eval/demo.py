"""``vla-stack demo``: the sim, the three nodes and a policy, closed loop, with results and artefacts.

Prints per-episode success and per-stage latency (p50/p99), writes an MP4 of the third-person
camera, an MCAP bag of every topic, node logs, and optionally a JSON summary.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from vla_bringup.paths import repo_root
from vla_bringup.policies import DEFAULT_POLICY, resolve_policy

# Stage name -> the node that measures it, in pipeline order.
STAGES = (
    ("image_decode", "perception"),
    ("sync", "perception"),
    ("preprocess", "perception"),
    ("inference", "policy"),
    ("action_decode", "actuation"),
    ("ik", "actuation"),
    ("publish", "actuation"),
    ("frame_to_action", "actuation"),  # node clock (sim time): frame stamp -> its action accepted
)


@dataclass(frozen=True)
class DemoOptions:
    policy: str = DEFAULT_POLICY
    instruction: str | None = None
    episodes: int = 3
    seed: int = 0
    json_path: str | None = None
    out_dir: str | None = None
    action_kind: str = "continuous"
    execution_mode: str | None = None
    real_time_factor: float | None = None
    max_steps: int = 80
    checkpoint: str = ""
    backend_options: str = "{}"
    record: bool = True
    video: bool = True
    overrides: dict = field(default_factory=dict)  # node -> {param: value}, applied last
    episode_plan_file: str | None = None  # the sim runs these episodes (vla-stack eval)
    failure_video_dir: str | None = None  # one MP4 of the third-person camera per failed episode


def stage_latency(latency_by_node: dict[str, dict]) -> dict[str, dict[str, float]]:
    """{stage: {p50, p99}} in pipeline order from the nodes' diagnostics."""
    out: dict[str, dict[str, float]] = {}
    for stage, node in STAGES:
        values = latency_by_node.get(node, {}).get(stage)
        if values:
            out[stage] = {"p50": round(values["p50"], 4), "p99": round(values["p99"], 4)}
    return out


def summarise(events: list[dict], latency_by_node: dict[str, dict]) -> dict:
    episodes = [
        {
            "seed": int(e["seed"]),
            "instruction": e["instruction"],
            "success": bool(e["success"]),
            "steps": int(e["steps"]),
            "family": e.get("family", ""),
        }
        for e in events
        if e.get("event") == "end"
    ]
    rate = sum(e["success"] for e in episodes) / len(episodes) if episodes else 0.0
    return {"success_rate": rate, "episodes": episodes, "latency_ms": stage_latency(latency_by_node)}


def run_demo(options: DemoOptions) -> int:
    from tqdm import tqdm

    from vla_bringup.launcher import GraphLauncher
    from vla_bringup.profiles import profile
    from vla_bringup.ros_env import apply_loopback_profile

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(options.out_dir) if options.out_dir else repo_root() / "out" / f"demo-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = apply_loopback_profile(log_dir=str(out_dir / "ros_logs"))

    sim: dict[str, object] = {
        "episodes": options.episodes,
        "seed": options.seed,
        "max_steps": options.max_steps,
        # With a recorder the first episode waits for it too, so the bag holds every frame from the start.
        "camera_subscribers": 2 if options.record else 1,
    }
    if options.instruction:
        sim["instruction"] = options.instruction
    if options.episode_plan_file:
        sim["episode_plan_file"] = options.episode_plan_file
    if options.real_time_factor is not None:
        sim["real_time_factor"] = options.real_time_factor
    spec = resolve_policy(options.policy, options.checkpoint, json.loads(options.backend_options or "{}"))
    overrides = {
        "sim": sim,
        "policy": {
            "backend": spec.backend,
            "action_kind": options.action_kind,
            "checkpoint": spec.checkpoint,
            "backend_options": json.dumps(spec.options),
            # Only the sim's scripted expert reads privileged state; a VLA sees pixels alone.
            "use_privileged_state": spec.privileged,
        },
    }
    execution_mode = options.execution_mode or spec.execution_mode
    if execution_mode:
        overrides["actuation"] = {"execution_mode": execution_mode}
    for node, params in options.overrides.items():
        overrides[node] = {**overrides.get(node, {}), **params}
    launcher = GraphLauncher(profile("sim"), env, overrides=overrides, log_dir=out_dir / "logs")

    video = None
    if options.video:
        from vla_data.video import Mp4Writer

        video = Mp4Writer(out_dir / "third_person.mp4", fps=10)
    # The bar on a terminal; plain lines in logs (CI), where a redrawn bar is noise.
    bar = tqdm(
        total=options.episodes, desc="episodes", unit="ep", file=sys.stdout, disable=not sys.stdout.isatty()
    )
    successes = 0
    failure_clips = FailureClips(Path(options.failure_video_dir)) if options.failure_video_dir else None

    def on_frame(frame) -> None:
        if video is not None:
            video.add_frame(frame)
        if failure_clips is not None:
            failure_clips.add_frame(frame)

    def on_end(event: dict) -> None:
        nonlocal successes
        successes += bool(event["success"])
        if failure_clips is not None:
            failure_clips.end_episode(event)
        bar.update(1)
        bar.set_postfix(success=f"{successes}/{bar.n}")
        tqdm.write(
            f"episode {event['episode']} seed {event['seed']}: "
            f"{'SUCCESS' if event['success'] else 'failure'} in {event['steps']} steps"
            f" - {event['instruction']!r}"
        )

    from vla_eval.demo_monitor_node import monitor_run

    print(
        f"[demo] policy={options.policy} action_kind={options.action_kind} episodes={options.episodes} "
        f"seed={options.seed}; artefacts in {out_dir}"
    )
    launcher.start()
    try:
        budget_s = 120.0 + options.episodes * options.max_steps * 0.2 * 4.0
        events, latency, failure = monitor_run(
            timeout_s=budget_s,
            poll_failure=launcher.poll,
            on_episode_end=on_end,
            video_topic="/camera/third_person/image_raw" if video or failure_clips else None,
            on_frame=on_frame if video or failure_clips else None,
            bag_path=out_dir / "bag" if options.record else None,
        )
    finally:
        launcher.stop()
        bar.close()
        if video is not None:
            video.close()

    summary = summarise(events, latency)
    print_summary(summary, out_dir)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(summary, indent=2))
        print(f"[demo] results written to {options.json_path}")
    if failure:
        print(f"[demo] FAILED: {failure}", file=sys.stderr)
        return 1
    return 0 if summary["episodes"] else 1


def print_summary(summary: dict, out_dir: Path) -> None:
    episodes = summary["episodes"]
    wins = sum(e["success"] for e in episodes)
    print(f"\nsuccess: {wins}/{len(episodes)} episodes ({summary['success_rate']:.0%})")
    print(f"{'stage':<15}{'p50 ms':>10}{'p99 ms':>10}")
    for stage, values in summary["latency_ms"].items():
        print(f"{stage:<15}{values['p50']:>10.3f}{values['p99']:>10.3f}")
    print(f"video: {out_dir / 'third_person.mp4'}\nbag:   {out_dir / 'bag'}\nlogs:  {out_dir / 'logs'}")


class FailureClips:
    """Buffers the third-person frames of the running episode; writes an MP4 when it fails."""

    def __init__(self, directory: Path, fps: int = 10) -> None:
        self.directory = directory
        self.fps = fps
        self.frames: list = []
        self.written: list[str] = []

    def add_frame(self, frame) -> None:
        self.frames.append(frame.copy())

    def end_episode(self, event: dict) -> None:
        frames, self.frames = self.frames, []
        if event.get("success") or not frames:
            return
        from vla_data.video import Mp4Writer

        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{event.get('family', 'episode')}_seed{event['seed']}.mp4"
        writer = Mp4Writer(self.directory / name, fps=self.fps)
        for frame in frames:
            writer.add_frame(frame)
        writer.close()
        self.written.append(str(self.directory / name))
