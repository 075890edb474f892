// What the injector writes into Pods that is not decided per Pod: images, the control plane's
// address, the trust anchors, the mode (native sidecar or not, CNI or init container), defaults.
// Guarantees: one place for every default; the webhook (control plane env) and the CLI (flags) fill the same shape.

import type { DefaultInboundPolicy } from '../api/default-inbound-policy.ts';

/** The ports and UID the proxy and the interception script agree on (manifests/config.env, Dockerfile.proxy). */
export const PROXY_UID = 2102;
export const OUTBOUND_PORT = 4140;
export const INBOUND_PORT = 4143;
export const ADMIN_PORT = 4191;
export const ADMIN_PORT_NAME = 'meshlet-admin';
export const INBOUND_PORT_NAME = 'meshlet-inbound';
export const INIT_CONTAINER_NAME = 'meshlet-init';
/** The interception script inside settings.initImage (Dockerfile.init). */
export const INIT_COMMAND = ['/meshlet/intercept.sh'];
/** Where the distroless proxy image keeps node (the fallback mode's postStart hook runs it). */
export const PROXY_IMAGE_NODE = '/nodejs/bin/node';

export const DEFAULT_PROXY_IMAGE = 'ghcr.io/meshlet/proxy:0.1.0';
export const DEFAULT_INIT_IMAGE = 'ghcr.io/meshlet/proxy-init:0.1.0';
export const DEFAULT_CONTROL_PLANE = 'https://meshlet-control-plane.meshlet-system.svc:8443';
export const DEFAULT_CONTROL_PLANE_IDENTITY = 'spiffe://cluster.local/ns/meshlet-system/sa/meshlet-control-plane';
export const DEFAULT_AUDIENCE = 'meshlet';

/**
 * Destination ports whose outbound connections bypass the proxy in every Pod that does not set
 * config.meshlet.io/skip-outbound-ports (which replaces this list, as Linkerd's and Istio's
 * annotations replace their defaults). The proxy carries plaintext HTTP only and cannot pass
 * other bytes on to where they were going (Node cannot read a redirected connection's original
 * destination), so these go out directly, as they keep working under Linkerd or Istio:
 * - 443: the app's own HTTPS (cloud APIs, the Kubernetes API at kubernetes.default.svc:443);
 * - the ports Linkerd treats as opaque (not HTTP) by default, the databases and caches an app
 *   calls: SMTP 25 and 587 and MySQL 3306 speak first (the client would wait for a greeting the
 *   proxy never sends, until the proxy's 65 s idle timeout), Galera 4444, PostgreSQL 5432, Redis
 *   6379, Elasticsearch transport 9300 and memcached 11211 are not HTTP (their first bytes would
 *   get an HTTP 400 from the proxy). Linkerd up to 2.9, which like meshlet could not carry opaque
 *   TCP, skipped 25, 443, 587, 3306, 5432 and 11211 by default for the same reason.
 * The proxy's own connections (mTLS to other proxies, the control plane on 8443) are exempt by UID
 * whatever this says.
 */
export const DEFAULT_SKIP_OUTBOUND_PORTS: readonly number[] = Object.freeze([25, 443, 587, 3306, 4444, 5432, 6379, 9300, 11211]);

/**
 * Destination CIDRs whose outbound connections bypass the proxy in every Pod (annotations add
 * more): the link-local range, where the clouds' instance metadata servers answer plain HTTP
 * (169.254.169.254: the credentials of AWS, Google Cloud and Azure SDKs) and a node-local DNS
 * cache listens (169.254.20.10). No Service has such an address, so through the proxy every one of
 * those calls was a 404 `no-route`, and an injected app's cloud SDK got no credentials.
 */
export const DEFAULT_SKIP_OUTBOUND_CIDRS: readonly string[] = Object.freeze(['169.254.0.0/16']);

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface ProxyResources {
  cpuRequest?: string;
  cpuLimit?: string;
  memoryRequest?: string;
  memoryLimit?: string;
}

