"""scripts/gpu-check.sh cannot rot: its --dry-run executes every step on the CPU at tiny sizes (CI has no
GPU), and a failing step shows in the summary and the exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
DRY_RUN_STEPS = (
    "openvla-7b-bf16",
    "openvla-7b-bf16-compiled",
    "openvla-7b-load-bf16-cpu",
    "openvla-7b-load-4bit",
    "octo-tiny",
    "octo-sim",
    "demo-octo-sim",
)


def _run(python: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": python}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _summary(stdout: str) -> str:
    return stdout[stdout.rindex("=== summary") :]


@pytest.mark.timeout(400)
def test_the_dry_run_executes_every_step_on_the_cpu_and_writes_nothing():
    docs = ROOT / "docs" / "benchmarks.md"
    before = docs.read_text()
    run = _run(sys.executable, "--dry-run", timeout=360)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    summary = _summary(run.stdout)
    for name in DRY_RUN_STEPS:
        assert f"  {name} " in summary, summary
    assert f"{len(DRY_RUN_STEPS)} passed, 0 failed" in summary
    assert docs.read_text() == before


def test_a_failing_step_is_named_in_the_summary_and_fails_the_run(tmp_path):
    """A stand-in interpreter: the set-up checks pass, `bench policy --policy octo-sim` exits 3."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\ncase "$*" in *"bench policy --policy octo-sim"*) exit 3 ;; esac\nexit 0\n')
    fake.chmod(0o755)
    run = _run(str(fake), "--dry-run", timeout=60)
    assert run.returncode == 1
    summary = _summary(run.stdout)
    assert "FAILED (exit 3)" in summary.split("  octo-sim ")[1].splitlines()[0], summary
    assert f"{len(DRY_RUN_STEPS) - 1} passed, 1 failed" in summary


def test_unknown_arguments_are_refused():
    run = _run(sys.executable, "--fast", timeout=30)
    assert run.returncode == 2 and "unknown argument '--fast'" in run.stderr
