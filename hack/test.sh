#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then the lint and type gates,
# then pytest (unit and integration tests against real servers it starts itself), in two runs:
# all but tests/cluster and tests/kind while the Go tools build, then those two tiers.
# Extra arguments go to one pytest run, once the tools are built: hack/test.sh -k priority
#
#   hack/test.sh --chaos [pytest args]   instead: the chaos suite (tests/kind/test_chaos.py, five
#                                        blows each in a 30,000-message burst, on the three-node
#                                        kind cluster), not part of the test command CI runs
set -euo pipefail
chaos=false
if [[ ${1:-} == --chaos ]]; then
  chaos=true
  shift
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Each step says when it starts (seconds since this script began): where a cold run's time goes.
step() { printf '\n== %s (at %ds)\n' "$*" "$SECONDS"; }

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
PYTEST=(python -m pytest -m "not bench and not chaos" --durations=15)

# The Go tools build in the background, at a lower priority, while the packages, the virtualenv
# and the images install (mostly network and disk) and the tests that need no Kubernetes tool
# run (mostly waiting on servers): on a first run, a quarter of an hour saved on two cores. Each
# says what it does as it goes.
# In a process group of their own, so that leaving early (a failed gate, Ctrl-C) stops every
# build with it.
step "Go tools (hack/tools.sh; cached after the first run), in the background"
setsid -w nice -n 10 bash "$ROOT/hack/tools.sh" &
tools=$!
trap 'kill -- -"$tools" 2>/dev/null || true' EXIT
tools_built=false
wait_for_tools() {
  $tools_built && return
  step "waiting for the Go tools"
  wait "$tools" || { echo "hack/tools.sh failed: its error is above" >&2; exit 1; }
  tools_built=true
  trap - EXIT
}

step "packages and the virtualenv (hack/bootstrap.sh)"
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
# A Docker engine, and the Conveyor image and its bases (the image tests' fixture rebuilds the
# product image, from Docker's layer cache).
step "Docker engine and images (hack/images.sh)"
bash "$ROOT/hack/images.sh" docker base python conveyor
cd "$ROOT"

if $chaos; then
  wait_for_tools
  step "pytest: the chaos suite"
  exec python -m pytest -m chaos tests/kind/test_chaos.py "$@"
fi

step "ruff (lint and format)"
ruff check .
ruff format --check .

step "mypy --strict"
mypy -p reliable_queue -p conveyor_messages -p conveyor_plant -p conveyor_ingestor -p conveyor_worker -p conveyor_gateway -p conveyor_operator -p conveyor -p bench

step "import boundaries"
lint-imports

# Exit code 5 (no test collected) is a failure like any other.
if (($#)); then
  wait_for_tools
  step "pytest"
  exec "${PYTEST[@]}" "$@"
fi
# Only tests/cluster and tests/kind need the Kubernetes tools; the rest needs influxd at most,
# the first build of hack/tools.sh's second lane. Tools that stopped already (built, or failed)
# are waited for at once, so that a failed build is told before any test runs.
step "pytest: all but the cluster and kind tiers, while the Go tools build"
while [[ ! -x $CACHE/bin/influxd ]] && kill -0 "$tools" 2>/dev/null; do sleep 2; done
kill -0 "$tools" 2>/dev/null || wait_for_tools
# Both runs go ahead whatever the first found; the script fails if either did.
first=0
"${PYTEST[@]}" --ignore=tests/cluster --ignore=tests/kind || first=$?
wait_for_tools
step "pytest: the cluster and kind tiers"
second=0
"${PYTEST[@]}" tests/cluster tests/kind || second=$?
((first == 0)) || echo "the first pytest run (all but tests/cluster and tests/kind) failed: its report is above" >&2
((first == 0 && second == 0))
