#!/usr/bin/env bash
# The Octo reference environment, .venv-crosscheck/octo: jax, flax, einops, orbax-checkpoint (and the
# transformers release that still has FlaxT5EncoderModel, which upstream's LanguageTokenizer builds),
# pinned in crosscheck/octo/requirements.txt, plus an empty `distrax` module (upstream's
# action_heads.py imports it at the top; the diffusion head does not use it).
# Idempotent and safe to call concurrently: a flock serialises builders, and a stamp (a copy of the
# requirements it was built from) skips the build when nothing changed. Prints the venv's python.
# Usage: bash crosscheck/octo/venv.sh   (from anywhere; PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=.venv-crosscheck
venv=$root/octo
requirements=crosscheck/octo/requirements.txt
stamp=$venv/.built-from-requirements.txt
mkdir -p "$root"
exec 9>"$root/octo.lock"
flock 9
if [[ -x $venv/bin/python && -f $stamp ]] && cmp -s "$stamp" "$requirements"; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
echo "[crosscheck/octo] building $venv from $requirements" >&2
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat >"$site/distrax.py" <<'STUB'
"""Stand-in for distrax (crosscheck/octo/venv.sh): octo's action_heads.py imports it at the top; the
diffusion head never uses it."""
STUB
"$venv/bin/python" -c 'import jax, flax, einops, orbax.checkpoint, distrax, transformers' >&2
cp "$requirements" "$stamp"
echo "$PWD/$venv/bin/python"
