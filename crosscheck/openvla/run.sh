#!/usr/bin/env bash
# The OpenVLA cross-check: the upstream Hugging Face port (reference.py, in .venv-crosscheck/openvla)
# and ours (compare.py, in .venv) on the same checkpoint and inputs -> out/crosscheck/openvla.json.
# Usage: bash crosscheck/openvla/run.sh [--write-fixture]
#   (crosscheck/run.sh openvla also renders docs/crosscheck.md)
#   --write-fixture: also copy what it generated for the CI tests to
#   tests/unit/vla_policy/backends/openvla/fixtures/: official_names.json (the official tensor names,
#   timm 0.9.16 + transformers 4.40.1) and bridge_resize_tf.npz (TensorFlow's Bridge resize).
set -euo pipefail
cd "$(dirname "$0")/../.."
export ORACLES="${ORACLES:-$(cd .. && pwd)/shared/oracles}"
python=$(bash crosscheck/openvla/venv.sh)
work=out/crosscheck/openvla
rm -rf "$work"
mkdir -p "$work"
echo "[crosscheck/openvla] upstream reference ($python)"
# the torchvision stand-in goes first (see crosscheck/openvla/torchvision_stub/torchvision/__init__.py)
PYTHONPATH="$PWD/crosscheck/openvla/torchvision_stub" TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES="" \
  "$python" crosscheck/openvla/reference.py "$work"
if [[ "${1:-}" == "--write-fixture" ]]; then
  fixtures=tests/unit/vla_policy/backends/openvla/fixtures
  mkdir -p "$fixtures"
  cp "$work/official_names.json" "$work/bridge_resize_tf.npz" "$fixtures/"
  echo "[crosscheck/openvla] wrote $fixtures/official_names.json and bridge_resize_tf.npz"
fi
echo "[crosscheck/openvla] ours (.venv)"
.venv/bin/python crosscheck/openvla/compare.py "$work" out/crosscheck/openvla.json
