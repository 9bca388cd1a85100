"""Training configs and the train CLI: sections to dataclasses, overrides, the commands' flags."""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vla_policy.backends.octo.checkpoint import load_octo_config
from vla_sim import tasks
from vla_training import train_cli, train_octo
from vla_training.demonstrations import episode_plan
from vla_training.train_cli import (
    COLLECTIONS,
    add_train_parsers,
    cmd_train,
    collect_options,
    collections,
    load_train_yaml,
    model_config,
    train_config,
)
from vla_training.train_config import TrainConfig

DEFAULT = "config/train/octo_sim.yaml"
CONFIGS = sorted(Path("config/train").rglob("*.yaml"))
ABLATIONS = sorted(Path("config/train/ablations").glob("*.yaml"))


def cli_args(config: str, **flags) -> argparse.Namespace:
    return argparse.Namespace(**{"config": config, "out": None, "steps": None, "recollect": False, **flags})


def built(config: str, **flags) -> TrainConfig:
    """The ``TrainConfig`` that ``vla-stack train CONFIG`` would train with."""
    sections = load_train_yaml(config)
    sources = collections(sections, model_config(sections["train"]), config)
    return train_config(sections, sources, cli_args(config, **flags))


def test_the_default_config_is_the_recipe_of_the_shipped_model():
    recorded = json.loads(Path("models/octo-sim/training_log.json").read_text())
    config = built(DEFAULT)
    paths = {"data_dir", "out_dir", "loss_plot", "extra_data_dirs", "lookalike_weight"}
    ours = {k: v for k, v in vars(config).items() if k not in paths}
    assert ours == {k: v for k, v in recorded["config"].items() if k not in paths}
    # the same folders (the model was trained in another checkout and out_dir)
    assert Path(config.data_dir).name == Path(recorded["config"]["data_dir"]).name
    assert [Path(d).name for d in config.extra_data_dirs] == [
        Path(d).name for d in recorded["config"]["extra_data_dirs"]
    ]
    assert config.out_dir.endswith("models/octo-sim") and config.loss_plot is None  # loss.png beside it
    # the look-alike weighting the shipped run logged (the option was not yet in its config)
    assert config.lookalike_weight == 2.5 and recorded["weighted_sampling"]["episodes_weighted_up"] > 0
    sections = load_train_yaml(DEFAULT)
    assert model_config(sections["train"]) == load_octo_config("models/octo-sim")


def test_train_yaml_sections_are_checked(tmp_path):
    sections = load_train_yaml(DEFAULT)
    assert sections["train"]["out_dir"] == "models/octo-sim"
    assert sections["collect"]["seed_start"] >= tasks.TRAIN_SEED_START
    assert sections["train"]["time_limit_min"] <= 90  # the training budget
    # each counterfactual frame pairs with the decision frame of its seed
    assert sections["counterfactuals"]["seed_start"] == sections["decisions"]["seed_start"]
    assert sections["counterfactuals"]["episodes"] == sections["decisions"]["episodes"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"training": {}}))
    with pytest.raises(SystemExit, match=r"expected sections 'collect', 'train'.*unknown: \['training'\]"):
        load_train_yaml(str(bad))
    bad.write_text(json.dumps({"collect": {}, "train": {"data_dir": "x"}}))  # the CLI fills it in
    with pytest.raises(SystemExit, match=r"bad.yaml: unknown train setting\(s\) \['data_dir'\]"):
        load_train_yaml(str(bad))

    # the grounding targets are rebuilt from seed and family: wrong for re-targeted scenes
    grounded = tmp_path / "grounded.yaml"
    grounded.write_text(
        json.dumps({"base": str(Path(DEFAULT).resolve()), "train": {"grounding_weight": 0.1}})
    )
    args = cli_args(str(grounded), out=str(tmp_path / "m"))
    with pytest.raises(SystemExit, match="grounding_weight > 0 rebuilds"):
        cmd_train(args)


