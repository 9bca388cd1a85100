"""Demonstrations from the scripted expert, recorded through the graph replica (``vla-stack collect``).

Each episode runs the expert (privileged state, 4-step chunks, receding-horizon execution) in
:mod:`vla_eval.graph_replica`, so the recorded images are exactly what the perception node
would hand a policy (sim render + read noise + antialiased resize), cropped and resized once
more to the model's input the way the Octo backend does it (``processor.prepare_image``). Per
policy tick it records the images, the proprio (6 arm joints + left finger) and the expert's
chunk (4 x 7 Bridge deltas, gripper absolute), plus a few ticks after success so the policy
learns to hold.

Layout of ``DIR``: ``episode_<seed>.npz`` (primary, wrist: uint8 (T, H, W, 3); proprio: float32
(T, 7); actions: float32 (T, 4, 7); and the scalars instruction, family, seed, success, steps) and
``meta.json``. Only successful episodes are kept; held-out seeds are refused.

With ``first_ticks`` set it records *decision frames* instead: only the first ticks of each
episode, kept whatever the outcome (the expert's opening chunks head for the named object either
way). A reset and a few renders per scene: many more scenes where only the instruction tells
which object to go for, the samples behaviour cloning otherwise has least of.

With ``carry_retarget`` it records *carry frames*: stack scenes in which the base has a look-alike
(same colour, other shape), run until the fingers close on the object to move; there half of them
(seeded) switch the base to its look-alike (``WidowXSim.retarget``) and the rest keep it, and from
the next tick to the end the frames are kept. From the same grasp, the base's shape word alone then
says where the object goes: the decision a stacking policy makes after the grasp, which decision
frames (the first ticks) never show. ``first_tick`` in each file is the episode tick its frames
start at (0 everywhere else), so that nothing reads them as the scene's untouched layout.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

TAIL_STEPS = 3  # ticks recorded after the success is first detected


@dataclass(frozen=True)
class CollectOptions:
    out_dir: str
    episodes: int
    seed_start: int
    image_sizes: dict  # camera -> (h, w) the model takes
    workers: int = 2
    chunk_horizon: int = 4
    execution_mode: str = "receding_horizon"
    # Share of episodes that start from a random arm pose (``jittered_start_joints``) instead of the
    # fixed one, so that the arm's pose never tells the policy where the target is.
    random_start_fraction: float = 0.0
    # Share of episodes whose executed steps get N(0, action_noise_m) added to x, y, z (DART): the
    # arm drifts off the expert's path and the recorded (clean) chunks show how to come back.
    noisy_fraction: float = 0.0
    action_noise_m: float = 0.0
    # camera -> the model's fixed crop (top, left, height, width fractions, OctoConfig.image_crops),
    # cut before the resize exactly as the backend cuts it; a camera not named here is not cropped
    image_crops: dict = field(default_factory=dict)
    # Graph timing drawn per episode instead of the replica's fixed one: the camera-to-policy phase
    # from U(policy_phase_s) and each chunk's frame-to-action time from U(processing_s), in seconds,
    # so that the demonstrations cover the lag a policy meets through the ROS 2 graph under load.
    policy_phase_s: tuple[float, float] | None = None
    processing_s: tuple[float, float] | None = None
    first_ticks: int | None = None  # decision frames: record only each episode's first ticks
    counterfactual: bool = False  # re-target each scene to another object of it (see the module doc)
    carry_retarget: bool = False  # carry frames: stack scenes from the grasp on (see the module doc)

    def __post_init__(self) -> None:
        if self.carry_retarget and (self.first_ticks is not None or self.counterfactual):
            raise ValueError(
                "collect.carry_retarget: records from the grasp on; drop first_ticks and counterfactual"
            )
        if self.first_ticks is not None and not 1 <= self.first_ticks <= 20:
            raise ValueError(f"collect.first_ticks: expected 1..20 policy ticks, got {self.first_ticks!r}")
        for name in ("random_start_fraction", "noisy_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"collect.{name}: expected a share in [0, 1], got {value!r}")
        for name, most in (("policy_phase_s", 0.1), ("processing_s", 0.19)):
            span = getattr(self, name)
            if span is not None and not (len(span) == 2 and 0.0 <= span[0] <= span[1] <= most):
                raise ValueError(
                    f"collect.{name}: expected [low, high] seconds within [0, {most}], got {span!r}"
                )
        if not 0.0 <= self.action_noise_m <= 0.05:
            raise ValueError(
                f"collect.action_noise_m: expected metres in [0, 0.05], got {self.action_noise_m!r}"
            )


def episode_variation(options: CollectOptions, seed: int) -> tuple[np.ndarray | None, float]:
    """(start joints or None for the fixed pose, action noise std in m) of one episode, seeded."""
    from vla_sim.widowx_sim import jittered_start_joints

    rng = np.random.default_rng([seed, 2])
    start = jittered_start_joints(rng) if rng.random() < options.random_start_fraction else None
    noise = options.action_noise_m if rng.random() < options.noisy_fraction else 0.0
    return start, noise


def episode_timing(options: CollectOptions, seed: int):
    """The replica timing of one episode: the fixed default unless the options give ranges, seeded."""
    from vla_eval.graph_replica import Timing

    timing = Timing()
    rng = np.random.default_rng([seed, 13])
    if options.policy_phase_s is not None:
        low, high = options.policy_phase_s
        timing = replace(timing, policy_phase_s=float(rng.uniform(low, high)))
    if options.processing_s is not None:
        low, high = options.processing_s
        timing = replace(timing, processing_s=float(low), processing_jitter_s=float(high - low))
    return timing


def episode_plan(options: CollectOptions) -> list[tuple[int, str, int]]:
    """(seed, family, template index) per episode: families in turn, phrasings seeded; for carry
    frames, the stack scenes from ``seed_start`` on whose base has a look-alike."""
    from vla_sim import tasks

    heldout = set(tasks.HELDOUT_SEEDS)
    plan = []
    seed = options.seed_start
    while len(plan) < options.episodes:
        if seed in heldout:
            raise ValueError(f"seed_start: seed {seed} is a held-out evaluation seed; start above them")
        family = (
            "stack" if options.carry_retarget else tasks.FAMILY_ORDER[len(plan) % len(tasks.FAMILY_ORDER)]
        )
        template = int(np.random.default_rng(seed).integers(len(tasks.FAMILIES[family].templates)))
        if not options.carry_retarget or base_twins(tasks.sample_episode(seed, family=family)):
            plan.append((seed, family, template))
        seed += 1
    return plan


def base_twins(spec) -> list[str]:
    """The objects of a stack scene that only the base's shape word tells from the base (the
    base re-targetings among ``tasks.counterfactual_targets``)."""
    from vla_sim import tasks

    return [
        base
        for target, base in tasks.counterfactual_targets(spec)
        if target == spec.target_object and base not in (None, spec.base_object)
    ]


def carry_switch(sim, seed: int, template: int):
    """``on_inference`` companion for carry frames: once the expert closes the fingers, re-target
    the base to its look-alike in half of the scenes (seeded). Returns (hook, state) where
    ``state["from"]`` is the index of the first tick to keep (None until the grasp); the hook takes
    the expert's output and how many ticks are recorded so far."""
    from vla_sim import tasks

    state: dict = {"from": None, "switched": False}

    def after_inference(output, recorded: int) -> None:
        if state["from"] is not None or output.info.get("phase") != "close":
            return
        state["from"] = recorded  # the next tick on
        spec = sim.spec
        if np.random.default_rng([seed, 17]).random() < 0.5:
            twins = base_twins(spec)
            twin = twins[int(np.random.default_rng([seed, 19]).integers(len(twins)))]
            sim.retarget(tasks.retarget(spec, spec.target_object, twin, template))
            state["switched"] = True

    return after_inference, state


