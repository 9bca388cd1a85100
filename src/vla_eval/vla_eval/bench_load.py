"""``vla-stack bench load``: an OpenVLA checkpoint through the real loader; load time and peak memory.

Without ``--checkpoint`` the checkpoint is OpenVLA-shaped (``--size 7b``: the release's shapes;
``--layers N`` gives every transformer N blocks at the same widths) with random bf16 weights, in
the official layout: sharded safetensors under the official names, config.json, the statistics and
a tokenizer. It is written once under out/bench/ and reused; the writer holds one tensor at a time
(the 7B checkpoint is about 15 GB on disk). The load then runs in a fresh Python process through
``make_backend("openvla", ...)``, as the policy node loads it, so that the process's peak resident
set (``getrusage``: every resident page, memory-mapped file pages included) is the loader's: the
libraries imported before loading are reported apart. ``--steps`` also times inferences
(synthetic frames, as ``bench policy``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vla_bringup.paths import repo_root
from vla_common.action_space import BRIDGE_ORIG_STATS
from vla_eval.bench_policy import add_compile_flags, compile_option, synthetic_observation, time_inference
from vla_eval.bench_report import (
    machine_description,
    percentiles,
    print_and_record,
    record_table_row,
    table_cells,
    today,
)
from vla_policy.backends.openvla.configuration import OpenVLAConfig, preset
from vla_policy.backends.openvla.processing import synthetic_tokenizer
from vla_policy.contract import make_backend

BENCH_DIR = Path("out") / "bench"  # under the repository: generated checkpoints, reused
SHARD_BYTES = 5 * 10**9  # Hugging Face's default max_shard_size ("5GB")
COMPLETE_MARKER = "bench_checkpoint.json"  # written last: a checkpoint without it is rewritten
PEAK_RSS_TARGET_GIB = 16.0  # issue 23: OpenVLA-7B bf16 loaded on a CPU
SAFETENSORS_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32", "int64": "I64"}


def bench_config(size: str, layers: int | None = None) -> OpenVLAConfig:
    """The preset ``size`` with bridge_orig statistics; ``layers`` blocks in every transformer."""
    config = preset(size)
    if layers is not None:
        if layers < 2:
            raise ValueError(f"--layers {layers}: the vision towers need at least 2 blocks")
        config = dataclasses.replace(
            config,
            featurizer=dataclasses.replace(config.featurizer, num_layers=layers),
            fused_featurizer=dataclasses.replace(config.fused_featurizer, num_layers=layers),
            text=dataclasses.replace(config.text, num_hidden_layers=layers),
        )
    return dataclasses.replace(config, norm_stats={"bridge_orig": {"action": BRIDGE_ORIG_STATS.as_dict()}})


def official_tensor_specs(config: OpenVLAConfig) -> dict[str, tuple[tuple[int, ...], Any]]:
    """{official name: (shape, dtype)} of a bf16 checkpoint of ``config``, from a model on the meta
    device (nothing allocated)."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    from vla_policy.backends.openvla.key_map import native_to_official  # lazy: imports torch
    from vla_policy.backends.openvla.loading import build_model  # lazy: imports torch

    model = build_model(config, "meta", torch.bfloat16, initialise=False)
    official = native_to_official(model.state_dict(), config)
    return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in official.items()}


