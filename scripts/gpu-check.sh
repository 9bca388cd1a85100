#!/usr/bin/env bash
# The GPU checks of issue 23 in one run, sized for 8 minutes on one H100 (an estimate: not yet run on a
# GPU); each writes its row into docs/benchmarks.md:
#   OpenVLA-7B bf16 random weights, eager and compiled (static KV cache + CUDA graphs);
#   an OpenVLA-7B-shaped bf16 checkpoint (written once under out/bench/, ~15 GB) loaded through
#   the real loader on the CPU (peak host RSS) and in 4-bit on the GPU (host RSS, GPU memory, latency);
#   Octo small and base (random weights); the trained octo-sim policy; a closed-loop demo with the
#   policy node on the GPU.
# Every step has its own time limit; a summary follows; the exit status is non-zero when a step failed.
#
#   scripts/gpu-check.sh              on a machine with CUDA (set-up: requirements-gpu.txt)
#   scripts/gpu-check.sh --dry-run    the same steps on the CPU at tiny sizes, nothing written to
#                                     docs/ (CI runs it: tests/unit/test_gpu_check_script.py)
#
# PYTHON picks the interpreter (default: .venv-gpu/bin/python, else .venv/bin/python, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu-check.sh: unknown argument '$arg' (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done

if [ -z "${PYTHON:-}" ]; then
    for candidate in .venv-gpu/bin/python .venv/bin/python python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
    done
fi
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
VLA=("$PYTHON" -m vla_stack.cli)

if ((DRY_RUN)); then
    DEVICE=cpu
    SCRATCH=$(mktemp -d -t vla-gpu-check-XXXXXX)
    trap 'rm -rf "$SCRATCH"' EXIT
    NO_WRITE=(--no-write)
    OPENVLA=(--backend openvla --size tiny --dtype float32 --steps 2 --warmup 1)  # bf16 is slow on CPUs
    COMPILE=(--compile --compile-backend aot_eager)  # traces the compiled decode step, no code generation
    CHECKPOINT=(--size tiny --shard-gb 0.0005 --cache-dir "$SCRATCH/bench")  # several shards
    QUANTISED=(--dtype float32)  # bitsandbytes needs CUDA: the dry run converts the checkpoint instead
    OCTO_SIZES=(tiny)
    TIMED=(--steps 2 --warmup 1)
    DEMO=(--episodes 1 --max-steps 3 --out "$SCRATCH/demo")
else
    DEVICE=cuda
    NO_WRITE=()
    OPENVLA=(--backend openvla --size 7b --dtype bfloat16 --steps 20 --warmup 3)
    COMPILE=(--compile)
    CHECKPOINT=(--size 7b)
    QUANTISED=(--load-in 4bit)
    OCTO_SIZES=(small base)
    TIMED=(--steps 20 --warmup 3)
    DEMO=(--episodes 2)
fi

if ! "$PYTHON" -c "import torch, vla_stack" 2>/dev/null; then
    echo "gpu-check.sh: '$PYTHON' cannot import torch and vla_stack; set up as requirements-gpu.txt says" >&2
    exit 2
fi
if ((!DRY_RUN)) && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu-check.sh: torch in '$PYTHON' sees no CUDA device (or is a CPU build); see requirements-gpu.txt," \
        "or run with --dry-run" >&2
    exit 2
fi

NAMES=()
RESULTS=()
FAILED=0

# step NAME LIMIT_S ARGS...: run `vla-stack ARGS...` for at most LIMIT_S seconds and record the outcome.
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "=== $name: vla-stack $* (limit ${limit} s)"
    local start=$SECONDS
    timeout --kill-after=20 "$limit" "${VLA[@]}" "$@"
    local status=$? took=$((SECONDS - start))
    local outcome="ok"
    if ((status == 124 || status == 137)); then
        outcome="TIMED OUT after ${limit} s"
    elif ((status != 0)); then
        outcome="FAILED (exit $status)"
    fi
    ((status == 0)) || FAILED=$((FAILED + 1))
    NAMES+=("$name")
    RESULTS+=("$(printf '%4d s  %s' "$took" "$outcome")")
}

step openvla-7b-bf16 150 bench policy "${OPENVLA[@]}" --device "$DEVICE" "${NO_WRITE[@]}"
step openvla-7b-bf16-compiled 240 bench policy "${OPENVLA[@]}" "${COMPILE[@]}" --device "$DEVICE" "${NO_WRITE[@]}"
step openvla-7b-load-bf16-cpu 240 bench load "${CHECKPOINT[@]}" --device cpu --steps 1 --warmup 0 "${NO_WRITE[@]}"
step openvla-7b-load-4bit 180 bench load "${CHECKPOINT[@]}" "${QUANTISED[@]}" --device "$DEVICE" "${TIMED[@]}" "${NO_WRITE[@]}"
for size in "${OCTO_SIZES[@]}"; do
    step "octo-$size" 90 bench policy --backend octo --size "$size" --device "$DEVICE" "${TIMED[@]}" "${NO_WRITE[@]}"
done
step octo-sim 90 bench policy --policy octo-sim --device "$DEVICE" "${TIMED[@]}" "${NO_WRITE[@]}"
step demo-octo-sim 180 bench demo --policy octo-sim --device "$DEVICE" "${DEMO[@]}" "${NO_WRITE[@]}"

echo
echo "=== summary ($([ $DRY_RUN = 1 ] && echo 'dry run: CPU, tiny sizes' || echo "CUDA, rows in docs/benchmarks.md"))"
for i in "${!NAMES[@]}"; do
    printf '  %-28s %s\n' "${NAMES[$i]}" "${RESULTS[$i]}"
done
echo "  $((${#NAMES[@]} - FAILED)) passed, $FAILED failed"
exit $((FAILED > 0))
