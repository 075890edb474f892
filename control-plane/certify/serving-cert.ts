// The control plane's own TLS identity for Certify (and later the config stream): a leaf from the
// CA it serves. Guarantees: a fresh key each time, kept in memory only; renewed at 70 % of its life.

import { generateKeyPair, makeCsr, signLeaf, spiffeId, trustBundle, type CaState, type SpiffeId } from '../ca/index.ts';

export const CONTROL_PLANE_SERVICE_ACCOUNT = 'meshlet-control-plane';
export const DEFAULT_SYSTEM_NAMESPACE = 'meshlet-system';

export interface ServingNames {
  /** Namespace the control plane runs in (its identity and Service DNS names). */
  namespace: string;
  /** Service name; DNS SANs <svc>, <svc>.<ns>, <svc>.<ns>.svc, <svc>.<ns>.svc.<clusterDomain>. */
  service: string;
  clusterDomain: string;
  /** More DNS names (default localhost) and IP addresses (default 127.0.0.1, ::1). */
  extraDns: readonly string[];
  ips: readonly string[];
}

export const DEFAULT_SERVING_NAMES: ServingNames = Object.freeze({
  namespace: DEFAULT_SYSTEM_NAMESPACE,
  service: CONTROL_PLANE_SERVICE_ACCOUNT,
  clusterDomain: 'cluster.local',
  extraDns: ['localhost'],
  ips: ['127.0.0.1', '::1'],
});

/** spiffe://<td>/ns/<namespace>/sa/meshlet-control-plane: what a proxy checks Certify's server against. */
export function controlPlaneIdentity(trustDomain: string, namespace: string = DEFAULT_SYSTEM_NAMESPACE): SpiffeId {
  return spiffeId({ trustDomain, namespace, serviceAccount: CONTROL_PLANE_SERVICE_ACCOUNT });
}

export function servingDnsNames(n: ServingNames): string[] {
  const base = [n.service, `${n.service}.${n.namespace}`, `${n.service}.${n.namespace}.svc`, `${n.service}.${n.namespace}.svc.${n.clusterDomain}`];
  return [...new Set([...base, ...n.extraDns])];
}

export interface ServingCredentials {
  /** Leaf then issuer, PEM: the TLS `cert` option. */
  certChainPem: string;
  keyPem: string;
  identity: SpiffeId;
  serialHex: string;
  notBeforeMs: number;
  notAfterMs: number;
  /** The trust bundle it chains to (clients verify against these anchors). */
  bundlePems: string[];
}

export function makeServingCredentials(state: CaState, names: ServingNames, o: { now: number; ttlMs?: number }): ServingCredentials {
  const { privateKey } = generateKeyPair();
  const identity = controlPlaneIdentity(state.trustDomain, names.namespace);
  const leaf = signLeaf({
    issuer: state.issuer, csrPem: makeCsr({ privateKey }), identity, now: o.now,
    ttlMs: Math.min(o.ttlMs ?? state.leafTtlMs, state.leafTtlMs),
    dnsSans: servingDnsNames(names), ipSans: names.ips,
  });
  return {
    certChainPem: leaf.certPem + state.issuer.certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    identity, serialHex: leaf.serialHex, notBeforeMs: leaf.notBeforeMs, notAfterMs: leaf.notAfterMs,
    bundlePems: trustBundle(state),
  };
}

/** When to replace the serving certificate: 70 % into its life (wall ms). */
export function servingRenewAtMs(c: { notBeforeMs: number; notAfterMs: number }): number {
  return c.notBeforeMs + 0.7 * (c.notAfterMs - c.notBeforeMs);
}