def write_random_checkpoint(
    directory: Path, config: OpenVLAConfig, shard_bytes: int = SHARD_BYTES, seed: int = 0
) -> Path:
    """An official-layout checkpoint of ``config`` with random weights, one tensor in memory at a time."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    from vla_policy.backends.openvla import loading  # lazy: imports torch

    root = Path(directory)
    (root / COMPLETE_MARKER).unlink(missing_ok=True)
    specs = official_tensor_specs(config)
    sizes = {name: _nbytes(shape, dtype) for name, (shape, dtype) in specs.items()}
    plan = loading.shard_plan(sizes, shard_bytes)
    loading.write_checkpoint_files(
        config, synthetic_tokenizer(config.action_vocab_size), config.norm_stats, root
    )
    pool = RandomPool(torch.Generator().manual_seed(seed))
    weight_map = {}
    for name, keys in zip(loading.shard_file_names(len(plan)), plan, strict=True):
        _write_random_safetensors(root / name, {key: specs[key] for key in keys}, pool)
        weight_map.update(dict.fromkeys(keys, name))
    loading.write_shard_index(root, weight_map, sum(sizes.values()))
    (root / COMPLETE_MARKER).write_text(json.dumps({"shards": len(plan), "bytes": sum(sizes.values())}))
    return root


def _nbytes(shape: tuple[int, ...], dtype: Any) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count * dtype.itemsize


class RandomPool:
    """N(0, 0.02^2) values for random matrices, drawn once (``POOL_ELEMENTS`` per dtype) and read from a
    random offset, wrapping around: writing 7.5 B parameters costs disk time, not random-number
    time (a timing and memory benchmark needs no independent draws)."""

    POOL_ELEMENTS = 2**25  # 64 MB of bf16

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.pools: dict[Any, memoryview] = {}

    def chunks(self, count: int, dtype: Any) -> Any:
        """Byte chunks (memoryviews) making ``count`` values of ``dtype``."""
        import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

        if dtype not in self.pools:
            values = torch.empty(self.POOL_ELEMENTS, dtype=dtype).normal_(0.0, 0.02, generator=self.generator)
            self.pools[dtype] = values.view(torch.uint8).numpy().data
        pool, size = self.pools[dtype], dtype.itemsize
        start = int(torch.randint(self.POOL_ELEMENTS, (1,), generator=self.generator))
        while count:
            take = min(count, self.POOL_ELEMENTS - start)
            yield pool[start * size : (start + take) * size]
            count, start = count - take, 0


def _write_random_safetensors(
    path: Path, specs: dict[str, tuple[tuple[int, ...], Any]], pool: RandomPool
) -> None:
    """A safetensors file written tensor by tensor: the 8-byte header length, the JSON header
    (padded with spaces to 8 bytes), then each tensor's bytes in header order. Matrices come from
    ``pool``; norm and LayerScale weights are 1, biases and everything else 1-D 0."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (shape, dtype) in specs.items():
        end = offset + _nbytes(shape, dtype)
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[str(dtype).removeprefix("torch.")],
            "shape": list(shape),
            "data_offsets": [offset, end],
        }
        offset = end
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(blob)))
        file.write(blob)
        for name, (shape, dtype) in specs.items():
            if len(shape) >= 2:
                for chunk in pool.chunks(_nbytes(shape, dtype) // dtype.itemsize, dtype):
                    file.write(chunk)
                continue
            is_scale = (name.endswith(".weight") and "norm" in name) or name.endswith("scale_factor")
            tensor = torch.full(shape, 1.0 if is_scale else 0.0, dtype=dtype)
            file.write(tensor.reshape(-1).view(torch.uint8).numpy().data)


def cached_checkpoint(size: str, layers: int | None, shard_bytes: int, cache_dir: Path) -> Path:
    """The random checkpoint for (size, layers, shard size), written unless already complete."""
    name = f"openvla-{size}{f'-{layers}layers' if layers else ''}-random-bf16-shards{shard_bytes / 1e9:g}gb"
    root = cache_dir / name
    if (root / COMPLETE_MARKER).is_file():
        print(f"[bench load] reusing {root}")
        return root
    print(f"[bench load] writing {root} (random bf16 weights, one tensor at a time)")
    start = time.perf_counter()
    write_random_checkpoint(root, bench_config(size, layers), shard_bytes)
    print(f"[bench load] written in {time.perf_counter() - start:.0f} s")
    return root


def measure_load(options: dict[str, Any]) -> dict[str, Any]:
    """In this (fresh) process: load through ``make_backend`` and report time and memory."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    import vla_policy.backends.openvla.backend  # noqa: F401  # lazy: torch/transformers, imported before the baseline

    cuda = str(options["device"]).startswith("cuda")
    rss_before = _peak_rss_gib()
    start = time.perf_counter()
    backend = make_backend(
        "openvla",
        checkpoint=options["checkpoint"],
        device=options["device"],
        dtype=options["dtype"],
        load_in=options["load_in"],
        compile=options["compile"],
        unnorm_key=options["unnorm_key"],
        progress=False,
    )
    if cuda:
        torch.cuda.synchronize()
    result = {
        "load_s": time.perf_counter() - start,
        "loaded_rss_gib": _peak_rss_gib(),
        "rss_before_gib": rss_before,
        "params_m": sum(p.numel() for p in backend.model.parameters()) / 1e6,
        "machine": torch.cuda.get_device_name() if cuda else machine_description(),
    }
    if options["steps"]:
        # The first call pays for what loading left lazy (memory-mapped pages read on first touch,
        # compiled graphs): timed on its own, then the warm-up and the timed calls.
        observation = synthetic_observation(backend, trained=False)
        start = time.perf_counter()
        time_inference(backend, observation, 0, 1, cuda)
        result["first_infer_s"] = time.perf_counter() - start
        samples, _ = time_inference(backend, observation, options["warmup"], options["steps"], cuda)
        result["p50_ms"], result["p99_ms"] = percentiles(samples)
    result["peak_rss_gib"] = _peak_rss_gib()
    result["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return result


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_in_fresh_process(options: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure_load` in a new interpreter (so nothing else is in its peak); its last stdout
    line is the JSON result."""
    completed = subprocess.run(
        [sys.executable, "-m", "vla_eval.bench_load", json.dumps(options)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"[bench load] the loading process failed (exit {completed.returncode}); see above")
    return json.loads(lines[-1])


TABLE_HEADER = (
    "| checkpoint | parameters | device | weights | load s | first infer s | peak host RSS GiB: loaded | "
    "after inference | libraries | GPU peak GiB | p50 ms | p99 ms | machine | date |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def table_row(label: str, options: dict[str, Any], result: dict[str, Any]) -> str:
    weights = options["load_in"] or options["dtype"]
    if options["compile"]:
        weights += " + compile" if options["compile"] is True else f" + compile ({options['compile']})"

    def cell(key: str, digits: int) -> str:
        return "-" if result.get(key) is None else f"{result[key]:.{digits}f}"

    inferred = "first_infer_s" in result
    return (
        f"| {label} | {result['params_m']:,.1f} M | {options['device']} | {weights} | {cell('load_s', 2)} | "
        f"{cell('first_infer_s', 2)} | {cell('loaded_rss_gib', 2)} | "
        f"{cell('peak_rss_gib', 2) if inferred else '-'} | {cell('rss_before_gib', 2)} | "
        f"{cell('gpu_peak_gib', 2)} | {cell('p50_ms', 1)} | {cell('p99_ms', 1)} | {result['machine']} | "
        f"{today()} |"
    )


def _row_key(line: str) -> str:
    """checkpoint / device / weights of a row."""
    cells = table_cells(line)
    return " / ".join([cells[0], cells[2], cells[3]])


def record_row(row: str) -> None:
    intro = [
        "## Loading OpenVLA checkpoints (`vla-stack bench load`)",
        "",
        'The real loader (`make_backend("openvla", ...)`, as the policy node loads a checkpoint) in a '
        "fresh process, on an official-layout checkpoint with random bf16 weights (`--size 7b`: the "
        "released shapes, 5 GB shards) unless a real one is named. Peak host RSS counts every resident "
        "page of the process, memory-mapped weights included: after loading, then after the first and "
        "the timed inferences (bf16 on a CPU uses the memory-mapped file as the weights, so its pages "
        "are read on first use: the first inference pays for them); `libraries` is the process before "
        "loading. 4/8-bit quantises the decoder layer by layer on its way to the GPU. "
        f"Target (issue 23): OpenVLA-7B bf16 on a CPU <= {PEAK_RSS_TARGET_GIB:g} GiB peak RSS.",
        "",
    ]
    record_table_row("load", intro, TABLE_HEADER, row, _row_key)


def run(args: argparse.Namespace) -> int:
    """``vla-stack bench load``: (write and) load a checkpoint; print and record the row."""
    if args.checkpoint:
        checkpoint, label = Path(args.checkpoint), Path(args.checkpoint).name
    else:
        cache_dir = Path(args.cache_dir) if args.cache_dir else repo_root() / BENCH_DIR
        shard_bytes = int(args.shard_gb * 10**9)
        checkpoint = cached_checkpoint(args.size, args.layers, shard_bytes, cache_dir)
        layers = f", {args.layers} layers" if args.layers else ""
        label = f"openvla {args.size}{layers} (random, {args.shard_gb:g} GB shards)"
    options = {
        "checkpoint": str(checkpoint),
        "device": args.device,
        "dtype": args.dtype,
        "load_in": args.load_in,
        "compile": compile_option(args),
        "unnorm_key": args.unnorm_key,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    result = run_in_fresh_process(options)
    row = table_row(label, options, result)
    return print_and_record(TABLE_HEADER, row, record_row, args.no_write)


def add_parser(bench_sub: argparse._SubParsersAction, no_write: dict) -> None:
    parser = bench_sub.add_parser(
        "load", help="OpenVLA checkpoint load through the real loader: time, peak host RSS, GPU memory"
    )
    parser.add_argument(
        "--size", default="7b", choices=["tiny", "7b"], help="shapes of the random checkpoint"
    )
    parser.add_argument(
        "--layers", type=int, default=None, help="blocks per transformer (default: the size's)"
    )
    parser.add_argument("--checkpoint", default=None, help="load this checkpoint directory instead")
    parser.add_argument(
        "--cache-dir", default=None, help=f"where random checkpoints are kept (default {BENCH_DIR})"
    )
    parser.add_argument(
        "--shard-gb", type=float, default=SHARD_BYTES / 10**9, help="shard size of the random checkpoint"
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="bfloat16", help="float32 | bfloat16 | float16")
    parser.add_argument("--load-in", default=None, choices=["8bit", "4bit"], help="bitsandbytes (CUDA)")
    parser.add_argument("--unnorm-key", default="bridge_orig")
    parser.add_argument(
        "--steps",
        type=int,
        default=1,
        help="timed inferences after the first one and the warm-up (0: no inference)",
    )
    parser.add_argument("--warmup", type=int, default=0)
    add_compile_flags(parser)
    parser.add_argument("--no-write", **no_write)


if __name__ == "__main__":
    print(json.dumps(measure_load(json.loads(sys.argv[1]))))
