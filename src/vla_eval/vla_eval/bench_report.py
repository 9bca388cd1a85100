"""What every ``vla-stack bench`` report shares: the machine line, percentiles, the docs section."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
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


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95 % by default) of a success rate ``successes / trials``."""
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(
            f"wilson_interval: need 0 <= successes <= trials and trials >= 1, got {successes}/{trials}"
        )
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


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


def print_and_write(name: str, body: str, no_write: bool) -> None:
    """Print a benchmark's section and, unless ``no_write``, put it in docs/benchmarks.md."""
    print(body)
    if not no_write:
        print(f"\nwritten to {write_section(name, body)}")


def table_cells(line: str) -> list[str]:
    """The cells of a markdown table row."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def record_table_row(
    name: str,
    intro: list[str],
    header: str,
    row: str,
    key: Callable[[str], str],
    path: Path | None = None,
) -> Path:
    """Keep one row per ``key(row)`` in the table of section ``name`` (rows sorted by key): the row
    replaces an earlier one with the same key, the others stay. ``header`` is the header and the
    separator line; ``intro`` the lines above the table."""
    path = path or benchmarks_file()
    text = path.read_text() if path.exists() else ""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    rows: dict[str, str] = {}
    if begin in text and end in text:
        header_lines = set(header.splitlines())
        for line in text[text.index(begin) : text.index(end)].splitlines():
            if line.startswith("| ") and line not in header_lines:
                rows[key(line)] = line
    rows[key(row)] = row
    return write_section(name, "\n".join([*intro, header, *(rows[k] for k in sorted(rows))]), path)


def today() -> str:
    return time.strftime("%Y-%m-%d")


def print_and_record(header: str, row: str, record: Callable[[str], None], no_write: bool) -> int:
    """Print a benchmark's table row under its header and, unless ``no_write``, record it."""
    print(header + "\n" + row)
    if not no_write:
        record(row)
        print("recorded in docs/benchmarks.md")
    return 0
