#!/usr/bin/env bash
# Builds the Go tools the tests need, at pinned versions, from the Go module proxy, into
# ${XDG_CACHE_HOME:-~/.cache}/conveyor/bin. Cached: a tool already built at its version is
# skipped. Usage: hack/tools.sh [TOOL...]   (default: all)
#
#   influxd   InfluxDB OSS 1.8.10: pure Go (1.11+ and 2.x need Rust for flux) and it serves
#             the v2 write API (/api/v2/write) that the workers use.
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
BIN="$CACHE/bin"
INFLUXDB_VERSION=v1.8.10

say() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] error: %s\n' "$*" >&2; exit 1; }

need_go() {
  command -v go >/dev/null 2>&1 || die "Go is not installed: install Go 1.21+ (https://go.dev/doc/install) or apt-get install golang"
  export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go-build" GOFLAGS=-mod=mod
  export GOBIN="$CACHE/go/bin"
}

# build NAME VERSION PACKAGE@VERSION [LDFLAGS]
build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local target="$BIN/$name-$version"
  if [[ -x $target ]]; then
    ln -sf "$target" "$BIN/$name"
    return
  fi
  need_go
  mkdir -p "$BIN"
  say "building $name $version from the Go module proxy (first time only; a minute or two)"
  local log="$CACHE/build-$name.log"
  if ! (cd "$CACHE" && go install -ldflags "$ldflags" "$pkg") >"$log" 2>&1; then
    tail -20 "$log" >&2
    die "building $name failed (log: $log); is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
  fi
  mv "$GOBIN/$(basename "${pkg%@*}")" "$target"
  ln -sf "$target" "$BIN/$name"
  say "built $target"
}

tools=("$@")
((${#tools[@]})) || tools=(influxd)
for tool in "${tools[@]}"; do
  case $tool in
    influxd) build influxd "$INFLUXDB_VERSION" "github.com/influxdata/influxdb/cmd/influxd@$INFLUXDB_VERSION" \
               "-X main.version=${INFLUXDB_VERSION#v}" ;;
    *) die "unknown tool '$tool' (known: influxd)" ;;
  esac
done
