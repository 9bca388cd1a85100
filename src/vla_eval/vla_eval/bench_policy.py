"""``vla-stack bench policy``: a backend's architecture at a size, random weights, timed end to end.

Timing needs no trained weights: each backend builds its real architecture at the requested size
with random weights (``build_random_<backend>``) and runs its real ``infer`` (preprocessing,
tokenisation, decoding or diffusion sampling, unnormalisation) on synthetic camera frames.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_bringup.deployment import load_deployment
from vla_bringup.policies import resolve_policy
from vla_eval.bench_report import (
    machine_description,
    percentiles,
    print_and_record,
    record_table_row,
    table_cells,
    today,
)
from vla_policy.contract import Observation, PolicyBackend, make_backend
from vla_policy.policy_settings import resolve_device

BUILDERS = {
    "openvla": "vla_policy.backends.openvla.backend:build_random_openvla",
    "rt2": "vla_policy.backends.rt2.backend:build_random_rt2",
    "octo": "vla_policy.backends.octo.backend:build_random_octo",
}
START_PROPRIO = (0.0, -0.2, 0.22, 0.0, 1.55, 0.0, 0.037)  # the sim's start pose, fingers open


def _builder(backend: str):
    module, _, name = BUILDERS[backend].partition(":")
    return getattr(importlib.import_module(module), name)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def add_compile_flags(parser: argparse.ArgumentParser) -> None:
    """--compile and --compile-backend (read with :func:`compile_option`)."""
    parser.add_argument("--compile", action="store_true", help="torch.compile where the backend supports it")
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend for --compile: inductor (default; CUDA graphs on a GPU), or aot_eager / "
        "eager, which trace the same graphs without generating code (a quick check on a CPU)",
    )


def compile_option(args: argparse.Namespace) -> bool | str:
    """The backends' ``compile`` option: False, or the torch.compile backend (True for inductor)."""
    if not getattr(args, "compile", False):
        return False
    backend = getattr(args, "compile_backend", "inductor")
    return True if backend == "inductor" else backend


def run_policy_bench(args: argparse.Namespace) -> tuple[str, dict]:
    """Build the backend ``args`` names, time its ``infer``; returns (table row, result)."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    device = resolve_device(args.device)
    dtype = args.dtype  # None: the backend's own (OpenVLA and RT-2 bf16 on CUDA, Octo float32 + TF32)
    torch.manual_seed(0)
    rss_before = _peak_rss_mb()
    start = time.perf_counter()
    backend, trained = _build(args, device, dtype)
    build_s = time.perf_counter() - start
    observation = synthetic_observation(backend, trained)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    samples, horizon = time_inference(backend, observation, args.warmup, args.steps, device == "cuda")
    p50, p99 = percentiles(samples)
    if device == "cuda":
        memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB GPU (peak allocated)"
    else:
        memory = f"{_peak_rss_mb() / 1024:.2f} GiB RSS (peak; {rss_before / 1024:.2f} before building)"
    params = sum(p.numel() for p in backend_parameters(backend))
    result = {
        "backend": args.backend,
        "size": args.size,
        "device": device,
        "dtype": used_dtype(backend, device),
        "compile": compile_option(args),
        "params_m": params / 1e6,
        "p50_ms": p50,
        "p99_ms": p99,
        "horizon": horizon,
        "actions_per_s": horizon * 1e3 / p50,
        "memory": memory,
        "build_s": build_s,
    }
    machine = machine_description() if device == "cpu" else torch.cuda.get_device_name()
    return _table_row(result, machine), result


def used_dtype(backend: object, device: str) -> str:
    """The dtype of the backend's weights (the first floating-point parameter), "+ TF32" where float32
    matrix products on CUDA may use TF32."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    dtype = next((p.dtype for p in backend_parameters(backend) if p.is_floating_point()), torch.float32)
    name = str(dtype).removeprefix("torch.")
    if device == "cuda" and dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        name += " (TF32)"
    return name


