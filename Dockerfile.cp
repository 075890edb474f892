# syntax=docker/dockerfile:1
# The meshlet control plane: CA (Certify and the config stream) on 8443, admin (/live, /ready,
# /metrics) on 9990, and the proxy injector webhook on 9443;
# all set in manifests/config.env, read as environment by the control plane (see
# manifests/control-plane/deployment.yaml).
#
#   docker build -f Dockerfile.cp -t ghcr.io/meshlet/control-plane:0.1.0 .
#
# Entrypoint: node runs control-plane/main.ts by type stripping (Node 24 strips erasable
# TypeScript by default), so the image ships the sources it runs and needs no build step. Unlike
# the proxy (one per Pod) the control plane is two processes per cluster, so the ~30 MB of RSS that
# stripping costs is not worth a compile step. Its heap cap is NODE_OPTIONS in the Deployment,
# beside the memory limit it must fit under. No arguments: each flag of `node control-plane/main.ts
# --help` falls back to a MESHLET_* variable, and the Deployment sets them (config.env); the CA is
# the Secret MESHLET_CA_SECRET. test/images/dockerfiles.test.ts runs this entrypoint.
#
# Bases: node:24-bookworm-slim (Node 24 LTS with npm) only to install dependencies; the image that
# runs is gcr.io/distroless/nodejs24-debian12: the same Node 24 on the same Debian 12, with no
# shell, no package manager and no npm: this process holds the mesh's signing key.
# (Pin both by digest in release builds.)

# --- deps: production dependencies only
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: of the two packages with install scripts, protobufjs' only prints version
# warnings and node's (dev) fetches a Node binary this image already has. test/images/ keeps the list.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- the image
FROM gcr.io/distroless/nodejs24-debian12 AS control-plane
WORKDIR /app
ENV NODE_ENV=production
# package.json makes the .ts files ES modules ("type": "module").
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY api/ ./api/
COPY control-plane/ ./control-plane/
# The proxy injector, served on 9443 by the same process.
COPY injector/ ./injector/
# distroless "nonroot" (65532); the Deployment's runAsUser says the same.
USER 65532:65532
EXPOSE 8443 9443 9990
ENTRYPOINT ["/nodejs/bin/node", "control-plane/main.ts"]
