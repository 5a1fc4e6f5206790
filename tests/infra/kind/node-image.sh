#!/usr/bin/env bash
# The kind node image, made on this machine with no registry: conveyor.local/kind-node:<k8s>.
#
#   1. the node's operating system (tests/infra/kind/node/Dockerfile FROM the local Debian base):
#      systemd, Debian's containerd, runc and CNI plugins, the node's entrypoint and units
#   2. the Kubernetes binaries, built from the Go module proxy by `hack/tools.sh kind`:
#      kubelet, kubeadm, kubectl into the node; kube-apiserver, kube-controller-manager,
#      kube-scheduler, kube-proxy, etcd, CoreDNS and pause as images (tests/infra/kind/images)
#      under the names `kubeadm config images list` gives; kind-netpol (tests/infra/kind/netpol), the
#      network agent (pod routes, NetworkPolicies) that /kind/manifests/default-cni.yaml runs, and rancher's
#      local-path-provisioner, which /kind/manifests/default-storage.yaml runs, as images too
#   3. those images imported into the node's containerd (not unpacked; containerd unpacks
#      them at first use), and the result committed as the node image
#
# Then `kind create cluster --image conveyor.local/kind-node:v1.37.2` needs nothing from a
# registry. Cached: each step is skipped when its inputs have not changed (the node image is
# labelled with a digest of them); a line of progress per step.
#
#   tests/infra/kind/node-image.sh           build (or find) the node image; prints its name last
#   tests/infra/kind/node-image.sh --name    only print the node image's name
#   CONVEYOR_K8S_VERSION=v1.34.4 tests/infra/kind/node-image.sh   another Kubernetes release
#                                            (default: hack/tools.sh's, the newest served)
set -euo pipefail

say() { printf '[kind-node] %s\n' "$*" >&2; }
die() { printf '[kind-node] error: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor"
WORK="$CACHE/kind-node"
NODE_BIN="$WORK/bin"
BASE_IMAGE=conveyor.local/debian:bookworm
# hack/tools.sh's Kubernetes release (CONVEYOR_K8S_VERSION, else the newest served).
K8S_VERSION=${CONVEYOR_K8S_VERSION:-$(sed -n 's/^K8S_VERSION=${CONVEYOR_K8S_VERSION:-\(.*\)}$/\1/p' "$ROOT/hack/tools.sh")}
[[ $K8S_VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] \
  || die "CONVEYOR_K8S_VERSION must be a Kubernetes release such as v1.37.2 or v1.34.4, not '$K8S_VERSION'"
export CONVEYOR_K8S_VERSION=$K8S_VERSION
NODE_IMAGE=${KIND_NODE_IMAGE:-conveyor.local/kind-node:$K8S_VERSION}
# conveyor.local/kind-node-os:bookworm for the default name; a node image named otherwise has
# its own, so that two checkouts can build theirs side by side.
OS_IMAGE=${NODE_IMAGE%%:*}-os:bookworm

# shellcheck source=hack/lib/docker.sh
source "$ROOT/hack/lib/docker.sh"

if [[ ${1:-} == --name ]]; then
  echo "$NODE_IMAGE"
  exit 0
fi

# build_image TAG DOCKERFILE CONTEXT [BUILD ARGS...]: docker build with its log kept.
build_image() {
  local tag=$1 dockerfile=$2 context=$3
  shift 3
  docker_build "$WORK/build-$(basename "${tag%%:*}").log" "$tag" -f "$dockerfile" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" "$@" "$context"
}

image_id() { docker image inspect --format '{{.Id}}' "$1"; }

# component_images: kubeadm's list of images, one "image binary" pair per line.
component_images() {
  local image name
  "$NODE_BIN/kubeadm-$K8S_VERSION" config images list --kubernetes-version "$K8S_VERSION" 2>/dev/null |
    while read -r image; do
      name=${image##*/}
      echo "$image ${name%%:*}"
    done
}

# A context directory holding just the files one image needs (docker sends all of it).
context_with() {
  local dir="$WORK/context/$1"
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  local file
  for file in "$@"; do
    cp -L "$file" "$dir/"
  done
  echo "$dir"
}

mkdir -p "$WORK"
bash "$ROOT/hack/images.sh" base
say "Kubernetes $K8S_VERSION binaries (hack/tools.sh kind; the first build takes several minutes)"
bash "$ROOT/hack/tools.sh" kind

say "the node's operating system: $OS_IMAGE (tests/infra/kind/node)"
build_image "$OS_IMAGE" "$ROOT/tests/infra/kind/node/Dockerfile" "$ROOT/tests/infra/kind/node"

images=()
while read -r image name; do
  case $name in
    pause)
      context=$(context_with pause "$NODE_BIN/pause")
      build_image "$image" "$ROOT/tests/infra/kind/images/pause.Dockerfile" "$context" ;;
    kube-proxy)
      context=$(context_with kube-proxy "$NODE_BIN/kube-proxy" "$ROOT/tests/infra/kind/images/kube-proxy-wrapper")
      build_image "$image" "$ROOT/tests/infra/kind/images/kube-proxy.Dockerfile" "$context" ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | etcd | coredns)
      context=$(context_with "$name" "$NODE_BIN/$name")
      build_image "$image" "$ROOT/tests/infra/kind/images/binary.Dockerfile" "$context" --build-arg "NAME=$name" ;;
    *) die "kubeadm $K8S_VERSION wants an image this script cannot build: $image" ;;
  esac
  say "component image $image"
  images+=("$image")
