#!/usr/bin/env bash
# Regenerates manifests/install.yaml from the chart (a test fails when they drift apart).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/hack/tools.sh" k8s
helm="${XDG_CACHE_HOME:-$HOME/.cache}/conveyor/bin/helm"
{
  echo "# Rendered from charts/conveyor by hack/render-install.sh: do not edit; edit the chart."
  echo "# kubectl create namespace conveyor && kubectl apply --server-side -f install.yaml"
  echo "# To remove: kubectl -n conveyor delete mq --all (while the operator runs), then kubectl delete -f install.yaml"
  "$helm" template conveyor "$ROOT/charts/conveyor" --namespace conveyor --include-crds --no-hooks --kube-version 1.34.4
} >"$ROOT/manifests/install.yaml"
echo "wrote manifests/install.yaml"
