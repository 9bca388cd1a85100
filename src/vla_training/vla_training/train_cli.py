"""``vla-stack collect`` and ``vla-stack train CONFIG``: demonstrations, then the trained policy."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from vla_bringup.paths import repo_root

COLLECTIONS = ("collect", "decisions", "counterfactuals", "carry_frames")  # the sections that collect data


def _resolve(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else repo_root() / p)


def load_train_yaml(path: str) -> dict[str, dict]:
    """The sections of a training config: ``collect`` (demonstrations), ``train`` and optionally
    ``decisions`` (decision frames), ``counterfactuals`` (re-targeted decision frames) and
    ``carry_frames`` (stack from the grasp on, the base re-targeted in half), each of them a
    collection, with errors naming the file."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"train config not found: {path}")
    data = yaml.safe_load(file.read_text()) or {}
    unknown = sorted(set(data) - {*COLLECTIONS, "train"})
    if unknown or "train" not in data:
        raise SystemExit(
            f"{path}: expected sections 'collect', 'train' (and optionally 'decisions', "
            f"'counterfactuals', 'carry_frames'), got {sorted(data)}"
        )
    return {name: dict(data.get(name) or {}) for name in (*COLLECTIONS, "train")}


def collect_options(
    section: dict,
    image_sizes: dict,
    source: str,
    image_crops: dict | None = None,
    counterfactual: bool = False,
    carry_retarget: bool = False,
):
    from vla_training.demonstrations import CollectOptions

    variation = {"random_start_fraction", "noisy_fraction", "action_noise_m"}
    spans = {"policy_phase_s", "processing_s"}
    known = {"out_dir", "episodes", "seed_start", "workers", "first_ticks", *variation, *spans}
    unknown = sorted(set(section) - known)
    if unknown:
        raise SystemExit(f"{source}: unknown collect setting(s) {unknown}; known: {sorted(known)}")
    return CollectOptions(
        out_dir=_resolve(section.get("out_dir", "data/sim_demos")),
        episodes=int(section.get("episodes", 2000)),
        seed_start=int(section.get("seed_start", 100000)),
        image_sizes={k: list(v) for k, v in image_sizes.items()},
        workers=int(section.get("workers", 2)),
        **{k: float(section[k]) for k in sorted(variation & set(section))},
        **{k: tuple(float(v) for v in section[k]) for k in sorted(spans & set(section))},
        image_crops={k: list(v) for k, v in (image_crops or {}).items() if v is not None},
        first_ticks=None if section.get("first_ticks") is None else int(section["first_ticks"]),
        counterfactual=counterfactual,
        carry_retarget=carry_retarget,
    )


def have_demonstrations(options) -> bool:
    """Whether out_dir already holds this collection (same options in its meta.json)."""
    meta = Path(options.out_dir) / "meta.json"
    if not meta.is_file():
        return False
    from dataclasses import MISSING, asdict, fields

    recorded = json.loads(meta.read_text()).get("options", {})
    # a setting added after the collection was recorded counts as its default
    defaults = {f.name: f.default for f in fields(options) if f.default is not MISSING}
    return {**defaults, **recorded} == json.loads(json.dumps(asdict(options)))


def lookalike_episode_weight(weight: float):
    """(seed, family) -> ``weight`` for the demonstrations whose scene holds a look-alike of an object
    the instruction names (same colour, other shape: see ``tasks.lookalikes``), else 1. The collector
    resets by seed and family alone, so ``sample_episode`` rebuilds each scene exactly."""
    from vla_sim import tasks

    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"train.lookalike_weight: expected a number > 0, got {weight!r}")

    def episode_weight(seed: int, family: str) -> float:
        return weight if tasks.lookalikes(tasks.sample_episode(seed, family=family)) else 1.0

    return episode_weight


def episode_objects(seed: int, family: str):
    """(4,) where the scene of (seed, family) puts the object to move and where it goes (x, y in
    metres; the bowl for place, the base for stack, NaN for pick and push), for the grounding loss."""
    import numpy as np

    from vla_sim import tasks

    spec = tasks.sample_episode(seed, family=family)
    mover = spec.placements[0]
    if spec.base_object is not None:
        base = next(p for p in spec.placements if p.name == spec.base_object)
        destination = (base.x, base.y)
    elif spec.destination == "bowl":
        destination = spec.bowl_xy
    else:
        destination = (math.nan, math.nan)
    return np.array([mover.x, mover.y, *destination])


def object_catalogue():
    """The sim's eight objects and where a (seed, family) scene puts them, for stem pretraining."""
    import numpy as np

    from vla_sim import tasks
    from vla_training.object_localisation import ObjectCatalogue

    names = tuple(obj.name for obj in tasks.OBJECTS)

    def locate(seed: int, family: str) -> np.ndarray:
        out = np.zeros((len(names), 3))
        for placement in tasks.sample_episode(seed, family=family).placements:
            out[names.index(placement.name)] = (1.0, placement.x, placement.y)
        return out

    pairs = tuple(
        (a, b)
        for a, first in enumerate(tasks.OBJECTS)
        for b, second in enumerate(tasks.OBJECTS)
        if a < b and first.colour == second.colour
    )
    return ObjectCatalogue(names, locate, pairs)


