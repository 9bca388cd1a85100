"""Training on real demonstrations: collected through the graph replica, a tiny model, a few steps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from vla_policy.backends.octo.backend import make_octo_backend
from vla_policy.contract import Observation
from vla_sim import tasks
from vla_training.demo_dataset import action_stats, load_demonstrations, random_shift, sample_batch
from vla_training.demonstrations import CollectOptions, _collect_shard, counterfactual_episode, episode_plan
from vla_training.pair_check import pair_check, pair_outcome, summarise_pairs
from vla_training.train_octo import TrainConfig, lr_at, train

SIZES = {"primary": [64, 64], "wrist": [32, 32]}
CROPS = {"primary": [0.25, 0.25, 0.5, 0.5]}


@pytest.fixture(scope="module")
def demos_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    options = CollectOptions(str(out), 4, tasks.TRAIN_SEED_START, SIZES, workers=1, image_crops=CROPS)
    results = _collect_shard((options, episode_plan(options), 0))  # in-process: no worker pool
    assert [r["family"] for r in results] == list(tasks.FAMILY_ORDER)
    assert all(r["success"] for r in results), results
    return out


def test_demonstrations_hold_what_the_policy_sees(demos_dir):
    files = sorted(demos_dir.glob("episode_*.npz"))
    assert len(files) == 4
    with np.load(files[0]) as data:
        ticks = len(data["proprio"])
        assert data["primary"].shape == (ticks, 64, 64, 3) and data["primary"].dtype == np.uint8
        assert data["wrist"].shape == (ticks, 32, 32, 3)
        assert data["actions"].shape == (ticks, 4, 7) and data["proprio"].shape == (ticks, 7)
        assert str(data["instruction"]) in {
            tasks.instruction_for("pick_up", t, template_index=i)
            for t in tasks.OBJECTS_BY_NAME
            for i in (0, 1)
        }
        assert set(np.unique(data["actions"][..., 6])) <= {0.0, 1.0}  # gripper absolute
        assert data["primary"].std() > 10  # a rendered scene, not a blank


def test_demonstrations_are_cropped_and_resized_as_the_backend_does(demos_dir):
    from vla_eval.graph_replica import render_observation_images
    from vla_policy.backends.octo.processor import prepare_image
    from vla_policy.backends.scripted.backend import ScriptedBackend
    from vla_sim.widowx_sim import WidowXSim
    from vla_training.demonstrations import episode_variation

    options = CollectOptions(str(demos_dir), 4, tasks.TRAIN_SEED_START, SIZES, image_crops=CROPS)
    seed, family, template = episode_plan(options)[0]
    sim = WidowXSim()
    try:  # the episode's first frame, rendered again: same scene, same read noise
        sim.reset(
            seed, family=family, template_index=template, start_joints=episode_variation(options, seed)[0]
        )
        frame = render_observation_images(
            sim, ScriptedBackend().camera_names, np.random.default_rng(seed + 7919)
        )
    finally:
        sim.close()
    with np.load(demos_dir / f"episode_{seed}.npz") as data:
        primary, wrist = data["primary"][0], data["wrist"][0]
    np.testing.assert_array_equal(
        primary, prepare_image(frame["primary"], (64, 64), "primary", (0.25, 0.25, 0.5, 0.5))
    )
    np.testing.assert_array_equal(wrist, prepare_image(frame["wrist"], (32, 32), "wrist"))
    assert not np.array_equal(primary, prepare_image(frame["primary"], (64, 64), "primary"))


def test_episode_plan_refuses_heldout_seeds():
    with pytest.raises(ValueError, match="held-out"):
        episode_plan(CollectOptions("x", 2, tasks.HELDOUT_SEEDS[-1], SIZES))


def test_batches_pad_the_window_like_the_backend_history(demos_dir):
    demos = load_demonstrations(demos_dir, ("primary", "wrist"))
    first = int(demos.episode_start[0])
    batch = sample_batch(demos, np.array([first, first + 1]), 2, np.random.default_rng(0))
    assert batch["timestep_mask"].tolist() == [[False, True], [True, True]]
    assert torch.equal(batch["images"]["primary"][0, 0], batch["images"]["primary"][0, 1])
    assert torch.equal(batch["images"]["primary"][1, 0], torch.from_numpy(demos.images["primary"][first]))
    stats = action_stats(demos.actions)
    assert stats.mask == [True] * 6 + [False] and min(stats.std) > 0


def test_random_shift_moves_every_frame_of_a_window_together():
    frames = np.random.default_rng(0).integers(0, 255, (3, 2, 16, 16, 3), dtype=np.uint8)
    frames[:, 1] = frames[:, 0]
    shifted = random_shift(frames, 2, np.random.default_rng(1))
    assert shifted.shape == frames.shape
    assert np.array_equal(shifted[:, 0], shifted[:, 1])


def tiny_config(demos_dir, out_dir, steps: int, **overrides) -> TrainConfig:
    """A tiny model on the four collected episodes, one held out, validated at the first and last step."""
    settings = {
        "model_size": "tiny",
        "model_overrides": {"text_encoder": "minilm", "proprio_dim": 7, "window": 1, "max_horizon": 1},
        "steps": steps,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "warmup_steps": 5,
        "val_fraction": 0.25,
        "val_every": steps - 1,
        "threads": 1,
    }
    return TrainConfig(data_dir=str(demos_dir), out_dir=str(out_dir), **{**settings, **overrides})


def test_training_lowers_the_loss_and_the_checkpoint_drives_the_backend(demos_dir, tmp_path):
    config = tiny_config(demos_dir, tmp_path / "ckpt", 150)
    summary = train(config)
    log = summary["log"]
    assert log["val_step"] == [0, 149]
    assert log["val_loss"][-1] < 0.8 * log["val_loss"][0]  # held-out episodes, fixed noise
    assert log["loss"][-1] < log["loss"][0]
    assert (tmp_path / "ckpt" / "loss.png").stat().st_size > 5000
    assert (
        json.loads((tmp_path / "ckpt" / "norm_stats.json").read_text())["widowx_sim"]["action"]["mask"][-1]
        is False
    )
    backend = make_octo_backend(str(tmp_path / "ckpt"), chunk_horizon=4)
    images = {"primary": np.zeros((256, 256, 3), np.uint8), "wrist": np.zeros((128, 128, 3), np.uint8)}
    out = backend.infer(Observation(1, images, "pick up the red cube", np.zeros(7)))
    assert out.chunk.shape == (4, 7) and np.all(np.isfinite(out.chunk))
    assert lr_at(0, config) < lr_at(5, config) and lr_at(149, config) < lr_at(10, config)

    # Continuing from the checkpoint starts where it ended, not from a random initialisation.
    again = dataclasses.replace(
        config, out_dir=str(tmp_path / "continued"), init_from=str(tmp_path / "ckpt"), steps=2, val_every=1
    )
    continued = train(again)
    assert continued["log"]["val_loss"][0] == pytest.approx(log["val_loss"][-1], rel=0.05)
    assert continued["log"]["val_loss"][0] < 0.8 * log["val_loss"][0]


def test_train_config_names_bad_fields():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(data_dir="d", out_dir="o", batch_size=0)
    with pytest.raises(ValueError, match="unknown train setting"):
        TrainConfig.from_dict({"data_dir": "d", "out_dir": "o", "epochs": 3}, "cfg.yaml")


def test_collection_varies_start_pose_and_noise_per_seed_deterministically():
    from vla_training.demonstrations import episode_variation

    options = CollectOptions(
        "x",
        40,
        tasks.TRAIN_SEED_START,
        SIZES,
        random_start_fraction=0.5,
        noisy_fraction=0.5,
        action_noise_m=0.01,
    )
    seeds = range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 40)
    first = [episode_variation(options, s) for s in seeds]
    again = [episode_variation(options, s) for s in seeds]
    for (start_a, noise_a), (start_b, noise_b) in zip(first, again, strict=True):
        assert noise_a == noise_b and (start_a is None) == (start_b is None)
        assert start_a is None or np.array_equal(start_a, start_b)
    assert 8 <= sum(start is not None for start, _ in first) <= 32
    assert {noise for _, noise in first} == {0.0, 0.01}
    plain = CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES)
    assert all(episode_variation(plain, s) == (None, 0.0) for s in seeds)
    with pytest.raises(ValueError, match="noisy_fraction"):
        CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, noisy_fraction=1.5)
    with pytest.raises(ValueError, match="action_noise_m"):
        CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, action_noise_m=0.5)


def test_weighted_draws_favour_the_weighted_episodes_and_name_bad_weights(demos_dir):
    demos = load_demonstrations(demos_dir, ("primary", "wrist"))
    ticks = np.arange(len(demos))
    episode = demos.episode_of_tick()
    p = demos.draw_probabilities(ticks, np.array([3.0, 1.0, 1.0, 1.0]))
    assert p.sum() == pytest.approx(1.0)
    # a tick of episode 0 is three times as likely as a tick of any other episode
    assert p[episode == 0][0] == pytest.approx(3 * p[episode == 1][0])
    with pytest.raises(ValueError, match=r"episode_weights: expected finite values > 0, got -1\.0"):
        demos.draw_probabilities(ticks, np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one per episode"):
        demos.draw_probabilities(ticks, np.ones(3))


def test_grounding_loss_trains_a_head_that_is_not_saved(demos_dir, tmp_path):
    from safetensors import safe_open

    from vla_policy.backends.octo.model import OctoModel
    from vla_training.sim_glue import episode_objects

    config = tiny_config(demos_dir, tmp_path / "ckpt", 80, grounding_weight=0.5)
    with pytest.raises(ValueError, match="grounding_weight > 0 needs the object positions"):
        train(config)
    summary = train(config, episode_objects=episode_objects)
    log = summary["log"]
    assert log["grounding_loss"][-1] < 0.5 * log["grounding_loss"][0]
    assert len(log["val_grounding_cm"]) == 2 and all("mover" in v for v in log["val_grounding_cm"])
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    model_keys = set(
        OctoModel(make_octo_backend(str(tmp_path / "ckpt"), chunk_horizon=4).config).state_dict()
    )
    assert saved <= model_keys and not any("ground" in k for k in saved)
    with pytest.raises(ValueError, match="grounding_weight"):
        TrainConfig(data_dir="d", out_dir="o", grounding_weight=-1.0)


def test_decision_frames_keep_the_first_ticks_of_every_scene(demos_dir, tmp_path):
    options = CollectOptions(
        str(tmp_path), 4, tasks.TRAIN_SEED_START, SIZES, workers=1, random_start_fraction=1.0, first_ticks=2
    )
    results = _collect_shard((options, episode_plan(options), 0))
    assert [r["ticks"] for r in results] == [2, 2, 2, 2] and all(r["kept"] for r in results)
    assert not any(r["success"] for r in results)  # two ticks finish no task: kept all the same
    for r in results:
        with np.load(tmp_path / f"episode_{r['seed']}.npz") as data:
            assert data["primary"].shape == (2, 64, 64, 3) and data["actions"].shape == (2, 4, 7)
            # the expert's opening chunk moves the gripper (towards the named object)
            assert np.abs(data["actions"][0, :, :3]).sum() > 0.01
    with pytest.raises(ValueError, match="first_ticks"):
        CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, first_ticks=0)

    # trained on together with the full demonstrations: one set of ticks, both folders' episodes
    both = load_demonstrations([demos_dir, tmp_path], ("primary", "wrist"))
    alone = load_demonstrations(demos_dir, ("primary", "wrist"))
    assert len(both) == len(alone) + 8 and len(both.episode_seeds) == 8
    assert sorted(both.families) == sorted(tasks.FAMILY_ORDER * 2)
    with pytest.raises(FileNotFoundError, match="no episode_"):
        load_demonstrations([demos_dir, tmp_path / "missing"], ("primary", "wrist"))


def test_recorded_collection_is_reused_when_only_newer_settings_with_defaults_differ(tmp_path):
    from dataclasses import asdict

    from vla_training.train_cli import have_demonstrations

    options = CollectOptions(str(tmp_path), 4, tasks.TRAIN_SEED_START, SIZES)
    recorded = asdict(options)
    del recorded["first_ticks"]  # a collection recorded before the setting existed
    del recorded["image_crops"]  # one whose default is a factory's
    (tmp_path / "meta.json").write_text(json.dumps({"options": recorded}))
    assert have_demonstrations(options)
    assert not have_demonstrations(dataclasses.replace(options, first_ticks=2))
    assert not have_demonstrations(dataclasses.replace(options, episodes=5))


def test_counterfactual_frames_pair_the_first_frame_with_another_instruction(tmp_path):
    decided, swapped = tmp_path / "decisions", tmp_path / "counterfactuals"
    common = dict(workers=1, random_start_fraction=1.0, first_ticks=1)
    plan = [(s, "stack", 0) for s in range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 2)]
    plan += [(s, "pick_up", 0) for s in range(tasks.TRAIN_SEED_START + 2, tasks.TRAIN_SEED_START + 40)]
    plain = next(s for s, f, _ in plan if f == "pick_up" and counterfactual_episode(s, f, 0) is None)
    twin = next(s for s, f, _ in plan if f == "pick_up" and counterfactual_episode(s, f, 0) is not None)
    plan = [p for p in plan if p[1] == "stack" or p[0] in (plain, twin)]
    for out, flag in ((decided, False), (swapped, True)):
        out.mkdir()
        options = CollectOptions(str(out), 4, tasks.TRAIN_SEED_START, SIZES, counterfactual=flag, **common)
        results = _collect_shard((options, plan, 0))
    assert [r["kept"] for r in results] == [s != plain for s, _, _ in plan]  # the plain scene: no twin
    for seed, _, _ in [p for p in plan if p[0] != plain]:
        with np.load(decided / f"episode_{seed}.npz") as a, np.load(swapped / f"episode_{seed}.npz") as b:
            # the same first frame (scene, start pose, camera noise) ...
            assert np.array_equal(a["primary"], b["primary"]) and np.array_equal(a["proprio"], b["proprio"])
            # ... another instruction, and the expert heads somewhere else
            assert str(a["instruction"]) != str(b["instruction"])
            assert np.abs(a["actions"][0, :, :2] - b["actions"][0, :, :2]).max() > 0.005
            assert str(b["instruction"]) == counterfactual_episode(seed, str(a["family"]), 0).instruction

    # the pair check runs a trained checkpoint on the pick/place pairs (here the one twin scene)
    train(tiny_config(decided, tmp_path / "ckpt", 10, extra_data_dirs=[str(swapped)]))
    backend = make_octo_backend(str(tmp_path / "ckpt"), chunk_horizon=4)
    result = pair_check(backend, decided, swapped)
    assert result["pairs"] == 1 and result["median_expert_shift_cm"] > 0.5
    assert 0 <= result["both_right"] <= result["right_share"] <= 1
    (decided / f"episode_{twin}.npz").unlink()
    with pytest.raises(FileNotFoundError, match=f"episode_{twin}.npz: no decision clip"):
        pair_check(backend, decided, swapped)


def test_pair_outcomes_tell_reading_the_word_from_ignoring_it():
    left, right = np.array([0.0, 0.1]), np.array([0.1, 0.0])
    reads = pair_outcome([left, right], [left, right], other_seed=left + 0.001)
    ignores = pair_outcome([left, left], [left, right], other_seed=left)
    assert reads["right"] == [True, True] and ignores["right"] == [True, False]
    assert reads["word_shift_cm"] == pytest.approx(14.14, abs=0.01) and ignores["word_shift_cm"] == 0
    summary = summarise_pairs([reads, ignores])
    assert (summary["right_share"], summary["both_right"], summary["same_object_both"]) == (0.75, 0.5, 0.5)
    with pytest.raises(ValueError, match="no pairs"):
        summarise_pairs([])


def test_stem_pretraining_trains_the_stems_but_not_their_film(demos_dir, tmp_path, monkeypatch):
    from vla_policy.backends.octo.config import octo_preset
    from vla_policy.backends.octo.model import OctoModel
    from vla_training.object_localisation import StemPretraining, pretrain_stems
    from vla_training.sim_glue import object_catalogue

    overrides = {"text_encoder": "minilm", "proprio_dim": 7, "window": 1, "max_horizon": 1, "film": True}
    model = OctoModel(octo_preset("tiny", **overrides))
    demos = load_demonstrations(str(demos_dir), model.config.cameras)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    options = StemPretraining(
        cameras=["primary", "wrist"], minutes=5, steps=60, batch_size=8, learning_rate=3e-3
    )
    rng = np.random.default_rng(0)
    metrics = pretrain_stems(model, demos, object_catalogue(), options, np.arange(3), np.array([3]), rng)
    assert metrics["steps"] == 60 and metrics["train_loss"] < 0.5 * metrics["first_loss"]
    for camera in ("primary", "wrist"):  # held-out scene: the fields are there and in range
        assert 0 <= metrics[camera]["presence_accuracy"] <= 1 and metrics[camera]["median_error_cm"] > 0
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".convs." in k for k in changed) and any("embedding" in k for k in changed)
    assert not any(".films." in k for k in changed)  # FiLM stays at its zero start
    assert all(k.startswith("image_tokenizers.") for k in changed)
    with pytest.raises(ValueError, match=r"cameras: \['left'\]"):
        pretrain_stems(
            model, demos, object_catalogue(), StemPretraining(cameras=["left"]), np.arange(3), [], rng
        )

    config = tiny_config(
        demos_dir,
        tmp_path / "ckpt",
        3,
        stem_pretraining={"steps": 5, "batch_size": 4},
        model_overrides=overrides,
    )
    with pytest.raises(ValueError, match="needs the scenes' objects"):
        train(config)
    summary = train(config, catalogue=object_catalogue())
    assert summary["stem_pretraining"]["steps"] == 5 and summary["steps_done"] == 3

    # With object slots too (the run 10-12 recipe) the scenes are labelled once and shared.
    from vla_training.object_localisation import SceneLabels

    calls, of = [], SceneLabels.of.__func__
    monkeypatch.setattr(SceneLabels, "of", classmethod(lambda cls, *a: calls.append(1) or of(cls, *a)))
    both = {**overrides, "film": False, "object_slots": 8}
    config = tiny_config(demos_dir, tmp_path / "both", 2, stem_pretraining={"steps": 2}, model_overrides=both)
    summary = train(config, catalogue=object_catalogue())
    assert summary["stem_pretraining"]["steps"] == 2 and summary["steps_done"] == 2 and len(calls) == 1
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig(data_dir="d", out_dir="o", init_from="m", stem_pretraining={})


def test_object_slots_learn_where_each_object_is_and_drive_the_backend(demos_dir, tmp_path):
    from vla_training.sim_glue import object_catalogue

    overrides = {"text_encoder": "minilm", "proprio_dim": 7, "window": 1, "max_horizon": 1, "object_slots": 8}
    config = tiny_config(demos_dir, tmp_path / "ckpt", 120, model_overrides=overrides)
    with pytest.raises(ValueError, match="object_slots needs the scenes' objects"):
        train(config)
    summary = train(config, catalogue=object_catalogue())
    log = summary["log"]
    assert log["object_loss"][-1] < log["object_loss"][0]
    first, last = log["val_objects"][0], log["val_objects"][-1]  # the held-out scene's first ticks
    assert last["median_error_cm"] < 0.6 * first["median_error_cm"]
    assert set(last) >= {"presence_accuracy", "which_is_which", "lookalike_cases"}
    backend = make_octo_backend(str(tmp_path / "ckpt"), chunk_horizon=4)  # the slots load and run
    images = {"primary": np.zeros((256, 256, 3), np.uint8), "wrist": np.zeros((128, 128, 3), np.uint8)}
    out = backend.infer(Observation(1, images, "pick up the red cube", np.zeros(7)))
    assert out.chunk.shape == (4, 7) and np.all(np.isfinite(out.chunk))
    wrong = tiny_config(demos_dir, tmp_path / "x", 2, model_overrides={**overrides, "object_slots": 5})
    with pytest.raises(ValueError, match="5 slots for a catalogue of 8"):
        train(wrong, catalogue=object_catalogue())
    with pytest.raises(ValueError, match="object_loss_weight"):
        TrainConfig(data_dir="d", out_dir="o", object_loss_weight=-1)


def test_collection_draws_graph_timing_per_seed_and_names_bad_ranges():
    from vla_eval.graph_replica import Timing
    from vla_training.demonstrations import episode_timing

    seeds = range(tasks.TRAIN_SEED_START, tasks.TRAIN_SEED_START + 40)
    plain = CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES)
    assert all(episode_timing(plain, s) == Timing() for s in seeds)
    options = CollectOptions(
        "x", 40, tasks.TRAIN_SEED_START, SIZES, policy_phase_s=(0.0, 0.1), processing_s=(0.02, 0.12)
    )
    timings = [episode_timing(options, s) for s in seeds]
    assert timings == [episode_timing(options, s) for s in seeds]
    phases = [t.policy_phase_s for t in timings]
    assert all(0.0 <= p <= 0.1 for p in phases) and max(phases) - min(phases) > 0.05
    assert all(t.processing_s == 0.02 and t.processing_jitter_s == pytest.approx(0.1) for t in timings)
    with pytest.raises(ValueError, match=r"collect.processing_s: .*\(0.1, 0.05\)"):
        CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, processing_s=(0.1, 0.05))
    with pytest.raises(ValueError, match="collect.policy_phase_s"):
        CollectOptions("x", 4, tasks.TRAIN_SEED_START, SIZES, policy_phase_s=(0.0, 0.3))


def test_the_object_slot_loss_still_trains_the_slots_with_the_grounding_loss_on(demos_dir, tmp_path):
    """Both auxiliary losses on: the object slots' ``locate`` layer, which only the object-slot loss
    reaches, must move (a total that dropped that loss left it at its initial weights)."""
    from vla_policy.backends.octo.checkpoint import load_octo_checkpoint
    from vla_policy.backends.octo.config import octo_preset
    from vla_policy.backends.octo.model import OctoModel
    from vla_training.sim_glue import episode_objects, object_catalogue

    overrides = {"text_encoder": "minilm", "proprio_dim": 7, "window": 1, "max_horizon": 1, "object_slots": 8}
    config = tiny_config(demos_dir, tmp_path / "ckpt", 20, model_overrides=overrides, grounding_weight=0.5)
    summary = train(config, episode_objects=episode_objects, catalogue=object_catalogue())
    assert summary["log"]["object_loss"] and summary["log"]["grounding_loss"]
    torch.manual_seed(config.seed)  # train() seeds torch so, then builds the model: the same start
    initial = OctoModel(octo_preset("tiny", **overrides)).object_slots.locate.state_dict()
    trained = load_octo_checkpoint(str(tmp_path / "ckpt")).model.object_slots.locate.state_dict()
    assert set(initial) == set(trained) == {"weight", "bias"}
    assert not torch.equal(initial["weight"], trained["weight"])
