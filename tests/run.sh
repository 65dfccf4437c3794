#!/usr/bin/env bash
# Runs the test suite on a fresh machine: creates the test venv (once), installs the pinned test
# dependencies into it, then runs pytest. Extra arguments go to pytest.
# End-to-end tests run only where WEBUI_DIR points at a webui v1.10.1 checkout (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=${ANIMATE_TEST_VENV:-.venv}
stamp="$VENV/.requirements-$(cat tests/requirements.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q torch==2.13.0
  "$VENV/bin/python" -m pip install -q --no-deps stable-diffusion-sdkit==2.1.5
  "$VENV/bin/python" -m pip install -q -r tests/requirements.txt
  touch "$stamp"
fi
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
