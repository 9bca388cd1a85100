"""The eval plan (held-out seeds, paraphrases, language ablations) and the named policies (pure)."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from vla_bringup.policies import DEFAULT_POLICY, resolve_policy
from vla_eval import evaluate
from vla_eval.evaluate import EvalOptions, add_eval_parser, build_plan, load_paraphrases, summarise_eval
from vla_sim import tasks
from vla_sim.episode_plan import load_episode_plan

PARAPHRASES = "config/eval/paraphrases.yaml"


def test_plan_is_heldout_family_balanced_and_matches_the_sims_layouts():
    plan = build_plan(EvalOptions("scripted", 8))
    assert [(e["seed"], e["family"]) for e in plan] == tasks.heldout_episodes(8)
    for entry in plan:
        spec = tasks.sample_episode(entry["seed"], family=entry["family"])
        assert entry["instruction_text"] == spec.instruction
        assert (entry["target_object"], entry["base_object"], entry["direction"]) == (
            spec.target_object,
            spec.base_object,
            spec.direction,
        )
        assert entry["max_steps"] == tasks.FAMILIES[entry["family"]].max_steps


def test_paraphrases_are_never_training_phrasings_and_name_the_same_objects():
    plan = build_plan(EvalOptions("x", 16, instructions_file=PARAPHRASES))
    trained = {
        tasks.instruction_for(e["family"], e["target_object"], e["base_object"], e["direction"], i)
        for e in plan
        for i in range(2)
    }
    for entry in plan:
        assert entry["instruction_text"] not in trained
        colour = tasks.OBJECTS_BY_NAME[entry["target_object"]].colour
        assert colour in entry["instruction_text"]
    assert plan[0]["instruction_text"].startswith("grab the ")
    assert any(" block" in e["instruction_text"] or " can" in e["instruction_text"] for e in plan)


def test_training_phrasings_are_refused_as_paraphrases(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"pick_up": ["pick up the {colour} {shape}"]}))
    with pytest.raises(ValueError, match="training templates"):
        load_paraphrases(str(path))
    path.write_text(yaml.safe_dump({"juggle": ["x"]}))
    with pytest.raises(ValueError, match="unknown family"):
        load_paraphrases(str(path))


def test_language_ablations_blank_or_point_at_another_object_in_the_scene():
    assert {e["instruction_text"] for e in build_plan(EvalOptions("x", 8, language="empty"))} == {""}
    for entry in build_plan(EvalOptions("x", 12, language="wrong")):
        spec = tasks.sample_episode(entry["seed"], family=entry["family"])
        parsed = tasks.parse_instruction(entry["instruction_text"])
        assert parsed.family == entry["family"]
        assert parsed.target_object != spec.target_object
        assert parsed.target_object in spec.active_objects
    with pytest.raises(ValueError, match="language"):
        build_plan(EvalOptions("x", 4, language="loud"))


def test_summary_per_family_and_overall():
    episodes = [
        {"family": "pick_up", "success": True},
        {"family": "pick_up", "success": False},
        {"family": "stack", "success": True},
    ]
    summary = summarise_eval(episodes, [{}] * 3)
    assert summary["per_family"]["pick_up"] == {"success": 1, "episodes": 2, "rate": 0.5}
    assert summary["overall"]["success"] == 2 and summary["overall"]["rate"] == pytest.approx(2 / 3)
    assert "push" not in summary["per_family"]


def test_named_policies(tmp_path):
    assert resolve_policy(DEFAULT_POLICY).backend in {"scripted", "octo"}
    octo_sim = resolve_policy("octo-sim", checkpoint=str(tmp_path))
    assert octo_sim.backend == "octo" and not octo_sim.privileged
    assert octo_sim.options == {"chunk_horizon": 4, "seed": 0}
    assert resolve_policy("scripted").privileged
    custom = resolve_policy("rt2", checkpoint="/ckpt", options={"seed": 3})
    assert (custom.backend, custom.checkpoint, custom.options) == ("rt2", "/ckpt", {"seed": 3})
    assert resolve_policy("octo-sim", str(tmp_path), {"num_steps": 5}).options["chunk_horizon"] == 4


def test_a_named_policy_without_its_checkpoint_says_how_to_make_it(monkeypatch, tmp_path):
    import vla_bringup.policies as policies

    monkeypatch.setattr(policies, "repo_root", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="vla-stack train config/train/octo_sim.yaml"):
        resolve_policy("octo-sim")


def test_episode_plan_file_errors_name_the_entry_and_key(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(build_plan(EvalOptions("x", 4))))
    assert [e["seed"] for e in load_episode_plan(str(path))] == [s for s, _ in tasks.heldout_episodes(4)]
    path.write_text(json.dumps([{"seed": 1}, {"family": "push"}]))
    with pytest.raises(ValueError, match="entry 1 needs at least a 'seed'"):
        load_episode_plan(str(path))
    path.write_text(json.dumps([{"seed": 1, "colour": "red"}]))
    with pytest.raises(ValueError, match=r"entry 0 has unknown key\(s\) \['colour'\]"):
        load_episode_plan(str(path))
    path.write_text("not json")
    with pytest.raises(ValueError, match="plan.json"):
        load_episode_plan(str(path))


def test_eval_passes_the_execution_mode_to_the_graph_and_refuses_unknown_modes(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run_demo(options):
        seen["options"] = options
        return 3  # writes no results: eval must hand the code on

    monkeypatch.setattr(evaluate, "run_demo", fake_run_demo)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    argv = ["eval", "--policy", "scripted", "--episodes", "4", "--out", str(tmp_path)]
    args = parser.parse_args([*argv, "--execution-mode", "temporal_ensembling"])
    assert args.func(args) == 3
    assert seen["options"].execution_mode == "temporal_ensembling"
    args = parser.parse_args(argv)
    args.func(args)
    assert seen["options"].execution_mode is None  # the policy's or config/actuation.yaml's
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--execution-mode", "sometimes"])
    assert "'sometimes'" in capsys.readouterr().err
