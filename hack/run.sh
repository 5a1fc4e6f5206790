#!/usr/bin/env bash
# Run Conveyor on this machine: installs what is missing, then `conveyor dev`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
exec conveyor dev "$@"
