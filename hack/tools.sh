#!/usr/bin/env bash
# Builds the Go tools the tests need, at pinned versions, from the Go module proxy, into
# ${XDG_CACHE_HOME:-~/.cache}/conveyor/bin. Cached: a tool already built at its version is
# skipped. Usage: hack/tools.sh [TOOL...]   (default: influxd k8s kind, in two lanes at once:
# the Kubernetes components in one, what shares no module with them in the other: one Go build
# leaves a core idle while it downloads modules and links)
#
#   influxd   InfluxDB OSS 1.8.10: pure Go (1.11+ and 2.x need Rust for flux) and it serves
#             the v2 write API (/api/v2/write) that the workers use.
#   k8s       the test control plane at $K8S_VERSION (below): kube-apiserver,
#             kube-controller-manager, kube-scheduler, kubectl, kubeadm, and etcd at the
#             version that release's kubeadm deploys (kubeadm is asked), kwok and kwokctl, helm.
#   kind      kind itself, and what its offline node image is made of
#             (tests/infra/kind/node-image.sh): the same Kubernetes release (the control plane's
#             binaries are copied, the kubelet and kube-proxy built), etcd, and CoreDNS at the
#             version kubeadm deploys, the pause program and runc-hostcaps (tests/infra/kind/),
#             and kind-netpol (tests/infra/kind/netpol: the node's NetworkPolicy enforcement:
#             kube-network-policies' engine at the version its go.mod pins), and rancher's
#             local-path-provisioner (the node's volumes), into $CACHE/kind-node/bin.
#   telegraf  only when named (never by default): Telegraf for `hack/bench.sh pipeline`, built
#             with build tags that keep only the plugins the benchmark uses (mqtt_consumer, the
#             JSON parser, the unpivot processor, outputs.influxdb). About a minute on two cores.
#   The parts of k8s and kind build alone when named: control-plane, kwok, helm (of k8s);
#   kind-node, coredns, pause, runc-hostcaps, kind-netpol, local-path-provisioner (of kind).
set -euo pipefail

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
BIN="$CACHE/bin"
NODE_BIN="$CACHE/kind-node/bin"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFLUXDB_VERSION=v1.8.10
# The Kubernetes release every test runs on, the control plane's (tests/cluster) and the kind
# suite's: the newest release the Go module proxy serves. Its kubelet runs on this cgroup v1
# host with `failCgroupV1: false` (tests/infra/kind/cluster.yaml) and on Debian's containerd 1.6.
# CONVEYOR_K8S_VERSION=v1.34.4 runs them all on 1.34, the oldest release kept working (GitHub's
# kind workflow runs it too); each release is built once and cached.
K8S_VERSION=${CONVEYOR_K8S_VERSION:-v1.37.2}
[[ $K8S_VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] \
  || { echo "[tools] error: CONVEYOR_K8S_VERSION must be a Kubernetes release such as v1.37.2 or v1.34.4, not '$K8S_VERSION'" >&2; exit 1; }
KIND_VERSION=v0.33.0
KWOK_VERSION=v0.8.0
# The kind node's volume provisioner (tests/infra/kind/node/default-storage.yaml runs it).
LOCAL_PATH_VERSION=v0.0.30
HELM_VERSION=v3.19.0
TELEGRAF_VERSION=v1.37.2
# Telegraf's custom-build tags: `custom` drops every plugin not named after it.
TELEGRAF_TAGS=custom,inputs.mqtt_consumer,parsers.json,processors.unpivot,outputs.influxdb

say() { printf '[tools] %s\n' "$*" >&2; }
# In two lanes, a lane that fails stops the other: a build is not waited for when it is moot.
die() {
  printf '[tools] error: %s\n' "$*" >&2
  [[ -z ${TOOLS_PEER:-} ]] || kill "$TOOLS_PEER" 2>/dev/null || true
  exit 1
}

need_go() {
  command -v go >/dev/null 2>&1 || die "Go is not installed: install Go 1.21+ (https://go.dev/doc/install) or apt-get install golang"
  export GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/pkg/mod" GOCACHE="$CACHE/go-build" GOFLAGS=-mod=mod
  export GOBIN="$CACHE/go/bin"
}

# build NAME VERSION PACKAGE@VERSION [LDFLAGS] [TAGS]
# cached NAME VERSION: true (and NAME linked to it) when NAME-VERSION is already built.
cached() {
  local target="$BIN/$1-$2"
  [[ -x $target ]] || return 1
  # Both lanes may link kubeadm at once; the link is a convenience, the versioned file the fact.
  ln -sf "$target" "$BIN/$1" 2>/dev/null || true
}

build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-} tags=${5:-}
  local target="$BIN/$name-$version"
  cached "$name" "$version" && return
  need_go
  mkdir -p "$BIN"
  say "building $name $version from the Go module proxy (first time only; a minute or two)"
  local log="$CACHE/build-$name.log"
  if ! (cd "$CACHE" && go install -tags "$tags" -ldflags "$ldflags" "$pkg") >"$log" 2>&1; then
    tail -20 "$log" >&2
    die "building $name failed (log: $log); is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
  fi
  # go install names the binary after the package path, less a /vN major-version suffix.
  local installed
  installed=$(basename "${pkg%@*}")
  [[ $installed =~ ^v[0-9]+$ ]] && installed=$(basename "$(dirname "${pkg%@*}")")
  mv "$GOBIN/$installed" "$target"
  ln -sf "$target" "$BIN/$name"
  say "built $target"
}

