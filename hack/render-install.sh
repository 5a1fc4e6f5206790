#!/usr/bin/env bash
# Regenerates manifests/install.yaml from the chart (a test fails when they drift apart), with
# hack/install-values.yaml: Secrets by name, created by the installer before applying.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/hack/tools.sh" k8s
helm="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor/bin/helm"
{
  cat <<'HEADER'
# Rendered from charts/conveyor by hack/render-install.sh: do not edit; edit the chart.
# Every namespaced object is in namespace "conveyor". The Secrets are yours to create first
# (nothing here holds a password); then apply:
#   kubectl create namespace conveyor
#   kubectl -n conveyor create secret generic conveyor-redis --from-literal=redis-password="$(openssl rand -hex 24)"
#   kubectl -n conveyor create secret generic conveyor-mqtt --from-literal=username=conveyor-ingestor --from-literal=password="$(openssl rand -hex 24)"
#   kubectl -n conveyor create secret generic conveyor-gateway-token --from-literal=api-token="$(openssl rand -hex 24)"
#   kubectl apply --server-side -f install.yaml
# On a cluster without the CRD yet, apply twice: the MessageQueues resolve once the CRD is established.
# Broker users beyond the ingestor: render with mqtt.devicesSecret set (helm template), see the chart's README.
# To remove: kubectl -n conveyor delete mq --all (while the operator runs), then kubectl delete -f install.yaml
HEADER
  "$helm" template conveyor "$ROOT/charts/conveyor" --namespace conveyor --include-crds --no-hooks \
    --kube-version 1.34.4 -f "$ROOT/hack/install-values.yaml"
} >"$ROOT/manifests/install.yaml"
echo "wrote manifests/install.yaml"
