#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, then the lint and type gates,
# then pytest (unit and integration tests against real servers it starts itself).
# Extra arguments go to pytest, e.g. hack/test.sh -k priority
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

# The Go tools build (CPU) while the packages, the virtualenv and the images install (mostly
# network and disk): on a first run that is minutes saved. Each says what it does as it goes.
step "Go tools (hack/tools.sh; cached after the first run), in the background"
bash "$ROOT/hack/tools.sh" &
tools=$!
trap 'kill "$tools" 2>/dev/null || true' EXIT
step "packages and the virtualenv (hack/bootstrap.sh)"
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
# A Docker engine, and the Conveyor image and its bases (the image tests' fixture rebuilds the
# product image, from Docker's layer cache).
step "Docker engine and images (hack/images.sh)"
bash "$ROOT/hack/images.sh" docker base python conveyor
step "waiting for the Go tools"
wait "$tools" || { echo "hack/tools.sh failed: its error is above" >&2; exit 1; }
trap - EXIT
cd "$ROOT"

if $chaos; then
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

step "pytest"
# Exit code 5 (no test collected) is a failure like any other.
exec python -m pytest -m "not bench and not chaos" --durations=15 "$@"
