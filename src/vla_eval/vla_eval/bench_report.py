"""What every ``vla-stack bench`` report shares: the machine line, percentiles, the docs section."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from vla_bringup.paths import repo_root


def machine_description() -> str:
    """CPU model, core count and Python version, for the line above a benchmark's table."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    """(p50, p99) of ``samples_ms``."""
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def benchmarks_file() -> Path:
    return repo_root() / "docs" / "benchmarks.md"


def write_section(name: str, body: str, path: Path | None = None) -> Path:
    """Replace (or append) the section between <!-- bench:NAME --> markers in docs/benchmarks.md."""
    path = path or benchmarks_file()
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nWritten by `vla-stack bench ...`; medians and p99.\n"
    )
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
