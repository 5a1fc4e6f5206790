#!/usr/bin/env bash
# Run Conveyor on this machine: installs what is missing (Debian packages, the virtualenv, and
# InfluxDB 1.8 built from the Go module proxy when Go is here), then `conveyor dev`.
# Arguments go to `conveyor dev`, e.g. hack/run.sh --port 8080 --machines 20
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
if command -v go >/dev/null 2>&1; then
  bash "$ROOT/hack/tools.sh" influxd
else
  echo "[run] Go is not installed: running without InfluxDB (points are not stored)" >&2
fi
exec conveyor dev "$@"
