#!/usr/bin/env bash
# Build the OpenVLA reference environment (.venv-crosscheck/openvla): the packages the upstream Hugging
# Face port was released against, CPU only. Idempotent: a stamp holding this file's hash skips a
# rebuild; a lock keeps two runs from building at once. Usage: crosscheck/openvla/venv.sh
#
# - torch 2.13.0 (the CPU wheel, as in the stack's own venv), transformers 4.40.1 / tokenizers 0.19.1
#   (the versions modeling_prismatic.py checks for), sentencepiece + protobuf (the slow Llama tokenizer
#   and its conversion; protobuf at the version tensorflow needs), pillow (the same version as the stack's, so both sides decode and resize alike);
# - timm 0.9.16 with --no-deps (its dependencies would pull a CUDA torch); timm imports torchvision,
#   whose wheels are CUDA builds that do not load next to the CPU torch, so
#   crosscheck/openvla/torchvision_stub/ goes first on PYTHONPATH instead (see its __init__.py);
# - tensorflow-cpu: the upstream Bridge/LIBERO evaluation code resizes and center-crops with tf.image,
#   so the cross-check runs those functions as they are.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-crosscheck/openvla
STAMP="$VENV/.built-$(sha256sum crosscheck/openvla/venv.sh | cut -c1-16)"
mkdir -p .venv-crosscheck
exec 9>.venv-crosscheck/openvla.lock
flock 9
if [[ -x $VENV/bin/python && -f "$STAMP" ]]; then
  echo "$PWD/$VENV/bin/python"
  exit 0
fi
echo "[crosscheck/openvla] building $VENV" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
exec 3>&1 1>&2  # pip's output to stderr; only the python path goes to stdout
"${PIP[@]}" "pip>=24"
"${PIP[@]}" torch==2.13.0 numpy==1.26.4
"${PIP[@]}" transformers==4.40.1 tokenizers==0.19.1 sentencepiece==0.2.0 pillow==13.0.0 safetensors==0.4.3 \
  huggingface-hub==0.23.0
"${PIP[@]}" --no-deps timm==0.9.16
"${PIP[@]}" tensorflow-cpu==2.21.0 numpy==1.26.4 protobuf==7.36.2
touch "$STAMP"
echo "$PWD/$VENV/bin/python" >&3