done < <(component_images)
((${#images[@]} >= 7)) || die "kubeadm listed ${#images[@]} images; is $NODE_BIN/kubeadm-$K8S_VERSION a working kubeadm?"
# The network agent: kind-netpol FROM the kube-proxy image (the same iptables), under
# the name the DaemonSet in default-cni.yaml runs: kube-network-policies' version in its go.mod.
netpol_version=$(sed -n 's|^\s*sigs\.k8s\.io/kube-network-policies \(v[^ ]*\).*|\1|p' "$ROOT/tests/infra/kind/netpol/go.mod")
netpol_image=conveyor.local/kind-netpol:$netpol_version
grep -q "image: $netpol_image\$" "$ROOT/tests/infra/kind/node/default-cni.yaml" \
  || die "tests/infra/kind/node/default-cni.yaml must run $netpol_image (the version tests/infra/kind/netpol/go.mod pins)"
context=$(context_with kind-netpol "$NODE_BIN/kind-netpol")
build_image "$netpol_image" "$ROOT/tests/infra/kind/images/netpol.Dockerfile" "$context" \
  --build-arg "KUBE_PROXY_IMAGE=$(printf '%s\n' "${images[@]}" | grep '/kube-proxy:')"
say "NetworkPolicy image $netpol_image"
images+=("$netpol_image")
# Volumes: local-path-provisioner, under the name default-storage.yaml runs (which also runs
# it as the helper pod that makes and removes a volume's directory: the Debian base has sh).
local_path_version=$(sed -n 's/^LOCAL_PATH_VERSION=//p' "$ROOT/hack/tools.sh")
local_path_image=conveyor.local/local-path-provisioner:$local_path_version
grep -q "image: $local_path_image\$" "$ROOT/tests/infra/kind/node/default-storage.yaml" \
  || die "tests/infra/kind/node/default-storage.yaml must run $local_path_image (hack/tools.sh's LOCAL_PATH_VERSION)"
context=$(context_with local-path-provisioner "$NODE_BIN/local-path-provisioner")
build_image "$local_path_image" "$ROOT/tests/infra/kind/images/binary.Dockerfile" "$context" \
  --build-arg "NAME=local-path-provisioner"
say "volume provisioner image $local_path_image"
images+=("$local_path_image")
# containerd's sandbox image is the pause image this release's kubeadm names (written below).
pause_image=$(printf '%s\n' "${images[@]}" | grep '/pause:') || die "kubeadm $K8S_VERSION lists no pause image"

# The node image is current when it carries the digest of everything it is made of.
inputs=$( {
  image_id "$OS_IMAGE"
  for image in "${images[@]}"; do image_id "$image"; done
  # The binaries copied in, and this script (how they are put together).
  sha256sum "$NODE_BIN"/{kubelet,kubeadm,kubectl}-"$K8S_VERSION" "$NODE_BIN/runc-hostcaps" "${BASH_SOURCE[0]}" |
    cut -d' ' -f1
} | sha256sum | cut -d' ' -f1)
if [[ $(docker image inspect --format '{{index .Config.Labels "conveyor.inputs"}}' "$NODE_IMAGE" 2>/dev/null) == "$inputs" ]]; then
  say "up to date: $NODE_IMAGE"
  echo "$NODE_IMAGE"
  exit 0
fi

say "saving ${#images[@]} images for the node's containerd"
archive="$WORK/images.tar"
docker save -o "$archive.part" "${images[@]}"
mv "$archive.part" "$archive"

say "assembling $NODE_IMAGE"
builder="conveyor-kind-node-build-$$"
trap 'docker rm -f "$builder" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$builder" --entrypoint sleep -v "$archive:/kind/images.tar:ro" "$OS_IMAGE" infinity >/dev/null
for name in kubelet kubeadm kubectl; do
  docker cp -L "$NODE_BIN/$name-$K8S_VERSION" "$builder:/usr/bin/$name"
done
docker cp -L "$NODE_BIN/runc-hostcaps" "$builder:/usr/local/bin/runc-hostcaps"
# containerd runs here only to take the images into its content store (--no-unpack: no
# snapshotter, so no privileges needed); it unpacks them when the node first runs them.
if ! docker exec "$builder" bash -euc "
  echo -n '$K8S_VERSION' >/kind/version
  sed -i 's|^  sandbox_image = .*|  sandbox_image = \"$pause_image\"|' /etc/containerd/config.toml
  grep -qF 'sandbox_image = \"$pause_image\"' /etc/containerd/config.toml
  containerd >/tmp/containerd.log 2>&1 & containerd=\$!
  for _ in \$(seq 1 50); do [[ -S /run/containerd/containerd.sock ]] && break; sleep 0.2; done
  ctr --namespace k8s.io images import --no-unpack --all-platforms --digests /kind/images.tar >/dev/null
  ctr --namespace k8s.io images list --quiet | grep -v '^sha256:' >/kind/images
  kill \$containerd && wait \$containerd || true
  rm -rf /run/containerd /tmp/containerd.log
" >"$WORK/assemble.log" 2>&1; then
  cat "$WORK/assemble.log" >&2
  die "importing the images into the node's containerd failed"
fi
for image in "${images[@]}"; do
  docker exec "$builder" grep -qxF "$image" /kind/images || die "$image is missing from the node's containerd"
done
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' \
  --change "LABEL conveyor.inputs=$inputs" \
  --change "LABEL io.x-k8s.kind.version=$K8S_VERSION" \
  "$builder" "$NODE_IMAGE" >/dev/null
# The node image this one replaces, now untagged, is 1.4 GB of nothing.
docker image prune --force --filter label=conveyor.inputs >/dev/null
say "built $NODE_IMAGE ($(docker image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
echo "$NODE_IMAGE"
