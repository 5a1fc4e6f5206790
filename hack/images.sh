#!/usr/bin/env bash
# Container images made on this machine, with no registry to pull from:
#
#   hack/images.sh docker     make sure a Docker engine answers: installs Debian's docker.io
#                             when dockerd is missing and starts dockerd when none runs; on
#                             a host whose capability bounding set is short (a sandbox),
#                             registers runc-hostcaps as dockerd's default runtime so that
#                             --privileged containers (kind's nodes) can start; raises the
#                             host's inotify limits to what kind asks for several nodes
#   hack/images.sh base       Debian bookworm (debootstrap --variant=minbase) imported as
#                             conveyor.local/debian:bookworm; the rootfs tarball is cached
#   hack/images.sh python     conveyor.local/python:3.11-bookworm: the base + Debian's python3,
#                             standing in for the public python:3.11-slim image
#   hack/images.sh conveyor   the Conveyor image (Dockerfile) FROM that python base, tagged
#                             conveyor:dev (override with CONVEYOR_IMAGE)
#   hack/images.sh services   the chart's in-release Redis, Mosquitto and InfluxDB for offline
#                             clusters, FROM the Debian base: conveyor.local/redis:7.0,
#                             conveyor.local/mosquitto:2.0 and conveyor.local/influxdb:1.8
#                             (tests/infra/kind/images; InfluxDB's influxd from hack/tools.sh)
#   hack/images.sh            docker, base, python and conveyor, in order
#
# Everything is idempotent: an image that exists is kept (the Conveyor image is rebuilt, and
# Docker's layer cache makes that quick when only the code changed). Output: a line per step.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
IMAGES="$CACHE/images"
BASE_IMAGE=conveyor.local/debian:bookworm
PYTHON_IMAGE=conveyor.local/python:3.11-bookworm
CONVEYOR_IMAGE=${CONVEYOR_IMAGE:-conveyor:dev}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

say() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=hack/lib/apt.sh
source "$ROOT/hack/lib/apt.sh"
# shellcheck source=hack/lib/docker.sh
source "$ROOT/hack/lib/docker.sh"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_docker() {
  ensure_inotify
  if docker version >/dev/null 2>&1; then
    ensure_runtime
    return
  fi
  # The package's own service stays stopped (apt_install): dockerd is started below.
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  command -v docker >/dev/null 2>&1 || die "docker.io is installed but no docker client is on PATH"
  if host_lacks_capabilities; then
    say "this host's capability bounding set is short: $RUNTIME_NAME will be dockerd's default runtime ($DAEMON_JSON)"
    register_runtime
  fi
  start_dockerd
}

# Each kind node runs its own systemd, kubelet and containerd, all watching files: kind's
# documented minimum for clusters of several nodes ("too many open files" below it). Raised
# only, never lowered.
ensure_inotify() {
  local key want have
  for key in fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=524288; do
    want=${key#*=} have=$(sysctl -n "${key%=*}" 2>/dev/null || echo 0)
    if ((have < want)) && ! as_root sysctl -q -w "$key" 2>/dev/null; then
      say "warning: could not raise ${key%=*} from $have to $want: a kind cluster of several nodes may fail with 'too many open files'"
    fi
  done
}

start_dockerd() {
  mkdir -p "$CACHE"
  say "starting dockerd (log: $CACHE/dockerd.log)"
  as_root setsid nohup dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && return
    sleep 0.5
  done
  tail -20 "$CACHE/dockerd.log" >&2
  die "dockerd did not answer within 30 s (log above: $CACHE/dockerd.log)"
}

# A --privileged container asks runc for every capability; where the host's bounding set
# lacks one (this workplace's machines lack CAP_SYS_RESOURCE) runc fails with "unable to
# apply caps: operation not permitted". runc-hostcaps (tests/infra/kind/runc-hostcaps) drops what
# the host cannot grant and runs runc; a host with every capability keeps plain runc.
RUNTIME_NAME=runc-hostcaps
RUNTIME_PATH=/usr/local/sbin/runc-hostcaps
DAEMON_JSON=/etc/docker/daemon.json

host_lacks_capabilities() {
  local bounding last
  bounding=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  last=$(cat /proc/sys/kernel/cap_last_cap)
  ((bounding != (1 << (last + 1)) - 1))
}

# Installs runc-hostcaps (again when it was rebuilt) and names it in daemon.json.
register_runtime() {
  bash "$ROOT/hack/tools.sh" runc-hostcaps
  cmp -s "$CACHE/kind-node/bin/runc-hostcaps" "$RUNTIME_PATH" 2>/dev/null \
    || as_root install -m 0755 "$CACHE/kind-node/bin/runc-hostcaps" "$RUNTIME_PATH"
  as_root mkdir -p "$(dirname "$DAEMON_JSON")"
  # Merged into whatever daemon.json already says.
  as_root python3 - "$DAEMON_JSON" "$RUNTIME_NAME" "$RUNTIME_PATH" <<'PY'
import json, os, sys
path, name, runtime = sys.argv[1:]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
config.setdefault("runtimes", {})[name] = {"path": runtime}
config["default-runtime"] = name
with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2)
os.replace(path + ".tmp", path)
PY
}

