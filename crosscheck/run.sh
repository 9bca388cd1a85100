#!/usr/bin/env bash
# `make crosscheck`: run each model's cross-check against its upstream reference implementation, then
# write docs/crosscheck.md from the results. Each crosscheck/<model>/run.sh builds its own reference
# virtual environment under .venv-crosscheck/<model> and writes out/crosscheck/<model>.json.
# Usage: crosscheck/run.sh [MODEL ...]   (default: every crosscheck/*/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export ORACLES="${ORACLES:-$(cd .. && pwd)/shared/oracles}"
if [[ ! -d "$ORACLES" ]]; then
  echo "crosscheck: reference sources not found at ORACLES=$ORACLES" >&2
  exit 2
fi
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
  for script in crosscheck/*/run.sh; do models+=("$(basename "$(dirname "$script")")"); done
fi
mkdir -p out/crosscheck
status=0
for model in "${models[@]}"; do
  echo "[crosscheck] $model"
  bash "crosscheck/$model/run.sh" || status=1
done
.venv/bin/python crosscheck/render.py out/crosscheck docs/crosscheck.md || status=1
exit $status
