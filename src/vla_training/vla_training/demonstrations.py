"""Demonstrations from the scripted expert, recorded through the graph replica (``vla-stack collect``).

Each episode runs the expert (privileged state, chunks of the graph's length, receding-horizon
execution) in :mod:`vla_eval.graph_replica` with the graph's timing (both read from config/, as the
nodes read them: vla_bringup.deployment), so the recorded images are exactly what the perception node
would hand a policy (sim render + read noise + antialiased resize), cropped and resized once
more to the model's input the way the Octo backend does it (``processor.prepare_image``). Per
policy tick it records the images, the proprio (6 arm joints + left finger) and the expert's
chunk (chunk_horizon x 7 Bridge deltas, gripper absolute), plus a few ticks after success so the
policy learns to hold.

Layout of ``DIR``: ``episode_<seed>.npz`` (primary, wrist: uint8 (T, H, W, 3); proprio: float32
(T, 7); actions: float32 (T, chunk_horizon, 7); and the scalars instruction, family, seed, success, steps) and
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

import cv2
import numpy as np
from tqdm import tqdm

from vla_bringup.deployment import load_deployment
from vla_eval.graph_replica import TICKED, Timing, graph_periods, run_graph_episode
from vla_policy.backends.octo.processor import prepare_image
from vla_policy.backends.scripted.backend import ScriptedBackend
from vla_sim import tasks
from vla_sim.widowx_sim import WidowXSim, jittered_start_joints

TAIL_STEPS = 3  # ticks recorded after the success is first detected


@dataclass(frozen=True)
class CollectOptions:
    out_dir: str
    episodes: int
    seed_start: int
    image_sizes: dict  # camera -> (h, w) the model takes
    workers: int = 2
    # the graph's chunk length (config/policy.yaml chunk_horizon), as the policy node runs it
    chunk_horizon: int = field(default_factory=lambda: load_deployment().chunk_horizon)
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
        if self.policy_phase_s is not None or self.processing_s is not None:
            self._check_timing_spans()
        if not 0.0 <= self.action_noise_m <= 0.05:
            raise ValueError(
                f"collect.action_noise_m: expected metres in [0, 0.05], got {self.action_noise_m!r}"
            )

    def _check_timing_spans(self) -> None:
        periods = graph_periods()
        # The phase lies within one camera period; a chunk arrives within its own control step.
        latest = {
            "policy_phase_s": periods["camera_period_s"],
            "processing_s": round(periods["step_dt_s"] - periods["tick_s"], 9),
        }
        for name, most in latest.items():
            span = getattr(self, name)
            if span is not None and not (len(span) == 2 and 0.0 <= span[0] <= span[1] <= most):
                raise ValueError(
                    f"collect.{name}: expected [low, high] seconds within [0, {most}], got {span!r}"
                )


def episode_variation(options: CollectOptions, seed: int) -> tuple[np.ndarray | None, float]:
    """(start joints or None for the fixed pose, action noise std in m) of one episode, seeded."""
    rng = np.random.default_rng([seed, 2])
    start = jittered_start_joints(rng) if rng.random() < options.random_start_fraction else None
    noise = options.action_noise_m if rng.random() < options.noisy_fraction else 0.0
    return start, noise


def episode_timing(options: CollectOptions, seed: int) -> Timing:
    """The replica timing of one episode: the graph's unless the options give ranges, seeded."""
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
    spec = tasks.sample_episode(seed, family=family, template_index=template)
    choices = tasks.counterfactual_targets(spec)
    if not choices:
        return None
    target, base = choices[int(np.random.default_rng([seed, 5]).integers(len(choices)))]
    return tasks.retarget(spec, target, base, template)


class _EpisodeRecorder:
    """``on_inference`` hook: per policy tick, the model's view of each camera (the backend's crop and
    resize), the proprio and the expert's clean chunk; feeds the carry-frames switch if any."""

    def __init__(self, options: CollectOptions, switch=None) -> None:
        self.options = options
        self.switch = switch  # carry_switch's after_inference, or None
        self.records: list[tuple[dict, np.ndarray, np.ndarray]] = []

    def __call__(self, observation, output) -> None:
        images = {
            camera: prepare_image(
                observation.images[camera], tuple(size), camera, self.options.image_crops.get(camera)
            )
            for camera, size in self.options.image_sizes.items()
        }
        chunk = output.chunk.astype(np.float32)
        self.records.append((images, observation.proprio.astype(np.float32), chunk))
        if self.switch is not None:
            self.switch(output, len(self.records))


