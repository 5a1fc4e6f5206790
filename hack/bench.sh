#!/usr/bin/env bash
# The benchmarks (bench/, figures in docs/benchmarks.md), from this checkout: installs what is
# missing (hack/bootstrap.sh), then `python -m bench` with this checkout on PYTHONPATH, from
# any directory. Arguments go to it, e.g. hack/bench.sh pipeline --messages 200000
# Go tools are not built here: influxd (pipeline, worker, soak) and the control plane
# (autoscale) come from hack/tools.sh, and each benchmark says which one it misses.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Not the caller's directory first on the path: a bench/ there must not shadow this one.
export PYTHONSAFEPATH=1
exec python -m bench "$@"
