#!/usr/bin/env bash
# `npm test`: everything a fresh machine needs, then every check. Idempotent and safe to re-run:
# installs missing Debian packages, builds the Kubernetes test binaries once (cached outside the
# repo), type-checks, lints, checks generated files, and runs every test with tap.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

step "Debian packages (scripts/install-deps.sh)"
bash scripts/install-deps.sh
step "Kubernetes test binaries (scripts/kube/build.sh; a cold build takes 10-20 min, once)"
bash scripts/kube/build.sh
step "Jaeger, the OTLP receiver of the trace tests (scripts/jaeger/build.sh; ~5 min cold, once)"
bash scripts/jaeger/build.sh
step "node $(node --version)"
case "$(node --version)" in v24.*) ;; *) echo "meshlet needs Node 24 (run through npm so node_modules/.bin/node is used)"; exit 1 ;; esac
step "type-check (tsc --noEmit)"
npx tsc --noEmit -p .
step "lint (oxlint)"
npx oxlint --deny-warnings .
step "generated CRDs are current (scripts/gen-crds.ts --check)"
node scripts/gen-crds.ts --check
step "generated dashboards and alert rules are current (scripts/gen-observe.ts --check)"
node scripts/gen-observe.ts --check
step "tests (tap)"
mkdir -p .tap
set +e
npx tap "$@" 2>&1 | tee .tap/last-run.log
code=${PIPESTATUS[0]}
set -e
if [ "$code" -ne 0 ]; then
  # A test process killed by a signal before it reported anything is rerun once, loudly; a run
  # with any real failure is not rerun.
  crashed=$(node scripts/crashed-tests.ts .tap/last-run.log)
  if [ -n "$crashed" ]; then
    echo "== rerunning test files whose process crashed (not a test failure): $crashed"
    # shellcheck disable=SC2086
    npx tap $crashed
  else
    exit "$code"
  fi
fi
step "done"
