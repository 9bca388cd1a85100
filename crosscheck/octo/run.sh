#!/usr/bin/env bash
# The Octo cross-check: upstream's Flax model (reference.py, in .venv-crosscheck/octo) and ours
# (compare.py, in .venv) on the same weights, inputs and noise -> out/crosscheck/octo.json.
# Usage: bash crosscheck/octo/run.sh [--write-fixture]
#   (crosscheck/run.sh octo also renders docs/crosscheck.md)
#   --write-fixture: also copy the tiny model's upstream arrays to CI's fixture
#   tests/unit/vla_policy/backends/octo/fixtures/octo_upstream_tiny.npz.
set -euo pipefail
cd "$(dirname "$0")/../.."
export ORACLES="${ORACLES:-$(cd .. && pwd)/shared/oracles}"
python=$(bash crosscheck/octo/venv.sh)
work=out/crosscheck/octo
mkdir -p "$work"
echo "[crosscheck/octo] upstream reference ($python)"
"$python" crosscheck/octo/reference.py "$work"
if [[ "${1:-}" == "--write-fixture" ]]; then
  fixture=tests/unit/vla_policy/backends/octo/fixtures/octo_upstream_tiny.npz
  mkdir -p "$(dirname "$fixture")"
  cp "$work/octo_upstream_tiny.npz" "$fixture"
  echo "[crosscheck/octo] wrote $fixture"
fi
echo "[crosscheck/octo] ours (.venv)"
.venv/bin/python crosscheck/octo/compare.py "$work" out/crosscheck/octo.json
