"""``vla-stack bench load``: the streamed random checkpoint has the official layout, and the benchmark
loads it through the real loader in a fresh process and keeps one row per configuration."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from safetensors import safe_open

from vla_eval import bench_report
from vla_eval.bench import add_bench_parser, run_bench
from vla_eval.bench_load import TABLE_HEADER, bench_config, cached_checkpoint, write_random_checkpoint
from vla_policy.backends.openvla.backend import make_openvla_backend
from vla_policy.backends.openvla.loading import build_model, save_openvla_checkpoint
from vla_policy.backends.openvla.processing import synthetic_tokenizer
from vla_policy.checkpoint import safetensors_files
from vla_policy.contract import Observation

SHARD_BYTES = 300_000


def _tensors(root) -> dict[str, tuple[tuple[int, ...], torch.dtype, str]]:
    found = {}
    for file in safetensors_files(root):
        with safe_open(str(file), framework="pt") as reader:
            for key in reader.keys():
                tensor = reader.get_tensor(key)
                found[key] = (tuple(tensor.shape), tensor.dtype, file.name)
    return found


def test_the_streamed_checkpoint_matches_what_save_openvla_checkpoint_writes(tmp_path):
    config = bench_config("tiny")
    root = write_random_checkpoint(tmp_path / "streamed", config, SHARD_BYTES)
    model = build_model(config, "cpu", torch.bfloat16)
    tokenizer = synthetic_tokenizer(config.action_vocab_size)
    reference = save_openvla_checkpoint(model, tokenizer, config.norm_stats, tmp_path / "saved", SHARD_BYTES)
    assert _tensors(root) == _tensors(reference)  # names, shapes, dtypes and shard of every tensor
    for name in ("config.json", "dataset_statistics.json", "model.safetensors.index.json"):
        assert json.loads((root / name).read_text()) == json.loads((reference / name).read_text()), name
    weight_map = json.loads((root / "model.safetensors.index.json").read_text())["weight_map"]
    with safe_open(str(root / weight_map["language_model.lm_head.weight"]), framework="pt") as reader:
        weight = reader.get_tensor("language_model.lm_head.weight").float()
    with safe_open(str(root / weight_map["language_model.model.norm.weight"]), framework="pt") as reader:
        norm = reader.get_tensor("language_model.model.norm.weight")
    assert 0.018 < weight.std().item() < 0.022 and torch.all(norm == 1)

    backend = make_openvla_backend(
        checkpoint=str(root), dtype="bfloat16", unnorm_key="bridge_orig", progress=False
    )
    image = torch.randint(0, 256, (224, 224, 3), dtype=torch.uint8).numpy()
    assert backend.infer(Observation(0, {"primary": image}, "pick")).chunk.shape == (1, 7)


def test_layers_shrink_every_transformer_and_keep_the_widths():
    config = bench_config("7b", layers=2)
    assert (
        config.featurizer.num_layers,
        config.fused_featurizer.num_layers,
        config.text.num_hidden_layers,
    ) == (
        2,
        2,
        2,
    )
    assert config.text.hidden_size == 4096 and config.fused_featurizer.hidden_size == 1152
    with pytest.raises(ValueError, match="--layers 1: the vision towers need at least 2 blocks"):
        bench_config("7b", layers=1)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", "load", *argv])


def test_bench_load_measures_a_fresh_process_and_keeps_one_row_per_configuration(
    tmp_path, monkeypatch, capsys
):
    docs = tmp_path / "benchmarks.md"
    monkeypatch.setattr(bench_report, "benchmarks_file", lambda: docs)
    docs.write_text(
        "# Benchmarks\n\n<!-- bench:load -->\n" + TABLE_HEADER + "\n" + _OLD_ROW + "\n<!-- /bench:load -->\n"
    )
    cache = tmp_path / "cache"
    argv = ("--size", "tiny", "--cache-dir", str(cache), "--shard-gb", "0.0003", "--steps", "2")
    assert run_bench(_args(*argv)) == 0
    assert "writing" in capsys.readouterr().out
    section = docs.read_text().split("<!-- bench:load -->")[1]
    rows = [line for line in section.splitlines() if line.startswith("| openvla tiny")]
    assert len(rows) == 1, rows  # the older row of the same configuration is replaced
    cells = bench_report.table_cells(rows[0])
    assert cells[2:4] == ["cpu", "bfloat16"]
    load_s, first_infer_s, loaded, after, libraries = (float(c) for c in cells[4:9])
    assert load_s >= 0 and first_infer_s > 0 and 0 < libraries <= loaded <= after < 4.0
    assert cells[9] == "-" and float(cells[10]) > 0  # no GPU; p50 ms
    assert cached_checkpoint("tiny", None, int(0.0003e9), cache).parent == cache
    assert "reusing" in capsys.readouterr().out


_OLD_ROW = (
    "| openvla tiny (random, 0.0003 GB shards) | 0.4 M | cpu | bfloat16 | 9.9 | 9.9 | 9.99 | 9.99 | 0.99 "
    "| - | 9.9 | 9.9 | an older machine | 2026-01-01 |"
)