def counterfactual_episode(seed: int, family: str, template: int):
    """The scene of (seed, family) with the instruction naming other objects of it (one of
    ``tasks.counterfactual_targets``, chosen by seed; same phrasing), or None if it has none."""
    from vla_sim import tasks

    spec = tasks.sample_episode(seed, family=family, template_index=template)
    choices = tasks.counterfactual_targets(spec)
    if not choices:
        return None
    target, base = choices[int(np.random.default_rng([seed, 5]).integers(len(choices)))]
    return tasks.retarget(spec, target, base, template)


def _collect_shard(args: tuple[CollectOptions, list[tuple[int, str, int]], int]) -> list[dict]:
    import cv2
    import torch

    torch.set_num_threads(1)  # one worker per core: no library may spawn its own thread pool
    cv2.setNumThreads(1)
    from vla_eval.graph_replica import run_graph_episode
    from vla_policy.backends.octo.processor import prepare_image
    from vla_policy.backends.scripted.backend import ScriptedBackend
    from vla_sim.widowx_sim import WidowXSim

    options, plan, _ = args
    sim = WidowXSim()
    out = Path(options.out_dir)
    results = []
    for seed, family, template in plan:
        reset_kwargs: dict = {"family": family, "template_index": template}
        if options.counterfactual:
            episode = counterfactual_episode(seed, family, template)
            if episode is None:
                results.append({"seed": seed, "family": family, "ticks": 0, "kept": False, "skipped": True})
                continue
            reset_kwargs = {"episode": episode}
        records: list[tuple] = []
        backend = ScriptedBackend(chunk_horizon=options.chunk_horizon)

        switch = carry_switch(sim, seed, template) if options.carry_retarget else None

        def record(observation, output, records=records, switch=switch) -> None:
            images = {
                c: prepare_image(observation.images[c], tuple(size), c, options.image_crops.get(c))
                for c, size in options.image_sizes.items()
            }
            records.append((images, observation.proprio.astype(np.float32), output.chunk.astype(np.float32)))
            if switch is not None:
                switch[0](output, len(records))

        start_joints, noise_m = episode_variation(options, seed)
        noise_rng = np.random.default_rng([seed, 3])

        def perturb(chunk: np.ndarray, noise_m=noise_m, rng=noise_rng) -> np.ndarray:
            noisy = chunk.copy()
            noisy[:, :3] += rng.normal(0.0, noise_m, size=(len(chunk), 3))
            return noisy

        # Until success plus TAIL_STEPS ticks of holding, or the step budget.
        outcome = run_graph_episode(
            sim,
            backend,
            seed,
            options.execution_mode,
            episode_timing(options, seed),
            reset_kwargs={**reset_kwargs, "start_joints": start_joints},
            perturb=perturb if noise_m > 0 else None,
            render=True,
            on_inference=record,
            stop_on_success=False,
            stop_after_success_steps=TAIL_STEPS,
            max_steps=None if options.first_ticks is None else options.first_ticks + 1,
        )
        if options.first_ticks is not None:
            del records[options.first_ticks :]
        first_tick = 0
        if switch is not None:  # carry frames: only from the grasp on, and only if there was one
            first_tick = switch[1]["from"] if switch[1]["from"] is not None else len(records)
            del records[:first_tick]
        spec = sim.spec
        kept = bool(records) and (outcome.success or options.first_ticks is not None)
        result = {
            "seed": seed,
            "family": family,
            "instruction": spec.instruction,
            "success": outcome.success,
            "steps": outcome.steps,
            "ticks": len(records),
            "kept": kept,
            "random_start": start_joints is not None,
            "action_noise_m": noise_m,
            "first_tick": first_tick,
        }
        if switch is not None:
            result["switched"] = switch[1]["switched"]
        if kept:
            np.savez_compressed(
                out / f"episode_{seed}.npz",
                **{c: np.stack([r[0][c] for r in records]) for c in options.image_sizes},
                proprio=np.stack([r[1] for r in records]),
                actions=np.stack([r[2] for r in records]),
                instruction=np.array(spec.instruction),
                family=np.array(family),
                seed=np.array(seed),
                first_tick=np.array(first_tick),
            )
        results.append(result)
    sim.close()
    return results


