// Per-Pod settings from annotations: the opt-in/opt-out switch and the config.meshlet.io/* overrides.
// Guarantees: every value is checked; all problems are reported together, and a Pod with one is refused, never injected with garbage.

import { isIP } from 'node:net';
import { parseOutboundNamespaces } from '../api/outbound-namespaces.ts';
import { LOG_LEVELS, type LogLevel, type ProxyResources } from './settings.ts';
import { DEFAULT_INBOUND_POLICIES, isDefaultInboundPolicy, type DefaultInboundPolicy } from '../api/default-inbound-policy.ts';

/** The switch, on a namespace label, a Pod label or a Pod annotation: enabled | disabled. */
export const INJECT_ANNOTATION = 'meshlet.io/inject';
/** Written on every injected Pod: re-injection sees it and leaves the Pod alone. */
export const INJECTED_ANNOTATION = 'meshlet.io/injected';
/** Prefix of the per-Pod overrides (as config.linkerd.io/* with Linkerd). */
export const CONFIG_PREFIX = 'config.meshlet.io/';

/** Every override, with what it takes (the README's table is this list). */
export const OVERRIDES = {
  'proxy-cpu-request': 'CPU quantity (e.g. 100m)',
  'proxy-cpu-limit': 'CPU quantity (e.g. 1); unset by default',
  'proxy-memory-request': 'memory quantity (e.g. 128Mi)',
  'proxy-memory-limit': 'memory quantity (e.g. 256Mi)',
  'log-level': LOG_LEVELS.join(' | '),
  'inbound-ports': "comma list of ports redirected to the proxy (default: the containers' TCP containerPorts)",
  'skip-inbound-ports': 'comma list of ports that bypass the proxy inbound',
  'skip-outbound-ports': 'comma list of destination ports that bypass the proxy outbound; replaces the default (443 and the database and mail ports: 25,443,587,3306,4444,5432,6379,9300,11211), "" for none',
  'skip-outbound-cidrs': 'comma list of destination CIDRs that bypass the proxy outbound, added to the default (169.254.0.0/16: cloud metadata servers)',
  'outbound-namespaces': "comma list of namespaces whose services the proxy needs besides its own: its config holds only those (less memory in a large mesh); \"\": its own only; unset: every namespace",
  'native-sidecar': 'true | false: the proxy as a native sidecar (init container) or a regular container',
  'outbound-passthrough': "true | false: the app's plain-HTTP requests for hosts outside the mesh go to those hosts (true), or get a 404 no-route (false); default: the cluster's, MESHLET_DEFAULT_OUTBOUND_PASSTHROUGH (true)",
  'default-inbound-policy': `${DEFAULT_INBOUND_POLICIES.join(' | ')}: who may call the Pod where no AuthorizationPolicy guards the port (default: the cluster's, MESHLET_DEFAULT_INBOUND_POLICY); all-unauthenticated also lets unmeshed (plaintext) clients in`,
} as const;
export type OverrideName = keyof typeof OVERRIDES;

export interface PodOverrides {
  resources: ProxyResources;
  logLevel?: LogLevel;
  inboundPorts?: number[];
  skipInboundPorts: number[];
  /** Set: replaces the injector's default (settings.skipOutboundPorts). */
  skipOutboundPorts?: number[];
  skipOutboundCidrs: string[];
  nativeSidecar?: boolean;
  /** Set: replaces the injector's default (settings.defaultInboundPolicy). */
  defaultInboundPolicy?: DefaultInboundPolicy;
  /** Set: replaces the injector's default (settings.outboundPassthrough). */
  outboundPassthrough?: boolean;
  /** Set: the proxy's view holds these namespaces' services besides its own (MESHLET_OUTBOUND_NAMESPACES). */
  outboundNamespaces?: string[];
}

/**
 * Kubernetes resource quantity: a decimal number (a leading + allowed, no negative: a resource cannot
 * be) and an optional SI / binary suffix or decimal exponent (`1e9`, `5E8`: the API server takes
 * them, so a Pod written so must not be refused here).
 */
const QUANTITY = /^\+?(\d+\.?\d*|\.\d+)(?:(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)|[eE]([+-]?\d+))?$/;
const SCALE: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** The value of a quantity (cores or bytes), or undefined when it is not one. */
export function quantityValue(q: string): number | undefined {
  const m = QUANTITY.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * (m[3] !== undefined ? 10 ** Number(m[3]) : (SCALE[m[2] ?? ''] ?? 1));
}

function portList(v: string, problems: string[], key: string): number[] {
  const out: number[] = [];
  for (const raw of v.split(',')) {
    const p = raw.trim();
    if (p === '') continue;
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 65535) problems.push(`${key}: ${JSON.stringify(p)} is not a port (1-65535)`);
    else if (!out.includes(n)) out.push(n);
  }
  return out;
}