# Modules whose go.mod replaces sibling modules with local paths (k8s.io/kubernetes: its
# ./staging/src/k8s.io/*; etcd's server: ../api, ../client/...) cannot be `go install`ed. A
# small wrapper module requires them and points each such replacement at its published
# version instead.
# wrapped NAME MODULE VERSION SIBLING_VERSION PACKAGE LDFLAGS
wrapped() {
  local name=$1 module=$2 version=$3 sibling=$4 pkg=$5 ldflags=$6
  local target="$BIN/$name-$version"
  cached "$name" "$version" && return
  need_go
  mkdir -p "$BIN"
  local wrapper="$CACHE/src/$(basename "$module")-$version"
  if [[ ! -f $wrapper/go.mod ]]; then
    say "preparing a wrapper module for $module $version"
    mkdir -p "$wrapper"
    local gomod
    gomod=$(cd "$wrapper" && go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [[ -f $gomod ]] || die "cannot download $module@$version from the Go module proxy"
    {
      printf 'module conveyor.local/tools\n\ngo 1.24.0\n\nrequire %s %s\n\nreplace (\n' "$module" "$version"
      grep -E '=> \.\.?/' "$gomod" | grep -v FORBIDDEN | awk -v v="$sibling" '{print "\t" $1 " => " $1 " " v}'
      printf ')\n'
    } >"$wrapper/go.mod.tmp.$$"
    mv "$wrapper/go.mod.tmp.$$" "$wrapper/go.mod"
  fi
  say "building $name $version from the Go module proxy (first time only; up to a few minutes)"
  local log="$CACHE/build-$name.log"
  if ! (cd "$wrapper" && go build -o "$target.tmp.$$" -ldflags "$ldflags" "$pkg") >"$log" 2>&1; then
    tail -20 "$log" >&2
    die "building $name failed (log: $log); is the Go module proxy reachable (GOPROXY=$(go env GOPROXY))?"
  fi
  mv "$target.tmp.$$" "$target"
  ln -sf "$target" "$BIN/$name"
  say "built $target"
}

# build_k8s NAME: a Kubernetes command at $K8S_VERSION.
build_k8s() {
  local name=$1 version=$K8S_VERSION
  local minor=${version#v1.}
  minor=${minor%%.*}
  local v="k8s.io/component-base/version" c="k8s.io/client-go/pkg/version"
  local ldflags="-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X $c.gitVersion=$version -X $c.gitMajor=1 -X $c.gitMinor=$minor"
  wrapped "$name" k8s.io/kubernetes "$version" "v0.${version#v1.}" "k8s.io/kubernetes/cmd/$name" "$ldflags"
}

# The node image's own binaries live apart from the host's tools: each function writes to $BIN,
# so it is pointed at $NODE_BIN for the call. A component one side already has (same version,
# same flags) is copied to the other rather than linked again: a minute or more on two cores.
# reuse FROM TO NAME VERSION: FROM's NAME-VERSION copied into TO, when TO has none.
reuse() {
  local from="$1/$3-$4" to="$2/$3-$4"
  if [[ -x $from && ! -x $to ]]; then
    mkdir -p "$2"
    cp "$from" "$to.tmp.$$" && mv "$to.tmp.$$" "$to"
  fi
}

node_k8s() {
  reuse "$BIN" "$NODE_BIN" "$1" "$K8S_VERSION"
  BIN=$NODE_BIN build_k8s "$1"
}

host_k8s() {
  reuse "$NODE_BIN" "$BIN" "$1" "$K8S_VERSION"
  build_k8s "$1"
}

# The tag of the image NAME that kubeadm $K8S_VERSION deploys (`kubeadm config images list`);
# builds kubeadm first if need be.
kubeadm_image_tag() {
  host_k8s kubeadm
  local tag
  tag=$("$BIN/kubeadm-$K8S_VERSION" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null |
    sed -n "s|.*/$1:||p")
  [[ -n $tag ]] || die "kubeadm $K8S_VERSION lists no $1 image"
  echo "$tag"
}

# The etcd version kubeadm deploys: its image tag less the image's revision (3.7.0-0: v3.7.0).
etcd_version() {
  local tag
  tag=$(kubeadm_image_tag etcd) || exit 1
  echo "v${tag%-*}"
}

# A program of this repository (tests/infra/kind/NAME/main.go, standard library only), static.
# go_program NAME
go_program() {
  local name=$1 src="$ROOT/tests/infra/kind/$1/main.go" target="$NODE_BIN/$1"
  if [[ -x $target && $target -nt $src ]]; then
    return
  fi
  need_go
  mkdir -p "$NODE_BIN"
  say "building $name (tests/infra/kind/$name)"
  (cd "$ROOT/tests/infra/kind/$name" && CGO_ENABLED=0 go build -o "$target.tmp.$$" -ldflags "-s -w" main.go) \
    || die "building $name failed"
  mv "$target.tmp.$$" "$target"
}

# kind-netpol (tests/infra/kind/netpol, a module of its own: its go.mod pins
# kube-network-policies) imports client-go, as the kubelet does. Built in a copy of the module
# whose shared dependencies are replaced by the versions k8s.io/kubernetes $K8S_VERSION builds
# with, it reuses what the kubelet's build compiled: seconds, where compiling its own client-go
# takes a minute and a half on two cores. (Without the kubelet's wrapper module it builds as
# pinned.)
netpol_program() {
  local dir="$ROOT/tests/infra/kind/netpol" target="$NODE_BIN/kind-netpol"
  if [[ -x $target && -z $(find "$dir" "${BASH_SOURCE[0]}" -type f -newer "$target") ]]; then
    return
  fi
  need_go
  mkdir -p "$NODE_BIN"
  local build="$CACHE/src/kind-netpol" kubernetes="$CACHE/src/kubernetes-$K8S_VERSION"
  rm -rf "$build" && mkdir -p "$build" && cp "$dir"/*.go "$dir"/go.mod "$dir"/go.sum "$build/"
  say "building kind-netpol (tests/infra/kind/netpol)"
  local log="$CACHE/build-kind-netpol.log"
  if ! (
    cd "$build"
    if [[ -f $kubernetes/go.mod ]]; then
      (cd "$kubernetes" && go list -m all) | awk 'NR > 1 {print $1, ($3 == "=>" ? $5 : $2)}' >kubernetes.list
      go list -m all | awk '{print $1, $2}' >own.list
      {
        printf '\nreplace (\n'
        awk 'NR == FNR {v[$1] = $2; next} ($1 in v) && v[$1] != $2 {print "\t" $1 " => " $1 " " v[$1]}' \
          kubernetes.list own.list
        printf ')\n'
      } >>go.mod
    fi
    go build -o "$target.tmp.$$" -ldflags "-s -w" .
  ) >"$log" 2>&1; then
    tail -20 "$log" >&2
    die "building kind-netpol failed (log: $log)"
  fi
  mv "$target.tmp.$$" "$target"
}

local_path_provisioner() {
  BIN=$NODE_BIN build local-path-provisioner "$LOCAL_PATH_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION" "-s -w"
}

# In two lanes (the default), kubeadm is the Kubernetes lane's first build: the other lane waits
# for it (CoreDNS's version is kubeadm's answer) rather than build it in the same module at once.
await_kubeadm() {
  while [[ -n ${TOOLS_PEER:-} && ! -x $BIN/kubeadm-$K8S_VERSION ]] && kill -0 "$TOOLS_PEER" 2>/dev/null; do
    sleep 2
  done
}

build_control_plane() {
  local etcd name
  etcd=$(etcd_version)
  reuse "$NODE_BIN" "$BIN" etcd "$etcd"
  wrapped etcd go.etcd.io/etcd/server/v3 "$etcd" "$etcd" go.etcd.io/etcd/server/v3 "-s -w"
  for name in kube-apiserver kube-controller-manager kube-scheduler kubectl; do host_k8s "$name"; done
}

# kwok is built for the release it simulates nodes of (its KubeVersion).
build_kwok() {
  local flags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
  build kwok "$KWOK_VERSION-k8s-$K8S_VERSION" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "$flags"
  build kwokctl "$KWOK_VERSION-k8s-$K8S_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION" "$flags"
}

build_helm() {
  build helm "$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

# kind, and the node image's Kubernetes, etcd and programs of this repository.
build_kind_node() {
  local etcd name
  build kind "$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION" "-s -w"
  # The suite's kubectl is the cluster's release.
  host_k8s kubectl
  for name in kubelet kubeadm kube-proxy kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    node_k8s "$name"
  done
  etcd=$(etcd_version)
  reuse "$BIN" "$NODE_BIN" etcd "$etcd"
  BIN=$NODE_BIN wrapped etcd go.etcd.io/etcd/server/v3 "$etcd" "$etcd" go.etcd.io/etcd/server/v3 "-s -w"
  go_program pause
  go_program runc-hostcaps
  netpol_program
}

build_coredns() {
  await_kubeadm
  local version
  version=$(kubeadm_image_tag coredns) || exit 1
  BIN=$NODE_BIN build coredns "$version" "github.com/coredns/coredns@$version" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$version"
}

tools=("$@")
if ((${#tools[@]} == 0)); then
  # influxd k8s kind, in two lanes: this one builds the Kubernetes components (one module, built
  # in turn), etcd, kind and the node's programs; the other what shares no module with them.
  # Both say what they build as they go.
  TOOLS_PEER=$$ bash "${BASH_SOURCE[0]}" influxd helm kwok local-path-provisioner coredns &
  other=$!
  # Leaving early (a failed build here, a signal) stops the other lane and its build.
  trap 'pkill -P "$other" 2>/dev/null; kill "$other" 2>/dev/null || true' EXIT
  tools=(control-plane kind-node)
fi
for tool in "${tools[@]}"; do
  case $tool in
    influxd) build influxd "$INFLUXDB_VERSION" "github.com/influxdata/influxdb/cmd/influxd@$INFLUXDB_VERSION" \
               "-X main.version=${INFLUXDB_VERSION#v}" ;;
    k8s) build_control_plane; build_kwok; build_helm ;;
    kind) build_kind_node; build_coredns; local_path_provisioner ;;
    control-plane) build_control_plane ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    kind-node) build_kind_node ;;
    coredns) build_coredns ;;
    telegraf) build telegraf "$TELEGRAF_VERSION" "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION" \
                "-s -w -X github.com/influxdata/telegraf/internal.Version=${TELEGRAF_VERSION#v}" "$TELEGRAF_TAGS" ;;
    pause | runc-hostcaps) go_program "$tool" ;;
    kind-netpol) netpol_program ;;
    local-path-provisioner) local_path_provisioner ;;
    *) die "unknown tool '$tool' (known: influxd, k8s, kind, telegraf; their parts: control-plane, kwok, helm, kind-node, coredns, pause, runc-hostcaps, kind-netpol, local-path-provisioner)" ;;
  esac
done
if [[ -n ${other:-} ]]; then
  wait "$other" || die "the other lane (influxd, helm, kwok, local-path-provisioner, coredns) failed: its error is above"
  trap - EXIT
fi