export interface InjectSettings {
  proxyImage: string;
  initImage: string;
  /** https://host:port of the control plane (comma-separated replicas allowed, as --control-plane). */
  controlPlane: string;
  controlPlaneIdentity: string;
  /** PEM bundle the proxy checks the control plane against (env MESHLET_TRUST_ANCHORS_PEM). */
  trustAnchorsPem: string;
  /** Audience of the projected service-account token (what Certify's TokenReview asks for). */
  audience: string;
  /**
   * true (default): the proxy is an init container with restartPolicy Always (Kubernetes ≥ 1.29),
   * so it starts before the app and Jobs complete. false: a regular first container whose
   * postStart hook holds the app until the proxy is ready.
   */
  nativeSidecar: boolean;
  /** true: a CNI plugin installs the interception rules; no meshlet-init (NET_ADMIN) container. */
  cni: boolean;
  resources: ProxyResources;
  logLevel: LogLevel;
  /** Outbound CIDRs never redirected, for every Pod (default: link-local, DEFAULT_SKIP_OUTBOUND_CIDRS); annotations add more. */
  skipOutboundCidrs: readonly string[];
  /** Destination ports that bypass the proxy in Pods without config.meshlet.io/skip-outbound-ports (which replaces them). */
  skipOutboundPorts: readonly number[];
  /**
   * Who may call an injected Pod where no AuthorizationPolicy guards the port, in Pods without
   * config.meshlet.io/default-inbound-policy (which replaces it). Default all-authenticated: mTLS peers only.
   */
  defaultInboundPolicy: DefaultInboundPolicy;
  /**
   * Whether the proxy passes the app's plain-HTTP requests for hosts outside the mesh through
   * (proxy/outbound/passthrough.ts), in Pods without config.meshlet.io/outbound-passthrough (which
   * replaces it). Default true, as Istio's ALLOW_ANY and Linkerd: injecting must not cut an app off
   * from the HTTP services it calls outside the cluster.
   */
  outboundPassthrough: boolean;
  /** The ports: tests may move them; a cluster keeps the defaults (the images expose these). */
  ports: { outbound: number; inbound: number; admin: number };
  proxyUid: number;
}

/**
 * Defaults. No CPU limit: a throttled sidecar adds latency to every request of the app (Linkerd
 * and Istio leave it unset too); memory is bounded (the heap cap is half the memory limit: heapCapMb).
 */
export function defaultSettings(o: Partial<InjectSettings> & { trustAnchorsPem: string }): InjectSettings {
  return {
    proxyImage: DEFAULT_PROXY_IMAGE,
    initImage: DEFAULT_INIT_IMAGE,
    controlPlane: DEFAULT_CONTROL_PLANE,
    controlPlaneIdentity: DEFAULT_CONTROL_PLANE_IDENTITY,
    audience: DEFAULT_AUDIENCE,
    nativeSidecar: true,
    cni: false,
    resources: { cpuRequest: '100m', memoryRequest: '128Mi', memoryLimit: '256Mi' },
    logLevel: 'info',
    skipOutboundCidrs: DEFAULT_SKIP_OUTBOUND_CIDRS,
    skipOutboundPorts: DEFAULT_SKIP_OUTBOUND_PORTS,
    defaultInboundPolicy: 'all-authenticated',
    outboundPassthrough: true,
    ports: { outbound: OUTBOUND_PORT, inbound: INBOUND_PORT, admin: ADMIN_PORT },
    proxyUid: PROXY_UID,
    ...o,
  };
}

/** "true"/"false" (and the usual spellings) from an environment variable or flag; undefined when unset. */
export function parseBool(v: string | undefined, what: string): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw new Error(`${what}: expected true or false, got ${JSON.stringify(v)}`);
}

/** A comma list of ports (1-65535) from an environment variable: "" is none; undefined when unset. */
export function parsePorts(v: string | undefined, what: string): number[] | undefined {
  if (v === undefined) return undefined;
  const out: number[] = [];
  for (const raw of v.split(',')) {
    const p = raw.trim();
    if (p === '') continue;
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) throw new Error(`${what}: ${JSON.stringify(p)} is not a port (1-65535); want a comma list such as 443,8443, or empty for none`);
    if (!out.includes(n)) out.push(n);
  }
  return out;
}
