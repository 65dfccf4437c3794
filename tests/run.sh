#!/usr/bin/env bash
# Runs the test suite on a fresh machine: creates the test venv (once), installs the pinned test
# dependencies into it, then runs pytest. Extra arguments go to pytest.
# End-to-end tests run only where WEBUI_DIR points at a webui v1.10.1 checkout (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
# Which package set: "latest" (default: torch 2.13 CPU, diffusers as the oracle) or "webui" (exactly the
# versions webui v1.10.1 runs: torch 2.1.2, numpy 1.26.2, Pillow 9.5.0, transformers 4.30.2, ...).
case "${ANIMATE_TEST_PACKAGES:-latest}" in
  latest) REQUIREMENTS=tests/requirements.txt; TORCH=torch==2.13.0; VENV=${ANIMATE_TEST_VENV:-.venv} ;;
  webui) REQUIREMENTS=tests/requirements-webui.txt; TORCH=torch==2.1.2; VENV=${ANIMATE_TEST_VENV:-.venv-webui} ;;
  *) echo "ANIMATE_TEST_PACKAGES must be 'latest' or 'webui', not '$ANIMATE_TEST_PACKAGES'" >&2; exit 2 ;;
esac
stamp="$VENV/.requirements-$( (echo "$TORCH"; cat "$REQUIREMENTS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "$TORCH"
  "$VENV/bin/python" -m pip install -q --no-deps stable-diffusion-sdkit==2.1.5
  "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS"
  touch "$stamp"
fi
"$VENV/bin/python" -c "import torch, numpy, PIL; print(f'package set {\"${ANIMATE_TEST_PACKAGES:-latest}\"}: torch {torch.__version__}, numpy {numpy.__version__}, Pillow {PIL.__version__}')"
# Run the whole suite unless a test path was given.
targets=(tests)
for arg in "$@"; do
  case "$arg" in -*) ;; *) targets=(); break ;; esac
done
set +e
"$VENV/bin/python" -m pytest "${targets[@]}" "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: no test ran" >&2
  exit 1
fi
exit "$status"
