"""``vla-stack eval``: success per task family through the full ROS 2 graph on held-out layouts.

The episode plan (seed, family, instruction text, step budget) is computed here from the pure task
module and handed to the sim node as a file, so every policy meets the same held-out layouts.
Instruction modes:

- ``template``: the canonical instruction of each episode (as the demonstrations were phrased);
- ``--instructions FILE``: per-family paraphrase templates (YAML), phrasings never trained on;
- ``--language empty``: an empty instruction; ``--language wrong``: the instruction for another
  object in the same scene (same family). Success is always the original task's detector.

Failed episodes leave an MP4 of the third-person camera; the JSON holds everything printed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from vla_actuation.chunk_executor import MODES as EXECUTION_MODES
from vla_bringup.paths import repo_root
from vla_bringup.policies import DEFAULT_POLICY, resolve_policy
from vla_eval.demo import DemoOptions, run_demo
from vla_policy.contract import make_backend
from vla_sim import tasks

LANGUAGE_MODES = ("template", "empty", "wrong")
SHAPE_SYNONYMS = {"cube": "block", "cylinder": "can"}  # words no demonstration uses


@dataclass(frozen=True)
class EvalOptions:
    """What ``vla-stack eval`` was asked: the policy, the episodes and the instruction mode."""

    policy: str
    episodes: int
    seeds: str = "heldout"
    instructions_file: str | None = None
    language: str = "template"
    json_path: str | None = None
    out_dir: str | None = None
    checkpoint: str = ""
    backend_options: str = "{}"
    real_time_factor: float | None = None
    execution_mode: str | None = None  # actuation override; None = the policy's or config/actuation.yaml
    replica: bool = False  # the graph replica in-process (fast, no DDS) instead of the ROS graph


def load_paraphrases(path: str) -> dict[str, list[str]]:
    """{family: [template, ...]} from YAML; each template uses the fields of tasks.instruction_for."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping family -> list of instruction templates")
    out = {}
    for family, templates in data.items():
        if family not in tasks.FAMILIES:
            raise ValueError(f"{path}: unknown family {family!r}; known: {sorted(tasks.FAMILIES)}")
        if not isinstance(templates, list) or not templates:
            raise ValueError(f"{path}: {family}: expected a non-empty list of templates")
        trained = set(tasks.FAMILIES[family].templates)
        seen = [t for t in templates if t in trained]
        if seen:
            raise ValueError(f"{path}: {family}: {seen} are training templates, not paraphrases")
        out[family] = [str(t) for t in templates]
    return out


def _fields(spec: tasks.EpisodeSpec, target: str) -> dict:
    obj = tasks.OBJECTS_BY_NAME[target]
    fields = {
        "colour": obj.colour,
        "shape": obj.shape,
        "shape_synonym": SHAPE_SYNONYMS[obj.shape],
        "direction": spec.direction or "",
    }
    if spec.base_object:
        base = tasks.OBJECTS_BY_NAME[spec.base_object]
        fields.update(base_colour=base.colour, base_shape=base.shape)
    return fields