def test_every_train_option_is_a_field_of_train_config_named_in_its_errors():
    assert built(DEFAULT).lookalike_weight == 2.5
    for bad in (0.0, -2.0, float("inf")):
        with pytest.raises(ValueError, match=rf"train.lookalike_weight: expected a number > 0, got {bad!r}"):
            TrainConfig(data_dir="d", out_dir="o", lookalike_weight=bad)
    with pytest.raises(ValueError, match=r"train.object_label_ticks: expected an integer >= 1, got 0"):
        TrainConfig(data_dir="d", out_dir="o", object_label_ticks=0)
    for config in CONFIGS:  # every option of every config reaches TrainConfig
        assert set(load_train_yaml(str(config))["train"]) <= set(TrainConfig.__dataclass_fields__)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_every_training_config_collects_with_valid_options(config):
    sections = load_train_yaml(str(config))
    sizes = {"primary": (64, 64), "wrist": (32, 32)}
    for name in COLLECTIONS:
        if sections.get(name):
            options = collect_options(
                sections[name], sizes, str(config), counterfactual=name == "counterfactuals"
            )
            assert options.seed_start >= tasks.TRAIN_SEED_START
            if "processing_s" in sections[name]:  # the graph timing ranges reach the collection
                assert options.processing_s == tuple(sections[name]["processing_s"])
    built(str(config))  # and trains with a valid TrainConfig


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_the_collections_of_a_train_config_hold_distinct_scenes(config):
    """Each collection draws its own seeds (counterfactuals re-use their decision frames' on purpose)."""
    sections = load_train_yaml(str(config))
    spans = {}
    for name in ("collect", "decisions", "carry_frames"):
        if name == "collect" or sections[name]:
            options = collect_options(
                sections[name], {"primary": [8, 8]}, name, carry_retarget=name == "carry_frames"
            )
            seeds = [seed for seed, _, _ in episode_plan(options)]
            spans[name] = (min(seeds), max(seeds))
    ordered = sorted(spans.values())
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ordered)), spans
    assert ordered[0][0] >= tasks.TRAIN_SEED_START


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: p.name)
def test_an_ablation_is_a_small_override_of_the_default_that_writes_its_own_model(ablation):
    raw = yaml.safe_load(ablation.read_text())
    assert (ablation.parent / raw["base"]).resolve() == Path(DEFAULT).resolve()
    settings = sum(len(section) for section in raw.values() if isinstance(section, dict))
    base = sum(len(section) for section in yaml.safe_load(Path(DEFAULT).read_text()).values())
    assert settings < base / 2, (
        f"{ablation}: {settings} settings of the base's {base}; an override holds a few"
    )
    out_dirs = {built(str(a)).out_dir for a in ABLATIONS} | {built(DEFAULT).out_dir}
    assert len(out_dirs) == len(ABLATIONS) + 1  # never overwrites the default model, nor each other
    assert built(str(ablation)).loss_plot is None  # so the plot goes beside its own model


def test_an_override_deep_merges_into_its_base_and_null_removes(tmp_path):
    base = {
        "collect": {"out_dir": "data/a", "episodes": 10, "workers": 2},
        "decisions": {"out_dir": "data/d", "episodes": 5, "first_ticks": 2},
        "train": {"steps": 100, "model_overrides": {"object_slots": 8, "window": 2}, "stem_pretraining": {}},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "more").mkdir()
    override = {
        "base": "../base.yaml",
        "collect": {"episodes": 20},
        "decisions": None,
        "train": {"model_overrides": {"window": 1}, "stem_pretraining": None, "out_dir": "models/x"},
    }
    (tmp_path / "more" / "over.yaml").write_text(yaml.safe_dump(override))
    (tmp_path / "more" / "again.yaml").write_text(
        yaml.safe_dump({"base": "over.yaml", "train": {"steps": 7}})
    )
    sections = load_train_yaml(str(tmp_path / "more" / "over.yaml"))
    assert sections["collect"] == {"out_dir": "data/a", "episodes": 20, "workers": 2}
    assert sections["decisions"] == {}  # removed: not collected
    assert sections["train"] == {
        "steps": 100,
        "model_overrides": {"object_slots": 8, "window": 1},
        "out_dir": "models/x",
    }
    chained = load_train_yaml(str(tmp_path / "more" / "again.yaml"))  # an override of an override
    assert chained["train"] == {**sections["train"], "steps": 7}
    assert yaml.safe_load((tmp_path / "base.yaml").read_text()) == base  # files untouched