function cidrList(v: string, problems: string[], key: string): string[] {
  const out: string[] = [];
  for (const raw of v.split(',')) {
    const c = raw.trim();
    if (c === '') continue;
    const [addr = '', bits, extra] = c.split('/');
    const family = isIP(addr);
    const max = family === 6 ? 128 : 32;
    const okBits = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= max);
    if (family === 0 || !okBits || extra !== undefined) problems.push(`${key}: ${JSON.stringify(c)} is not an IP address or CIDR`);
    else if (family === 6) problems.push(`${key}: ${JSON.stringify(c)}: IPv6 is not supported (meshlet-init installs IPv4 rules only)`);
    else if (!out.includes(c)) out.push(c);
  }
  return out;
}

/** Reads the config.meshlet.io/* annotations. `problems` lists every bad one (then the Pod is refused). */
export function readOverrides(annotations: Readonly<Record<string, unknown>>): { overrides: PodOverrides; problems: string[] } {
  const problems: string[] = [];
  const o: PodOverrides = { resources: {}, skipInboundPorts: [], skipOutboundCidrs: [] };
  for (const [key, raw] of Object.entries(annotations)) {
    if (!key.startsWith(CONFIG_PREFIX)) continue;
    const name = key.slice(CONFIG_PREFIX.length);
    if (!Object.hasOwn(OVERRIDES, name)) {
      problems.push(`${key}: unknown annotation (known: ${Object.keys(OVERRIDES).map((k) => CONFIG_PREFIX + k).join(', ')})`);
      continue;
    }
    const v = typeof raw === 'string' ? raw.trim() : '';
    const quantity = (field: keyof ProxyResources, kind: string) => {
      if (quantityValue(v) === undefined) problems.push(`${key}: ${JSON.stringify(v)} is not a ${kind} quantity (e.g. ${kind === 'CPU' ? '100m or 1' : '128Mi'})`);
      else o.resources[field] = v;
    };
    switch (name as OverrideName) {
      case 'proxy-cpu-request': quantity('cpuRequest', 'CPU'); break;
      case 'proxy-cpu-limit': quantity('cpuLimit', 'CPU'); break;
      case 'proxy-memory-request': quantity('memoryRequest', 'memory'); break;
      case 'proxy-memory-limit': quantity('memoryLimit', 'memory'); break;
      case 'log-level':
        if ((LOG_LEVELS as readonly string[]).includes(v)) o.logLevel = v as LogLevel;
        else problems.push(`${key}: ${JSON.stringify(v)} is not a log level (${LOG_LEVELS.join(', ')})`);
        break;
      case 'inbound-ports': o.inboundPorts = portList(v, problems, key); break;
      case 'skip-inbound-ports': o.skipInboundPorts = portList(v, problems, key); break;
      case 'skip-outbound-ports': o.skipOutboundPorts = portList(v, problems, key); break;
      case 'skip-outbound-cidrs': o.skipOutboundCidrs = cidrList(v, problems, key); break;
      case 'native-sidecar':
        if (v === 'true' || v === 'false') o.nativeSidecar = v === 'true';
        else problems.push(`${key}: ${JSON.stringify(v)} is not true or false`);
        break;
      case 'outbound-passthrough':
        if (v === 'true' || v === 'false') o.outboundPassthrough = v === 'true';
        else problems.push(`${key}: ${JSON.stringify(v)} is not true or false`);
        break;
      case 'outbound-namespaces': {
        const r = parseOutboundNamespaces(v);
        if (r.ok) o.outboundNamespaces = r.namespaces;
        else problems.push(`${key}: ${r.problem}`);
        break;
      }
      case 'default-inbound-policy':
        if (isDefaultInboundPolicy(v)) o.defaultInboundPolicy = v;
        else problems.push(`${key}: ${JSON.stringify(v)} is not a default inbound policy (${DEFAULT_INBOUND_POLICIES.join(', ')})`);
        break;
    }
  }
  return { overrides: o, problems };
}

/**
 * Requests and limits after overrides, checked the way the API server would (request ≤ limit),
 * but with a message that names the annotation to change.
 */
export function effectiveResources(defaults: ProxyResources, over: ProxyResources, problems: string[]): ProxyResources {
  const r: ProxyResources = { ...defaults, ...over };
  const pairs: Array<[keyof ProxyResources, keyof ProxyResources, string, string]> = [
    ['cpuRequest', 'cpuLimit', 'proxy-cpu-request', 'proxy-cpu-limit'],
    ['memoryRequest', 'memoryLimit', 'proxy-memory-request', 'proxy-memory-limit'],
  ];
  for (const [req, lim, reqName, limName] of pairs) {
    const a = r[req] === undefined ? undefined : quantityValue(r[req]);
    const b = r[lim] === undefined ? undefined : quantityValue(r[lim]);
    if (a !== undefined && b !== undefined && a > b) {
      problems.push(`${CONFIG_PREFIX}${reqName} ${r[req]} is more than the limit ${r[lim]}: raise ${CONFIG_PREFIX}${limName} too`);
    }
  }
  return r;
}
