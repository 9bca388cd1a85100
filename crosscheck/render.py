"""Write docs/crosscheck.md from the per-model results in out/crosscheck/*.json.

Each result file (written by crosscheck/<model>/run.sh) holds::

    {"model": "octo", "title": "Octo (Flax) vs vla_policy.backends.octo",
     "upstream": {"repo": "octo-models/octo", "commit": "<sha>"},
     "reference_env": {"jax": "0.12.0", ...}, "setup": "<architecture, layers, seeds>",
     "date": "<UTC ISO date>", "machine": "<cpu>",
     "quantities": [{"name": ..., "shape": [...], "dtype": "float32", "max_abs_diff": float,
                     "tolerance": float}],
     "checks": [{"name": ..., "ok": bool, "detail": "..."}]}

The exit status is non-zero when any quantity exceeds its tolerance or any check failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEADER = """# Cross-check against the upstream reference implementations

`make crosscheck` builds each upstream model (from the sources in `../shared/oracles`, at the commit
named below) and ours from the same random weights at the real architecture, feeds both the same
inputs and compares the outputs. The reference code runs in its own virtual environment under
`.venv-crosscheck/` (it needs packages the stack does not: jax/flax for Octo, transformers 4.40 and
timm 0.9 for OpenVLA); it is never imported by the stack. Re-run it after any change to a backend's
model code: `make crosscheck` (this page is rewritten from `out/crosscheck/*.json`).
"""


def _quantity_rows(quantities: list[dict]) -> list[str]:
    rows = ["| quantity | shape | dtype | max abs difference | tolerance | |", "|---|---|---|---|---|---|"]
    for q in quantities:
        ok = q["max_abs_diff"] <= q["tolerance"]
        shape = "x".join(str(n) for n in q.get("shape", [])) or "-"
        rows.append(
            f"| {q['name']} | {shape} | {q.get('dtype', 'float32')} | {q['max_abs_diff']:.2e} | "
            f"{q['tolerance']:.0e} | {'pass' if ok else 'FAIL'} |"
        )
    return rows


def _check_rows(checks: list[dict]) -> list[str]:
    rows = ["| check | result | detail |", "|---|---|---|"]
    rows += [f"| {c['name']} | {'pass' if c['ok'] else 'FAIL'} | {c.get('detail', '')} |" for c in checks]
    return rows


def render(results: list[dict]) -> tuple[str, bool]:
    """The page and whether every quantity and check passed."""
    lines = [HEADER]
    all_ok = True
    for result in results:
        upstream = result["upstream"]
        env = ", ".join(f"{k} {v}" for k, v in result.get("reference_env", {}).items())
        lines += [
            f"## {result['title']}",
            "",
            f"Upstream: `{upstream['repo']}` @ `{upstream['commit']}`. Reference environment: {env}.",
            f"Run: {result.get('date', '?')} on {result.get('machine', '?')}.",
            "",
            result.get("setup", ""),
            "",
        ]
        quantities = result.get("quantities", [])
        checks = result.get("checks", [])
        if quantities:
            lines += _quantity_rows(quantities) + [""]
        if checks:
            lines += _check_rows(checks) + [""]
        all_ok &= all(q["max_abs_diff"] <= q["tolerance"] for q in quantities)
        all_ok &= all(c["ok"] for c in checks)
    return "\n".join(lines).rstrip() + "\n", all_ok


def main(argv: list[str]) -> int:
    results_dir, page = Path(argv[0]), Path(argv[1])
    results = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    if not results:
        print(f"crosscheck: no results in {results_dir}", file=sys.stderr)
        return 1
    text, ok = render(results)
    page.write_text(text)
    print(f"crosscheck: wrote {page} ({'all within tolerance' if ok else 'FAILURES, see the page'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
