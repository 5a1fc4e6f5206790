#!/usr/bin/env bash
# Vendors uPlot (MIT; a small, fast chart library built for large time series) into the
# dashboard's static files, from npm at a pinned version checked against npm's integrity hash.
# The files are committed: the dashboard needs no build step and no CDN. Run this only to move
# to another version (then update UPLOT_VERSION and UPLOT_INTEGRITY together);
# tests/gateway/test_vendored_files.py checks the committed files are this version's.
set -euo pipefail

UPLOT_VERSION=1.6.32
UPLOT_INTEGRITY=sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/services/gateway/conveyor_gateway/static/vendor"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null)
tarball="$work/uplot-$UPLOT_VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$got" != "$UPLOT_INTEGRITY" ]]; then
  echo "uplot@$UPLOT_VERSION from npm is not what was pinned: $got != $UPLOT_INTEGRITY" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$OUT"
cp "$work/package/dist/uPlot.iife.min.js" "$OUT/uPlot.iife.min.js"
cp "$work/package/dist/uPlot.min.css" "$OUT/uPlot.min.css"
cp "$work/package/LICENSE" "$OUT/uPlot.LICENSE"
echo "vendored uPlot $UPLOT_VERSION into ${OUT#"$ROOT"/}"
