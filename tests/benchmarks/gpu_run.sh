#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root, after tests/benchmarks/gpu_prepare.sh here;
# the device run carries .whl and .bench_base. Writes its tables and JSON to $OUT (4 files).
#   gpu_run.sh          run_all (motion + diffusers peer, reference attention, memory vs frames; planned
#                       ~3-4 min on an H100) and a before/after of the motion modules against
#                       .bench_base (two interleaved rounds, ~1.5 min)
#   gpu_run.sh compile  bench_motion with the regionally compiled motion modules (~3-5 min, mostly compile)
#   gpu_run.sh ab       only the before/after
#   gpu_run.sh sdxl     R_mm on SDXL: AD-SDXL and HotShot-XL at 1024x1024, 2 x 16 frames (~2 min)
# DEVICE=cpu PYTHON=.venv/bin/python SKIP_WHEELS=1 runs the same steps here on the CPU tiny configs
# (a dry run of the script itself; numbers informational).
set -uo pipefail
OUT=${OUT:-/tmp/bench_out}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
# absolute (the before/after runs start in another folder), without resolving a venv's symlink
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
mkdir -p "$OUT"
REPO=$PWD
if [ -z "${SKIP_WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$REPO
else
  export PYTHONPATH=$REPO
fi
export PYTHONUNBUFFERED=1
EXTRA=(); [ "$DEVICE" = cpu ] && EXTRA=(--threads 1)
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
  "$PYTHON" -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)"
} > "$OUT/gpu.txt"
if [ "${1:-}" = sdxl ]; then
  "$PYTHON" -m tests.benchmarks.run_all --device "$DEVICE" "${EXTRA[@]}" --only sdxl --json "$OUT/bench_sdxl.json" 2>&1 | tee "$OUT/bench_sdxl.txt"
  exit
fi
if [ "${1:-}" = compile ]; then
  "$PYTHON" -m tests.benchmarks.bench_motion --device "$DEVICE" "${EXTRA[@]}" --compile --versions v2 --no-memory \
    --json "$OUT/bench_compile.json" 2>&1 | tee "$OUT/bench_compile.txt"
  exit
fi
if [ "${1:-}" != ab ]; then
  "$PYTHON" -m tests.benchmarks.run_all --device "$DEVICE" "${EXTRA[@]}" --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
fi
# Before/after of the motion modules, interleaved runs on the same device: the base engine (found
# first because that run starts in .bench_base) against this checkout's, same benchmark code.
for round in 1 2; do
  for side in base new; do
    dir=$REPO; [ "$side" = base ] && dir=$REPO/.bench_base
    echo "=== $side, round $round" >> "$OUT/ab.txt"
    (cd "$dir" && "$PYTHON" -m tests.benchmarks.bench_motion --device "$DEVICE" "${EXTRA[@]}" --versions v2 --no-diffusers \
       --no-ceilings --no-flops --no-memory --iters 10 2>&1 | grep -v "round .* done" >> "$OUT/ab.txt")
  done
done
grep -E "^===|R_mm v2 |^  ours (bare|\+ v2) |copies in" "$OUT/ab.txt"
