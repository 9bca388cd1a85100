"""``vla-stack collect``, ``vla-stack train CONFIG`` and ``vla-stack pair-check``: demonstrations, the
trained policy, and whether it reads the word that tells two objects apart.

A train config (config/train/*.yaml) has a ``train`` section (``TrainConfig``) and one section per
collection (``CollectOptions``): ``collect`` (demonstrations) and optionally ``decisions``,
``counterfactuals`` and ``carry_frames``. An ablation is a small override of another config: a
top-level ``base: <path relative to the override>`` and only what differs, deep-merged into the
base; ``null`` removes a base setting (a section or a train option goes back to its default).

This module maps those sections to their dataclasses and runs them. The ``vla-stack`` command
imports it at start-up to build its parser, so it never imports torch or the simulator (mujoco) at
module level: the trainer (``train_octo``), the sim glue, the checkpoint loaders and the collector
(``demonstrations``, which runs the sim) are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vla_bringup.paths import repo_root
from vla_bringup.policies import resolve_policy
from vla_policy.backends.octo.config import OctoConfig, octo_preset
from vla_training.pair_check import pair_check
from vla_training.train_config import TrainConfig

if TYPE_CHECKING:
    from vla_training.demonstrations import CollectOptions

COLLECTIONS = ("collect", "decisions", "counterfactuals", "carry_frames")  # the sections that collect data
RETARGETED = ("counterfactuals", "carry_frames")  # collections whose scenes are not their seed's targets
BASE_KEY = "base"  # an override's base config, relative to the override's folder
# train settings that the CLI fills in from the collections; a config never sets them
DERIVED_TRAIN_SETTINGS = ("data_dir", "extra_data_dirs")
# collect settings a config may set; the rest come from the model (image sizes, crops) or the section
COLLECT_VARIATION = ("random_start_fraction", "noisy_fraction", "action_noise_m")
COLLECT_SPANS = ("policy_phase_s", "processing_s")
COLLECT_SETTINGS = (
    "out_dir",
    "episodes",
    "seed_start",
    "workers",
    "first_ticks",
    *COLLECT_VARIATION,
    *COLLECT_SPANS,
)


def _resolve(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else repo_root() / p)


def read_config_file(path: str | Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping with its ``base`` chain merged in (``merge_override``)."""
    file = Path(path)
    if not file.is_file():
        raise SystemExit(f"train config not found: {path}")
    data = yaml.safe_load(file.read_text()) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    base_file = (file.parent / str(base)).resolve()
    if not base_file.is_file():
        raise SystemExit(f"{path}: base {base!r} not found (looked for {base_file})")
    if base_file in chain or base_file == file.resolve():
        raise SystemExit(f"{path}: base {base!r} leads back to itself")
    return merge_override(read_config_file(base_file, (*chain, file.resolve())), data, str(path))


def merge_override(
    base: dict[str, Any], override: dict[str, Any], source: str, at: str = ""
) -> dict[str, Any]:
    """``base`` with ``override`` deep-merged in: mappings merge key by key, ``None`` removes the
    base's key, anything else replaces it. Neither argument is changed."""
    merged = dict(base)
    for key, value in override.items():
        name = f"{at}{key}"
        if value is None:
            if key not in merged:
                raise SystemExit(f"{source}: {name}: null removes a base setting, but the base has none")
            del merged[key]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_override(merged[key], value, source, f"{name}.")
        else:
            merged[key] = value
    return merged


