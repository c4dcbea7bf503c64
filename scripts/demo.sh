#!/usr/bin/env bash
# The main job: set up (idempotent), start ComfyUI headless with the pack, run the shipped workflow via its API.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
exec "${HY21_VENV:-$repo/.venv}/bin/python" scripts/demo.py "$@"