def build_plan(options: EvalOptions) -> list[dict]:
    """The sim's episode plan: held-out seeds with families in turn, and the instruction text."""
    if options.seeds != "heldout":
        start = int(options.seeds)
        pairs = [(start + i, tasks.FAMILY_ORDER[i % 4]) for i in range(options.episodes)]
    else:
        pairs = tasks.heldout_episodes(options.episodes)
    if options.language not in LANGUAGE_MODES:
        raise ValueError(f"language: expected one of {LANGUAGE_MODES}, got {options.language!r}")
    paraphrases = load_paraphrases(options.instructions_file) if options.instructions_file else None
    plan = []
    for i, (seed, family) in enumerate(pairs):
        spec = tasks.sample_episode(seed, family=family)
        text = spec.instruction
        if paraphrases is not None:
            templates = paraphrases.get(family)
            if templates:
                text = templates[i // 4 % len(templates)].format(**_fields(spec, spec.target_object))
        if options.language == "empty":
            text = ""
        elif options.language == "wrong":
            # Another object in this very scene (not the stack base), so the words point elsewhere.
            others = [p.name for p in spec.placements[1:] if p.name != spec.base_object]
            wrong = others[np.random.default_rng(seed).integers(len(others))]
            text = tasks.instruction_for(family, wrong, spec.base_object, spec.direction)
        plan.append(
            {
                "seed": seed,
                "family": family,
                "target_object": spec.target_object,
                "base_object": spec.base_object,
                "direction": spec.direction,
                "instruction_text": text,
                "max_steps": spec.max_steps,
            }
        )
    return plan


def summarise_eval(episodes: list[dict], plan: list[dict]) -> dict:
    families = {}
    for family in tasks.FAMILY_ORDER:
        runs = [e for e in episodes if e["family"] == family]
        if runs:
            wins = sum(e["success"] for e in runs)
            families[family] = {"success": wins, "episodes": len(runs), "rate": wins / len(runs)}
    wins = sum(e["success"] for e in episodes)
    return {
        "overall": {
            "success": wins,
            "episodes": len(episodes),
            "rate": wins / len(episodes) if episodes else 0.0,
        },
        "per_family": families,
        "planned_episodes": len(plan),
    }


def run_replica_episodes(options: EvalOptions, plan: list[dict]) -> list[dict]:
    """The plan through ``graph_replica`` (same modules and timing, no DDS): a quick estimate."""
    # lazy: the replica and the sim load mujoco, needed only for --replica (vla-stack --help stays quick)
    from vla_eval.graph_replica import run_graph_episode
    from vla_sim.widowx_sim import WidowXSim

    spec = resolve_policy(options.policy, options.checkpoint, json.loads(options.backend_options or "{}"))
    kwargs = {"checkpoint": spec.checkpoint} if spec.checkpoint else {}
    backend = make_backend(spec.backend, **kwargs, **spec.options)
    sim = WidowXSim()
    episodes = []
    for entry in tqdm(plan, desc="episodes (replica)", unit="ep"):
        reset = {k: entry[k] for k in ("family", "target_object", "base_object", "direction")}
        reset["instruction_text"] = entry["instruction_text"]
        outcome = run_graph_episode(
            sim,
            backend,
            entry["seed"],
            options.execution_mode or spec.execution_mode or "receding_horizon",
            reset_kwargs=reset,
            render=True,
            max_steps=entry["max_steps"],
        )
        episodes.append(
            {
                "seed": entry["seed"],
                "family": entry["family"],
                "instruction": entry["instruction_text"],
                "success": outcome.success,
                "steps": outcome.steps,
            }
        )
    sim.close()
    return episodes


def run_eval(options: EvalOptions) -> int:
    """Plan the episodes, run them (graph or replica), print and save the summary; an exit status."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(options.out_dir) if options.out_dir else repo_root() / "out" / f"eval-{stamp}"
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = build_plan(options)
    plan_file = out_dir / "episode_plan.json"
    plan_file.write_text(json.dumps(plan, indent=1))
    demo_json = out_dir / "episodes.json"
    print(
        f"[eval] policy={options.policy} episodes={len(plan)} seeds={options.seeds} "
        f"language={options.language} instructions={options.instructions_file or 'templates'}"
    )
    if options.replica:
        episodes = run_replica_episodes(options, plan)
        demo_json.write_text(json.dumps({"episodes": episodes, "latency_ms": {}}))
        code = 0
    else:
        code = run_demo(_demo_options(options, plan, plan_file, demo_json, out_dir))
    if not demo_json.is_file():
        return code or 1
    summary = eval_summary(options, plan, json.loads(demo_json.read_text()), out_dir)
    print_eval(summary)
    if options.json_path:
        Path(options.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(options.json_path).write_text(json.dumps(summary, indent=2))
        print(f"[eval] results written to {options.json_path}")
    return code


def _demo_options(
    options: EvalOptions, plan: list[dict], plan_file: Path, demo_json: Path, out_dir: Path
) -> DemoOptions:
    """The demo run that plays ``plan`` through the ROS 2 graph (no bag, no video but failures)."""
    return DemoOptions(
        policy=options.policy,
        episodes=len(plan),
        json_path=str(demo_json),
        out_dir=str(out_dir),
        checkpoint=options.checkpoint,
        backend_options=options.backend_options,
        real_time_factor=options.real_time_factor,
        execution_mode=options.execution_mode,
        max_steps=max(e["max_steps"] for e in plan),
        record=False,
        video=False,
        episode_plan_file=str(plan_file),
        failure_video_dir=str(out_dir / "failures"),
    )


def eval_summary(options: EvalOptions, plan: list[dict], demo: dict, out_dir: Path) -> dict:
    """What eval prints and saves: per family and overall, every episode, latency, failure videos."""
    return {
        "policy": options.policy,
        "seeds": options.seeds,
        "language": options.language,
        "through": "graph replica (no DDS)" if options.replica else "ROS 2 node graph",
        "instructions_file": options.instructions_file,
        **summarise_eval(demo["episodes"], plan),
        "episodes": demo["episodes"],
        "latency_ms": demo["latency_ms"],
        "failure_videos": sorted(str(p) for p in (out_dir / "failures").glob("*.mp4")),
    }


def print_eval(summary: dict) -> None:
    print(f"\n{'family':<16}{'success':>10}{'rate':>8}")
    for family, row in summary["per_family"].items():
        print(f"{family:<16}{row['success']:>5}/{row['episodes']:<4}{row['rate']:>8.0%}")
    overall = summary["overall"]
    print(f"{'overall':<16}{overall['success']:>5}/{overall['episodes']:<4}{overall['rate']:>8.0%}")
    if summary["failure_videos"]:
        print(
            f"failure videos: {Path(summary['failure_videos'][0]).parent} ({len(summary['failure_videos'])})"
        )


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the ``vla-stack`` sub-commands."""
    parser = sub.add_parser("eval", help="success per task family through the node graph (held-out seeds)")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help="octo-sim | scripted | a backend name")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--seeds", default="heldout", help="'heldout' or a first seed (then seed + i)")
    parser.add_argument("--instructions", default=None, help="YAML of paraphrase templates per family")
    parser.add_argument("--language", default="template", choices=LANGUAGE_MODES, help="language ablation")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--out", default=None, help="folder for failure videos and logs")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--backend-options", default="{}")
    parser.add_argument("--real-time-factor", type=float, default=None)
    parser.add_argument("--execution-mode", default=None, choices=EXECUTION_MODES, help="chunk execution")
    parser.add_argument(
        "--replica", action="store_true", help="quick estimate in-process through the graph replica (no DDS)"
    )
    parser.set_defaults(func=lambda a: run_eval(_options(a)))


def _options(args: argparse.Namespace) -> EvalOptions:
    return EvalOptions(
        policy=args.policy,
        episodes=args.episodes,
        seeds=args.seeds,
        instructions_file=args.instructions,
        language=args.language,
        json_path=args.json,
        out_dir=args.out,
        checkpoint=args.checkpoint,
        backend_options=args.backend_options,
        real_time_factor=args.real_time_factor,
        execution_mode=args.execution_mode,
        replica=args.replica,
    )
