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
step "node $(node --version)"
case "$(node --version)" in v24.*) ;; *) echo "meshlet needs Node 24 (run through npm so node_modules/.bin/node is used)"; exit 1 ;; esac
step "type-check (tsc --noEmit)"
npx tsc --noEmit -p .
step "lint (oxlint)"
npx oxlint --deny-warnings .
step "generated CRDs are current (scripts/gen-crds.ts --check)"
node scripts/gen-crds.ts --check
step "tests (tap)"
npx tap "$@"
step "done"
