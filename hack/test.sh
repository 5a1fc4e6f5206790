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

step "packages and the virtualenv (hack/bootstrap.sh)"
# shellcheck source=hack/bootstrap.sh
source "$ROOT/hack/bootstrap.sh"
step "Go tools (hack/tools.sh; cached after the first run)"
bash "$ROOT/hack/tools.sh"
# A Docker engine for the image tests (the image itself is built by their fixture).
step "Docker engine"
bash "$ROOT/hack/images.sh" docker
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
