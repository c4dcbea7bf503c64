#!/usr/bin/env bash
# The main job: set up (idempotent), start ComfyUI headless with the pack, run the shipped workflow via its API.
set -euo pipefail
if [ -n "${COMFYUI_PATH:-}" ]; then  # a relative COMFYUI_PATH means the caller's folder, not the repository
  COMFYUI_PATH="$(cd "$COMFYUI_PATH" && pwd)"
  export COMFYUI_PATH
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
exec "${HY21_VENV:-$repo/.venv}/bin/python" scripts/demo.py "$@"
