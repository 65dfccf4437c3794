#!/usr/bin/env bash
# Run here (the development machine), once, from anywhere in the repository, before the device run:
#   .whl/         wheels the GPU machine's Python 3.12 lacks: the webui's `ldm` package
#                 (stable-diffusion-sdkit), the diffusers peer and its importlib_metadata;
#   .bench_base/  the engine (lib_animate/) as of BASE (default 9f8c808, before the issue-6 changes),
#                 for the before/after motion run on the same GPU.
# Both are ignored through .git/info/exclude and travel with the run's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE=${BASE:-9f8c808}
for path in /.whl/ /.bench_base/; do
  grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl stable-diffusion-sdkit==2.1.5 diffusers==0.42.1 importlib_metadata==10.2.0
rm -rf .bench_base && mkdir -p .bench_base && git archive "$BASE" lib_animate | tar -x -C .bench_base
du -sh .whl .bench_base
