#!/usr/bin/env bash
# The project's test command: set up (idempotent), lint, check the formatting, then run every test. Extra
# arguments go to pytest (e.g. `-m unit` for the fast tests, `-m "not server"`; kinds in pyproject.toml).
set -euo pipefail
if [ -n "${COMFYUI_PATH:-}" ]; then  # a relative COMFYUI_PATH means the caller's folder, not the repository
  COMFYUI_PATH="$(cd "$COMFYUI_PATH" && pwd)"
  export COMFYUI_PATH
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
py="${HY21_VENV:-$repo/.venv}/bin/python"
"$py" -m ruff check .
"$py" -m ruff format --check .
status=0
"$py" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "[test] pytest collected no tests: treating that as a failure" >&2
fi
exit "$status"
