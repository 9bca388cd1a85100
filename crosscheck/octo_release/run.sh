#!/usr/bin/env bash
# The Octo release-layout cross-check: the synthetic release our converter is tested on
# (vla_policy.backends.octo.synthetic_release, written in .venv by write.py) against the upstream code
# (reference.py, in .venv-crosscheck/octo): upstream builds OctoModule from the release's config.json
# and example batch, restores the orbax checkpoint with the parameter shapes it expects (as
# OctoModel.load_pretrained does), runs the transformer on the restored weights, and its training
# config at octo-small-1.5's settings is compared with ours -> out/crosscheck/octo_release.json.
# Usage: bash crosscheck/octo_release/run.sh   (crosscheck/run.sh octo_release also renders the page)
set -euo pipefail
cd "$(dirname "$0")/../.."
export ORACLES="${ORACLES:-$(cd .. && pwd)/shared/oracles}"
python=$(bash crosscheck/octo/venv.sh)
# upstream's scripts/configs/*.py need ml_collections, which the model cross-check does not
"$python" -c 'import ml_collections' 2>/dev/null \
  || "$python" -m pip install -q --disable-pip-version-check ml-collections==1.1.0 >&2
work=out/crosscheck/octo_release
rm -rf "$work" && mkdir -p "$work"
echo "[crosscheck/octo_release] ours: the synthetic release (.venv)"
.venv/bin/python crosscheck/octo_release/write.py "$work"
echo "[crosscheck/octo_release] upstream: build, restore and run it ($python)"
"$python" crosscheck/octo_release/reference.py "$work" out/crosscheck/octo_release.json
