# shellcheck shell=bash
# Building an image for Conveyor's scripts: source it, then `docker_build LOG TAG ARGS...`
# (ARGS as for `docker build`, the context last). The output goes to LOG; on failure its
# tail is shown and the script stops. Callers define `die`.

docker_build() {
  local log=$1 tag=$2
  shift 2
  mkdir -p "$(dirname "$log")"
  if ! docker build -t "$tag" "$@" >"$log" 2>&1; then
    tail -30 "$log" >&2
    die "docker build failed for $tag (log: $log)"
  fi
}