def _perturbation(noise_m: float, rng: np.random.Generator):
    """DART noise: N(0, noise_m) on x, y, z of every executed step (None when noise_m is 0)."""
    if noise_m <= 0:
        return None

    def perturb(chunk: np.ndarray) -> np.ndarray:
        noisy = chunk.copy()
        noisy[:, :3] += rng.normal(0.0, noise_m, size=(len(chunk), 3))
        return noisy

    return perturb


def _save_episode(path: Path, options: CollectOptions, recorder: _EpisodeRecorder, spec, **scalars) -> None:
    records = recorder.records
    np.savez_compressed(
        path,
        **{camera: np.stack([r[0][camera] for r in records]) for camera in options.image_sizes},
        proprio=np.stack([r[1] for r in records]),
        actions=np.stack([r[2] for r in records]),
        instruction=np.array(spec.instruction),
        **{name: np.array(value) for name, value in scalars.items()},
    )


def _collect_episode(sim: WidowXSim, options: CollectOptions, seed: int, family: str, template: int) -> dict:
    """Run and (if kept) save one episode; returns its summary row."""
    reset_kwargs: dict = {"family": family, "template_index": template}
    if options.counterfactual:
        episode = counterfactual_episode(seed, family, template)
        if episode is None:
            return {"seed": seed, "family": family, "ticks": 0, "kept": False, "skipped": True}
        reset_kwargs = {"episode": episode}
    switch = carry_switch(sim, seed, template) if options.carry_retarget else None
    recorder = _EpisodeRecorder(options, switch[0] if switch is not None else None)
    start_joints, noise_m = episode_variation(options, seed)
    # Until success plus TAIL_STEPS ticks of holding, or the step budget.
    outcome = run_graph_episode(
        sim,
        ScriptedBackend(chunk_horizon=options.chunk_horizon),
        seed,
        options.execution_mode,
        episode_timing(options, seed),
        reset_kwargs={**reset_kwargs, "start_joints": start_joints},
        perturb=_perturbation(noise_m, np.random.default_rng([seed, 3])),
        render=True,
        on_inference=recorder,
        stop_on_success=False,
        stop_after_success_steps=TAIL_STEPS,
        max_steps=None if options.first_ticks is None else options.first_ticks + 1,
        schedule=TICKED,  # the fixed inference tick the shipped demonstrations were recorded with
    )
    records = recorder.records
    if options.first_ticks is not None:
        del records[options.first_ticks :]
    first_tick = 0
    if switch is not None:  # carry frames: only from the grasp on, and only if there was one
        first_tick = switch[1]["from"] if switch[1]["from"] is not None else len(records)
        del records[:first_tick]
    kept = bool(records) and (outcome.success or options.first_ticks is not None)
    result = {
        "seed": seed,
        "family": family,
        "instruction": sim.spec.instruction,
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
        path = Path(options.out_dir) / f"episode_{seed}.npz"
        _save_episode(path, options, recorder, sim.spec, family=family, seed=seed, first_tick=first_tick)
    return result


def _collect_shard(args: tuple[CollectOptions, list[tuple[int, str, int]], int]) -> list[dict]:
    """One worker's share of the plan, on one sim."""
    import torch  # lazy: heavy; only the workers' resize (prepare_image) uses it, one thread each

    torch.set_num_threads(1)  # one worker per core: no library may spawn its own thread pool
    cv2.setNumThreads(1)
    options, plan, _ = args
    sim = WidowXSim()
    try:
        return [_collect_episode(sim, options, seed, family, template) for seed, family, template in plan]
    finally:
        sim.close()


def collect(options: CollectOptions) -> dict:
    """Collect ``options.episodes`` expert episodes into ``options.out_dir``; returns the summary."""
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