# For a running dockerd: registers the runtime where the host needs it, restarting dockerd
# when it does not use it yet.
ensure_runtime() {
  host_lacks_capabilities || return 0
  register_runtime
  [[ $(docker info --format '{{.DefaultRuntime}}' 2>/dev/null) == "$RUNTIME_NAME" ]] && return
  say "this host's capability bounding set is short: $RUNTIME_NAME becomes dockerd's default runtime ($DAEMON_JSON); restarting dockerd (running containers stop)"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker 2>/dev/null; then
    as_root systemctl restart docker
  else
    as_root pkill -x dockerd || true
    for _ in $(seq 1 60); do
      pgrep -x dockerd >/dev/null || break
      sleep 0.5
    done
    start_dockerd
  fi
  [[ $(docker info --format '{{.DefaultRuntime}}') == "$RUNTIME_NAME" ]] \
    || die "dockerd did not take $RUNTIME_NAME as its default runtime (see $DAEMON_JSON)"
}

ensure_base() {
  image_exists "$BASE_IMAGE" && return
  local tarball="$IMAGES/debian-bookworm-minbase.tar"
  if [[ ! -s $tarball ]]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    mkdir -p "$IMAGES"
    local rootfs
    rootfs=$(mktemp -d "$IMAGES/rootfs.XXXXXX")
    say "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR (first time only; about a minute)"
    if ! as_root debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" \
      >"$IMAGES/debootstrap.log" 2>&1; then
      tail -20 "$IMAGES/debootstrap.log" >&2
      as_root rm -rf "$rootfs"
      die "debootstrap failed (log: $IMAGES/debootstrap.log); is $DEBIAN_MIRROR reachable?"
    fi
    # Package lists and caches are not part of an image.
    as_root rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    as_root tar -C "$rootfs" -cf "$tarball.part" .
    as_root rm -rf "$rootfs"
    mv "$tarball.part" "$tarball"
  fi
  say "importing $BASE_IMAGE"
  docker import --change 'CMD ["/bin/bash"]' "$tarball" "$BASE_IMAGE" >/dev/null
}

ensure_python() {
  image_exists "$PYTHON_IMAGE" && return
  say "building $PYTHON_IMAGE"
  local context log="$IMAGES/build-python.log"
  context=$(mktemp -d)
  cp "$ROOT/hack/images/python.Dockerfile" "$context/Dockerfile"
  mkdir "$context/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/extra-ca/" 2>/dev/null || true
  trap 'rm -rf "$context"' EXIT
  docker_build "$log" "$PYTHON_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" "$context"
  rm -rf "$context"
  trap - EXIT
}

REDIS_IMAGE=conveyor.local/redis:7.0
MOSQUITTO_IMAGE=conveyor.local/mosquitto:2.0
INFLUXDB_IMAGE=conveyor.local/influxdb:1.8

build_services() {
  local name
  for name in redis mosquitto; do
    local tag=$REDIS_IMAGE
    [[ $name == mosquitto ]] && tag=$MOSQUITTO_IMAGE
    say "building $tag FROM $BASE_IMAGE"
    docker_build "$IMAGES/build-$name.log" "$tag" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      -f "$ROOT/tests/infra/kind/images/$name.Dockerfile" "$ROOT/tests/infra/kind/images"
  done
  # InfluxDB: the influxd hack/tools.sh builds, in a context of its own.
  local influxd="$CACHE/bin/influxd" context
  [[ -x $influxd ]] || bash "$ROOT/hack/tools.sh" influxd >&2
  say "building $INFLUXDB_IMAGE FROM $BASE_IMAGE"
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  cp "$ROOT/tests/infra/kind/images/influxdb.Dockerfile" "$context/Dockerfile"
  cp -L "$influxd" "$context/influxd"
  docker_build "$IMAGES/build-influxdb.log" "$INFLUXDB_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    "$context"
  rm -rf "$context"
  trap - EXIT
}

build_conveyor() {
  say "building $CONVEYOR_IMAGE FROM $PYTHON_IMAGE"
  docker_build "$IMAGES/build-conveyor.log" "$CONVEYOR_IMAGE" --build-arg "BASE_IMAGE=$PYTHON_IMAGE" "$ROOT"
}

steps=("$@")
((${#steps[@]})) || steps=(docker base python conveyor)
for step in "${steps[@]}"; do
  case $step in
    docker) ensure_docker ;;
    base) ensure_docker && ensure_base ;;
    python) ensure_docker && ensure_base && ensure_python ;;
    conveyor) ensure_docker && ensure_base && ensure_python && build_conveyor ;;
    services) ensure_docker && ensure_base && build_services ;;
    *) die "unknown step '$step' (known: docker base python conveyor services)" ;;
  esac
done