def _build(args: argparse.Namespace, device: str, dtype: str | None) -> tuple[PolicyBackend, bool]:
    """A named trained policy (``--policy``; sets args.backend and args.size) or random weights."""
    if getattr(args, "policy", None):
        backend = _trained(args.policy, device, dtype)
        args.backend, args.size = backend.name, f"{args.policy} (trained)"
        return backend, True
    build = _builder(args.backend)
    return build(args.size, device=device, dtype=dtype, seed=0, compile=compile_option(args)), False


def synthetic_observation(backend: PolicyBackend, trained: bool) -> Observation:
    """Synthetic camera frames: a trained policy gets the perception node's output sizes (and resizes
    them itself, as in the graph); random-weight architectures get their own input sizes."""
    sizes = load_deployment().camera_sizes if trained else backend.image_size
    rng = np.random.default_rng(0)
    images = {c: rng.integers(0, 256, (*sizes[c], 3), dtype=np.uint8) for c in backend.camera_names}
    return Observation(1, images, "put the red cube in the bowl", np.array(START_PROPRIO))


def time_inference(
    backend: PolicyBackend, observation: Observation, warmup: int, steps: int, cuda: bool
) -> tuple[list[float], int]:
    """Milliseconds per ``infer`` after ``warmup`` untimed calls, and the chunk length."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    backend.reset(seed=0)
    for _ in range(warmup):
        backend.infer(observation)
    samples, horizon = [], 1
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        output = backend.infer(observation)
        if cuda:
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
        horizon = int(np.atleast_2d(np.asarray(output.chunk)).shape[0])
    return samples, horizon


def _table_row(result: dict[str, Any], machine: str) -> str:
    return (
        f"| {result['backend']} | {result['size']} | {result['params_m']:,.1f} M | {result['device']} "
        f"({machine}) | {result['dtype']}{_compile_label(result['compile'])} | "
        f"{result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {result['horizon']} | "
        f"{result['actions_per_s']:.1f} | {result['memory']} | {today()} |"
    )


def _compile_label(compile: bool | str) -> str:
    if not compile:
        return ""
    return " + compile" if compile is True else f" + compile ({compile})"


def _trained(policy: str, device: str, dtype: str | None) -> PolicyBackend:
    """A named policy with its trained checkpoint (vla_bringup.policies), as the policy node loads it."""
    spec = resolve_policy(policy)
    if not spec.checkpoint:
        raise SystemExit(f"--policy {policy}: no checkpoint to time; use --backend with --size instead")
    return make_backend(spec.backend, checkpoint=spec.checkpoint, device=device, dtype=dtype, **spec.options)


def backend_parameters(backend: object) -> Iterator[Any]:
    """Parameters of every torch module the backend holds (for the parameter count)."""
    import torch  # lazy: torch is heavy; the CLI and the other benchmarks never load it

    seen = set()
    for value in vars(backend).values():
        if isinstance(value, torch.nn.Module):
            for parameter in value.parameters():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield parameter


TABLE_HEADER = (
    "| backend | size | parameters | device | dtype | p50 ms | p99 ms | actions/chunk | actions/s | "
    "peak memory | date |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def record_row(row: str) -> None:
    """Keep one row per (backend, size, device, dtype) in the policy section of docs/benchmarks.md."""
    intro = [
        "## Policy backends (`vla-stack bench policy`)",
        "",
        "Random weights at the real architecture sizes; the full `infer` (preprocessing, prompt, "
        "decoding or diffusion sampling, unnormalisation) on one observation, after warm-up. "
        "Medians and p99 over the timed runs.",
        "",
    ]
    record_table_row("policy", intro, TABLE_HEADER, row, _row_key)


def _row_key(line: str) -> str:
    """backend / size / device / dtype of a table row."""
    cells = table_cells(line)
    return " / ".join([cells[0], cells[1], cells[3].split(" ")[0], cells[4]])


def run(args: argparse.Namespace) -> int:
    row, _ = run_policy_bench(args)
    return print_and_record(TABLE_HEADER, row, record_row, args.no_write)