def load_train_yaml(path: str) -> dict[str, dict]:
    """The sections of a training config (its ``base`` merged in): ``train`` and each collection,
    ``{}`` for a collection it does not make; errors name the file and the key."""
    data = read_config_file(path)
    unknown = sorted(set(data) - {*COLLECTIONS, "train"})
    if unknown or "train" not in data:
        raise SystemExit(
            f"{path}: expected sections 'collect', 'train' (and optionally 'decisions', "
            f"'counterfactuals', 'carry_frames'), got {sorted(data)}"
            + (f"; unknown: {unknown}" if unknown else "")
        )
    sections = {name: dict(data.get(name) or {}) for name in (*COLLECTIONS, "train")}
    known = set(TrainConfig.__dataclass_fields__) - set(DERIVED_TRAIN_SETTINGS)
    unknown = sorted(set(sections["train"]) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown train setting(s) {unknown}; known: {sorted(known)}")
    return sections


def collect_options(
    section: dict,
    image_sizes: dict,
    source: str,
    image_crops: dict | None = None,
    counterfactual: bool = False,
    carry_retarget: bool = False,
) -> CollectOptions:
    """A collection section as ``CollectOptions`` for a model of ``image_sizes`` and ``image_crops``."""
    # lazy: the collector imports the simulator (see the module doc)
    from vla_training.demonstrations import CollectOptions

    unknown = sorted(set(section) - set(COLLECT_SETTINGS))
    if unknown:
        raise SystemExit(f"{source}: unknown collect setting(s) {unknown}; known: {sorted(COLLECT_SETTINGS)}")
    return CollectOptions(
        out_dir=_resolve(section.get("out_dir", "data/sim_demos")),
        episodes=int(section.get("episodes", 2000)),
        seed_start=int(section.get("seed_start", 100000)),
        image_sizes={k: list(v) for k, v in image_sizes.items()},
        workers=int(section.get("workers", 2)),
        **{k: float(section[k]) for k in COLLECT_VARIATION if k in section},
        **{k: tuple(float(v) for v in section[k]) for k in COLLECT_SPANS if k in section},
        image_crops={k: list(v) for k, v in (image_crops or {}).items() if v is not None},
        first_ticks=None if section.get("first_ticks") is None else int(section["first_ticks"]),
        counterfactual=counterfactual,
        carry_retarget=carry_retarget,
    )


def have_demonstrations(options: CollectOptions) -> bool:
    """Whether out_dir already holds this collection (same options in its meta.json)."""
    meta = Path(options.out_dir) / "meta.json"
    if not meta.is_file():
        return False
    recorded = json.loads(meta.read_text()).get("options", {})
    # a setting added after the collection was recorded counts as its default
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()
        for f in fields(options)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    return json.loads(json.dumps({**defaults, **recorded})) == json.loads(json.dumps(asdict(options)))


def model_config(train_section: dict) -> OctoConfig:
    """The architecture the config trains: ``init_from``'s when it continues a checkpoint, else the
    preset with its overrides (the collections' image sizes and crops follow it)."""
    if train_section.get("init_from"):
        # lazy: the checkpoint module imports torch (see the module doc)
        from vla_policy.backends.octo.checkpoint import load_octo_config

        return load_octo_config(_resolve(train_section["init_from"]))
    return octo_preset(train_section.get("model_size", "sim"), **train_section.get("model_overrides", {}))


def collections(sections: dict[str, dict], model: OctoConfig, source: str) -> list[CollectOptions]:
    """The config's collections in ``COLLECTIONS`` order, ``collect`` always first."""
    return [
        collect_options(
            sections[name],
            model.image_size,
            f"{source} ({name})",
            model.image_crop,
            counterfactual=name == "counterfactuals",
            carry_retarget=name == "carry_frames",
        )
        for name in COLLECTIONS
        if name == "collect" or sections[name]
    ]


def train_config(
    sections: dict[str, dict], sources: list[CollectOptions], args: argparse.Namespace
) -> TrainConfig:
    """The ``train`` section as ``TrainConfig``: paths resolved against the repository, the data
    folders those of the collections ``sources``, ``--out`` and ``--steps`` applied."""
    settings = dict(sections["train"])
    settings["out_dir"] = _resolve(args.out or settings.get("out_dir", "models/octo-sim"))
    for name in ("loss_plot", "init_from"):
        if settings.get(name):
            settings[name] = _resolve(settings[name])
    if args.steps is not None:
        settings["steps"] = args.steps
    retargeted = [name for name in RETARGETED if sections[name]]
    if float(settings.get("grounding_weight", 0.0)) > 0 and retargeted:
        raise SystemExit(
            f"{args.config}: train.grounding_weight > 0 rebuilds each scene's targets from seed and "
            f"family, which the {retargeted} section(s) re-target; set it to 0 or drop them"
        )
    data = {"data_dir": sources[0].out_dir, "extra_data_dirs": [o.out_dir for o in sources[1:]]}
    return TrainConfig.from_dict(settings | data, source=args.config)


def collect_missing(sources: list[CollectOptions], recollect: bool) -> None:
    # lazy: the collector imports the simulator (see the module doc)
    from vla_training.demonstrations import collect

    for options in sources:
        if have_demonstrations(options) and not recollect:
            print(f"[train] using the demonstrations in {options.out_dir} (--recollect to record them again)")
            continue
        summary = collect(options)
        print(f"[train] kept {summary['kept']}/{summary['episodes']} episodes: {summary['per_family']}")


def cmd_train(args: argparse.Namespace) -> int:
    # lazy: the trainer and the sim glue import torch (see the module doc)
    from vla_training.sim_glue import episode_objects, lookalike_episode_weight, object_catalogue
    from vla_training.train_octo import train

    sections = load_train_yaml(args.config)
    model = model_config(sections["train"])
    sources = collections(sections, model, args.config)
    config = train_config(sections, sources, args)  # checked before anything is collected
    collect_missing(sources, args.recollect)
    result = train(
        config,
        lookalike_episode_weight(config.lookalike_weight) if config.lookalike_weight != 1.0 else None,
        episode_objects if config.grounding_weight > 0 else None,
        object_catalogue() if config.stem_pretraining is not None or model.object_slots else None,
    )
    print(
        f"[train] {result['steps_done']} steps in {result['minutes']} min; final loss "
        f"{result['final_train_loss']:.4f} (val {result['final_val_loss']}); checkpoint in {config.out_dir}"
    )
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    # lazy: the collector imports the simulator (see the module doc)
    from vla_training.demonstrations import CollectOptions, collect

    sizes = {"primary": (args.primary_size, args.primary_size), "wrist": (args.wrist_size, args.wrist_size)}
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
    # lazy: the Octo backend imports torch (see the module doc)
    from vla_policy.backends.octo.backend import make_octo_backend

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
