#!/usr/bin/env bash
# Builds Jaeger (v2: the OpenTelemetry Collector with Jaeger's storage and query extensions) from
# the Go module proxy, into a cache folder OUTSIDE the repo:
#
#   ${MESHLET_JAEGER_CACHE:-$HOME/.cache/meshlet/jaeger}/<JAEGER_VERSION>/jaeger
#
# test/observe/traces.test.ts runs it as the independent OTLP receiver: OTLP/HTTP in, in-memory
# storage, Jaeger's query API out. Idempotent: exits 0 at once when the binary for the pinned
# version is there. Cold, on 2 cores: ~30 s of module downloads (beyond what the kube build
# fetched), then compiling: 4 min 25 s with the Go build cache the kube build leaves, 6 min 20 s
# with an empty one (on a busy machine); ~2.2 GB peak RSS.
#
# The wrapper module (tools/jaeger-bin/go.mod, go.sum: `tool github.com/jaegertracing/jaeger/cmd/jaeger`)
# is committed; to move versions: cd tools/jaeger-bin && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@vX
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WRAP="$REPO/tools/jaeger-bin"
JAEGER_VERSION="$(awk '$1=="github.com/jaegertracing/jaeger"{print $2; exit}' "$WRAP/go.mod")"
[[ -n "$JAEGER_VERSION" ]] || { echo "jaeger build: no github.com/jaegertracing/jaeger require in $WRAP/go.mod" >&2; exit 1; }
OUT="${MESHLET_JAEGER_CACHE:-$HOME/.cache/meshlet/jaeger}/$JAEGER_VERSION"
log() { printf '[jaeger-build] %s\n' "$*"; }

ok() { [[ -x "$OUT/jaeger" ]] && [[ "$(cat "$OUT/.built" 2>/dev/null)" == "$JAEGER_VERSION" ]]; }
if ok; then
  log "up to date: $OUT/jaeger ($JAEGER_VERSION)"
  exit 0
fi

command -v go >/dev/null || { echo "jaeger build: go is not installed (Go >= 1.26 needed)" >&2; exit 1; }
mkdir -p "$OUT"
exec 9>"$OUT/.build.lock"
if ! flock -n 9; then
  log "another build holds $OUT/.build.lock; waiting"
  flock 9
  ok && exit 0
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"
T0=$(date +%s)
log "building jaeger $JAEGER_VERSION ($(go version)); output: $OUT"
(cd "$WRAP" && go build -trimpath -ldflags "-s -w" -o "$OUT/.jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
mv -f "$OUT/.jaeger.tmp" "$OUT/jaeger"
echo "$JAEGER_VERSION" >"$OUT/.built"
log "done in $(( $(date +%s) - T0 )) s: $OUT/jaeger"