def collect(options: CollectOptions) -> dict:
    """Collect ``options.episodes`` expert episodes into ``options.out_dir``; returns the summary."""
    from tqdm import tqdm

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = episode_plan(options)
    stale = sorted(out.glob("episode_*.npz"))
    if stale:  # an earlier collection: its episodes must not mix with this one's
        print(f"[collect] removing {len(stale)} episodes of an earlier collection in {out}")
        for path in stale:
            path.unlink()
        (out / "meta.json").unlink(missing_ok=True)
    shards = [plan[i :: options.workers] for i in range(options.workers)]
    # Small shards so the bar moves and the work balances; each worker builds its sim once per shard.
    pieces = [
        (options, shard[j : j + 10], k) for k, shard in enumerate(shards) for j in range(0, len(shard), 10)
    ]
    results: list[dict] = []
    context = mp.get_context("spawn")
    with (
        context.Pool(options.workers) as pool,
        tqdm(total=len(plan), desc="demonstrations", unit="ep") as bar,
    ):
        for shard_results in pool.imap_unordered(_collect_shard, pieces):
            results += shard_results
            bar.update(len(shard_results))
            bar.set_postfix(kept=f"{sum(r['kept'] for r in results)}/{len(results)}")
    results.sort(key=lambda r: r["seed"])
    summary = {
        "options": asdict(options),
        "episodes": len(results),
        "kept": sum(r["kept"] for r in results),
        "per_family": {
            f: {
                "kept": sum(r["kept"] for r in results if r["family"] == f),
                "of": sum(r["family"] == f for r in results),
            }
            for f in sorted({r["family"] for r in results})
        },
        "results": results,
    }
    (out / "meta.json").write_text(json.dumps(summary, indent=1))
    return summary