def test_a_bad_override_says_what_is_wrong(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"collect": {}, "train": {"steps": 10}}))
    cases = {
        "missing.yaml": (
            {"base": "nowhere.yaml", "train": {}},
            r"missing.yaml: base 'nowhere.yaml' not found",
        ),
        "typo.yaml": (
            {"base": "base.yaml", "train": {"stepz": 3}},
            r"typo.yaml: unknown train setting\(s\) \['stepz'\]",
        ),
        "section.yaml": ({"base": "base.yaml", "trian": {}}, r"section.yaml: .*unknown: \['trian'\]"),
        "null.yaml": ({"base": "base.yaml", "train": {"seed": None}}, r"null.yaml: train.seed: null removes"),
        "loop.yaml": ({"base": "loop.yaml"}, r"loop.yaml: base 'loop.yaml' leads back to itself"),
        "collect.yaml": (
            {"base": "base.yaml", "collect": {"episode": 3}},
            r"unknown collect setting\(s\) \['episode'\]",
        ),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_text(yaml.safe_dump(data))
        with pytest.raises(SystemExit, match=message):
            built(str(tmp_path / name))
    with pytest.raises(SystemExit, match="train config not found"):
        load_train_yaml(str(tmp_path / "absent.yaml"))


def test_train_hands_the_trainer_the_config_and_the_sim_glue_it_asks_for(monkeypatch, tmp_path):
    seen = {}

    def fake_train(config, episode_weight, episode_objects, catalogue):
        seen.update(config=config, weight=episode_weight, objects=episode_objects, catalogue=catalogue)
        return {"steps_done": 1, "minutes": 0.0, "final_train_loss": 1.0, "final_val_loss": None}

    monkeypatch.setattr(train_octo, "train", fake_train)
    monkeypatch.setattr(train_cli, "collect_missing", lambda sources, recollect: seen.update(sources=sources))
    assert cmd_train(cli_args(DEFAULT, out=str(tmp_path / "m"), steps=5)) == 0
    config = seen["config"]
    assert (config.out_dir, config.steps, config.lookalike_weight) == (str(tmp_path / "m"), 5, 2.5)
    assert [config.data_dir, *config.extra_data_dirs] == [o.out_dir for o in seen["sources"]]
    assert seen["weight"] is not None and seen["objects"] is None  # look-alikes weighted, no grounding
    assert seen["catalogue"] is not None  # the object slots and the stem pretraining need it


def test_the_commands_keep_their_names_and_flags():
    parser = argparse.ArgumentParser()
    add_train_parsers(parser.add_subparsers())
    args = parser.parse_args(["train", "c.yaml", "--out", "o", "--steps", "3", "--recollect"])
    assert (args.func, args.config, args.out, args.steps, args.recollect) == (
        cmd_train,
        "c.yaml",
        "o",
        3,
        True,
    )
    args = parser.parse_args(
        ["collect", "--out", "d", "--episodes", "4", "--seed-start", "100004", "--workers", "1"]
        + ["--primary-size", "64", "--wrist-size", "32", "--primary-crop", "0", "0", "1", "1"]
    )
    assert (args.out, args.episodes, args.seed_start, args.workers) == ("d", 4, 100004, 1)
    assert (args.primary_size, args.wrist_size, args.primary_crop) == (64, 32, [0.0, 0.0, 1.0, 1.0])
    args = parser.parse_args(
        ["pair-check", "--checkpoint", "m", "--decisions", "a", "--counterfactuals", "b", "--pairs", "5"]
    )
    assert (args.checkpoint, args.decisions, args.counterfactuals, args.pairs) == ("m", "a", "b", 5)


def test_the_cli_module_loads_without_torch_or_the_simulator():
    """``vla-stack`` imports the train parsers at start-up: torch and mujoco only when a command runs."""
    code = "import sys, vla_training.train_cli; print('torch' in sys.modules, 'mujoco' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_a_tiny_training_run_through_the_cli(tmp_path):
    """``vla-stack train`` end to end on an override of the default: collect 3 episodes, train 3 steps."""
    tiny = {
        "base": str(Path(DEFAULT).resolve()),
        "collect": {"out_dir": str(tmp_path / "demos"), "episodes": 3, "workers": 1},
        "decisions": None,
        "counterfactuals": None,
        "train": {
            "out_dir": str(tmp_path / "model"),
            "model_size": "tiny",
            "model_overrides": {"text_encoder": "minilm", "proprio_dim": 7, "window": 1, "max_horizon": 1},
            "stem_pretraining": {"steps": 2, "batch_size": 4},
            "batch_size": 8,
            "warmup_steps": 1,
            "val_fraction": 0.25,
            "val_every": 1,
            "threads": 1,
        },
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    assert cmd_train(cli_args(str(path), steps=3)) == 0
    summary = json.loads((tmp_path / "model" / "training_log.json").read_text())
    assert summary["steps_done"] == 3 and summary["episodes"] == 3
    assert summary["config"]["lookalike_weight"] == 2.5 and summary["weighted_sampling"] is not None
    assert summary["stem_pretraining"]["steps"] == 2 and len(summary["log"]["val_objects"]) == 3
    assert (tmp_path / "model" / "loss.png").is_file() and (
        tmp_path / "model" / "model.safetensors"
    ).is_file()