def cmd_train(args: argparse.Namespace) -> int:
    from vla_policy.backends.octo.config import octo_preset
    from vla_training.train_octo import TrainConfig, train

    sections = load_train_yaml(args.config)
    train_section = sections["train"]
    train_section["out_dir"] = _resolve(args.out or train_section.get("out_dir", "models/octo-sim"))
    if train_section.get("loss_plot"):
        train_section["loss_plot"] = _resolve(train_section["loss_plot"])
    if train_section.get("init_from"):  # continuing a run: the checkpoint's architecture and image sizes
        from vla_policy.backends.octo.checkpoint import load_octo_config

        train_section["init_from"] = _resolve(train_section["init_from"])
        model = load_octo_config(train_section["init_from"])
    else:
        model = octo_preset(
            train_section.get("model_size", "sim"), **train_section.get("model_overrides", {})
        )
    sources = [
        collect_options(
            sections[name],
            model.image_size,
            f"{args.config} ({name})",
            model.image_crop,
            counterfactual=name == "counterfactuals",
            carry_retarget=name == "carry_frames",
        )
        for name in COLLECTIONS
        if name == "collect" or sections[name]
    ]
    retargeted = [name for name in ("counterfactuals", "carry_frames") if sections[name]]
    if float(train_section.get("grounding_weight", 0.0)) > 0 and retargeted:
        raise SystemExit(
            f"{args.config}: train.grounding_weight > 0 rebuilds each scene's targets from seed and "
            f"family, which the {retargeted} section(s) re-target; set it to 0 or drop them"
        )
    if args.steps is not None:
        train_section["steps"] = args.steps
    for options in sources:
        if have_demonstrations(options) and not args.recollect:
            print(f"[train] using the demonstrations in {options.out_dir} (--recollect to record them again)")
            continue
        from vla_training.demonstrations import collect

        summary = collect(options)
        print(f"[train] kept {summary['kept']}/{summary['episodes']} episodes: {summary['per_family']}")
    lookalike_weight = float(train_section.pop("lookalike_weight", 1.0))
    config = TrainConfig.from_dict(
        {
            **train_section,
            "data_dir": sources[0].out_dir,
            "extra_data_dirs": [o.out_dir for o in sources[1:]],
        },
        source=args.config,
    )
    weight = lookalike_episode_weight(lookalike_weight) if lookalike_weight != 1.0 else None
    result = train(
        config,
        weight,
        episode_objects if config.grounding_weight > 0 else None,
        object_catalogue() if config.stem_pretraining is not None or model.object_slots else None,
    )
    print(
        f"[train] {result['steps_done']} steps in {result['minutes']} min; final loss "
        f"{result['final_train_loss']:.4f} (val {result['final_val_loss']}); checkpoint in {config.out_dir}"
    )
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from vla_training.demonstrations import CollectOptions, collect

    sizes = {"primary": (args.primary_size, args.primary_size), "wrist": (args.wrist_size, args.wrist_size)}
    from vla_policy.backends.octo.config import octo_preset

    crop = list(args.primary_crop or octo_preset("sim").image_crop["primary"])
    crops = {"primary": crop} if crop != [0.0, 0.0, 1.0, 1.0] else {}
    options = CollectOptions(
        _resolve(args.out), args.episodes, args.seed_start, sizes, args.workers, image_crops=crops
    )
    summary = collect(options)
    print(
        f"kept {summary['kept']}/{summary['episodes']} episodes: {summary['per_family']} -> {options.out_dir}"
    )
    return 0


def cmd_pair_check(args: argparse.Namespace) -> int:
    from vla_bringup.policies import resolve_policy
    from vla_policy.backends.octo.backend import make_octo_backend
    from vla_training.pair_check import pair_check

    spec = resolve_policy("octo-sim", args.checkpoint and _resolve(args.checkpoint), {})
    backend = make_octo_backend(spec.checkpoint, **spec.options)  # octo-sim's chunk and sampler seed
    result = pair_check(backend, _resolve(args.decisions), _resolve(args.counterfactuals), args.pairs)
    print(f"[pair-check] {spec.checkpoint}: {json.dumps(result)}")
    return 0


def add_train_parsers(sub) -> None:
    train = sub.add_parser("train", help="collect demonstrations and train a policy from a config YAML")
    train.add_argument("config", help="e.g. config/train/octo_sim.yaml")
    train.add_argument("--out", default=None, help="checkpoint directory (default: the config's)")
    train.add_argument("--steps", type=int, default=None, help="override the config's step count")
    train.add_argument("--recollect", action="store_true", help="record the demonstrations again")
    train.set_defaults(func=cmd_train)

    collect = sub.add_parser(
        "collect", help="record scripted-expert demonstrations (images as a policy sees them)"
    )
    collect.add_argument("--out", default="data/sim_demos")
    collect.add_argument("--episodes", type=int, default=200)
    collect.add_argument("--seed-start", type=int, default=100000)
    collect.add_argument("--workers", type=int, default=2)
    collect.add_argument("--primary-size", type=int, default=128)
    collect.add_argument("--wrist-size", type=int, default=64)
    collect.add_argument(
        "--primary-crop",
        type=float,
        nargs=4,
        metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"),
        default=None,
        help="fixed crop of the primary view before the resize, as fractions (default: the sim "
        "preset's image_crops; 0 0 1 1 for none)",
    )
    collect.set_defaults(func=cmd_collect)

    check = sub.add_parser(
        "pair-check", help="does an octo checkpoint act on the word that tells two objects apart?"
    )
    check.add_argument("--checkpoint", default="", help="default: models/octo-sim")
    check.add_argument("--decisions", default="data/sim_decisions")
    check.add_argument("--counterfactuals", default="data/sim_counterfactuals")
    check.add_argument("--pairs", type=int, default=100)
    check.set_defaults(func=cmd_pair_check)
