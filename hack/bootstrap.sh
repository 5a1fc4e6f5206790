#!/usr/bin/env bash
# Installs everything Conveyor's commands and tests need, idempotently:
#   - Debian packages: redis-server (+ redis-tools for redis-benchmark), mosquitto, chromium
#   - a Python virtualenv under the user's cache directory with the project and its dev deps,
#     and one with pysparkplug for the Sparkplug B tests' edge node
# A warm run takes a couple of seconds. Source it (it exports CONVEYOR_VENV and PATH) or run it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
VENV="$CACHE/venv"
PYTHON="${CONVEYOR_PYTHON:-python3}"
mkdir -p "$CACHE"

say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages ------------------------------------------------------------------------
need_pkgs=()
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need_pkgs+=(redis-tools)
command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]] || need_pkgs+=(mosquitto)
# The dashboard's browser test drives Debian's Chromium (Playwright never downloads one).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# shellcheck source=hack/lib/apt.sh
source "$ROOT/hack/lib/apt.sh"
if ((${#need_pkgs[@]})); then
  apt_install "${need_pkgs[@]}"
fi

# pip's output only when it fails: a warm run should print nothing.
quiet_pip() {
  local log="$CACHE/pip.log"
  if ! PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/python" -m pip "$@" -q >"$log" 2>&1; then
    cat "$log" >&2
    die "pip $* failed (log: $log)"
  fi
}

# --- Python virtualenv ----------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
  say "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
fi
stamp="$VENV/.conveyor-deps"
want=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "installing Python dependencies (pip cache: $CACHE/pip)"
  quiet_pip install -e "$ROOT[dev]"
  echo "$want" >"$stamp"
fi
# The editable install points at one clone; CI clones afresh, so re-point it when it moved.
where=$("$VENV/bin/python" -c 'import conveyor, pathlib; print(pathlib.Path(conveyor.__file__).resolve().parents[2])' 2>/dev/null || true)
if [[ $where != "$ROOT" ]]; then
  say "linking the project at $ROOT into the virtualenv"
  quiet_pip install --no-deps --no-build-isolation -e "$ROOT"
fi

# --- A Sparkplug B edge node we did not write, for the tests -----------------------------------
# pysparkplug needs paho-mqtt 1 (the project uses 2), so it has a virtualenv of its own; the tests
# run tests/ingest/sparkplug_edge.py with it.
EDGE_VENV="$CACHE/sparkplug-edge-venv"
EDGE_PIN="pysparkplug==0.6.1"
if [[ ! -x $EDGE_VENV/bin/python || $(cat "$EDGE_VENV/.pin" 2>/dev/null) != "$EDGE_PIN" ]]; then
  say "creating $EDGE_VENV ($EDGE_PIN, the Sparkplug B tests' edge node)"
  rm -rf "$EDGE_VENV"
  "$PYTHON" -m venv "$EDGE_VENV"
  if ! PIP_CACHE_DIR="$CACHE/pip" "$EDGE_VENV/bin/python" -m pip install -q "$EDGE_PIN" \
    >"$CACHE/pip-edge.log" 2>&1; then
    cat "$CACHE/pip-edge.log" >&2
    die "installing $EDGE_PIN failed (log: $CACHE/pip-edge.log)"
  fi
  echo "$EDGE_PIN" >"$EDGE_VENV/.pin"
fi

export CONVEYOR_VENV="$VENV"
export CONVEYOR_SPARKPLUG_EDGE_PYTHON="$EDGE_VENV/bin/python"
export PATH="$CACHE/bin:$VENV/bin:$PATH"
