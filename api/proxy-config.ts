// The proxy's config document: what a proxy needs to route, split, balance, retry, time out,
// break circuits and authorize. Read from a file today, pushed by the control plane later; both
// go through `parseProxyConfig`, which returns every problem with its path or a frozen value.
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

const Duration = (description: string) =>
  Type.Number({ minimum: 0, maximum: 3_600_000, description: `${description} (milliseconds)` });

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;
const Method = Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)));

/** spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> */
export const SPIFFE_ID_PATTERN = '^spiffe://[a-z0-9.-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?/sa/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$';
const SpiffeId = Type.String({ pattern: SPIFFE_ID_PATTERN });

/** A Kubernetes-style DNS label or dotted name: `api`, `api.shop`. */
const ServiceName = Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$', maxLength: 253 });
/** A service's own name: `api.shop`, or for one of a Kubernetes Service's other ports `api.shop:9090` (with `port`). */
const ServiceDocName = Type.String({ pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[1-9][0-9]{0,4})?$', maxLength: 253 });

export const Endpoint = Type.Object(
  {
    /** host:port (IPv4, [IPv6] or a name) the proxy connects to. */
    address: Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' }),
    /** The SPIFFE ID the endpoint must present. Absent: plaintext (an unmeshed endpoint). */
    identity: Type.Optional(SpiffeId),
    /** Not-ready endpoints are kept (for status) but never picked. Default true. */
    ready: Type.Optional(Type.Boolean()),
    /** Free-form labels shown in metrics and status (pod, version...). */
    labels: Type.Optional(Type.Record(Type.String(), Type.String())),
  },
  { additionalProperties: false },
);

export const PathMatch = Type.Union([
  Type.Object({ exact: Type.String({ pattern: '^/' }) }, { additionalProperties: false }),
  Type.Object({ prefix: Type.String({ pattern: '^/' }) }, { additionalProperties: false }),
]);

export const HeaderMatch = Type.Object(
  {
    name: Type.String({ pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$' }),
    /** Exact value; absent means "present with any value". */
    value: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export const RouteMatch = Type.Object(
  {
    path: Type.Optional(PathMatch),
    method: Type.Optional(Method),
    headers: Type.Optional(Type.Array(HeaderMatch, { maxItems: 16 })),
  },
  { additionalProperties: false },
);

export const WeightedBackend = Type.Object(
  {
    service: ServiceName,
    /** Relative integer weight; 0 takes no traffic. */
    weight: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
  },
  { additionalProperties: false },
);

export const Timeouts = Type.Object(
  {
    connect: Type.Optional(Duration('TCP/TLS connect timeout; default 1000')),
    perTry: Type.Optional(Duration('per attempt, until response headers; default 10000')),
    request: Type.Optional(Duration('whole request including retries; default 15000')),
  },
  { additionalProperties: false },
);

/**
 * Defaults the proxy applies where a document is silent (proxy/policy/ takes them from here). They
 * stand beside the schema so validation checks the values the proxy will run, defaults included.
 */
export const DEFAULT_BACKOFF: Readonly<{ base: number; cap: number }> = Object.freeze({ base: 25, cap: 250 });
export const DEFAULT_EJECTION: Readonly<{ baseEjection: number; maxEjection: number }> = Object.freeze({ baseEjection: 1000, maxEjection: 60_000 });

export const RetryPolicy = Type.Object(
  {
    /** Total attempts including the first; 1 disables retries. Default 3. */
    attempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
    /** Retry these response statuses. Default [502, 503, 504]. */
    statuses: Type.Optional(Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { maxItems: 32 })),
    /**
     * Retry a gRPC call whose answer is trailers-only with one of these grpc-status codes (an HTTP
     * 200 whose headers end the stream: nothing of it reached the caller yet). gRPC calls are POST, so
     * the route's methods must include POST. Default [14] (UNAVAILABLE).
     */
    grpcStatuses: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 16 }), { maxItems: 16 })),
    /** Methods that may be retried. Default GET, HEAD, OPTIONS, PUT, DELETE. */
    methods: Type.Optional(Type.Array(Method, { maxItems: 9 })),
    backoff: Type.Optional(
      Type.Object(
        { base: Type.Optional(Duration('default 25')), cap: Type.Optional(Duration('default 250')) },
        { additionalProperties: false },
      ),
    ),
    budget: Type.Optional(
      Type.Object(
        {
          /** Retries may add this fraction of requests. Default 0.2. */
          ratio: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
          /** Plus this many retries per second regardless. Default 10. */
          minPerSecond: Type.Optional(Type.Number({ minimum: 0, maximum: 100_000 })),
          /** Window over which requests and retries are counted. Default 10000. */
          window: Type.Optional(Type.Number({ minimum: 1000, maximum: 600_000 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Request bodies larger than this are sent once, never buffered for replay. Default 65536. */
    maxBufferedBody: Type.Optional(Type.Integer({ minimum: 0, maximum: 16 * 1024 * 1024 })),
  },
  { additionalProperties: false },
);

/** A route's retry: the service's settings but the budget, which is per service (one per backend service). */
export const RouteRetryPolicy = Type.Omit(RetryPolicy, ['budget'], { additionalProperties: false });

export const BreakerPolicy = Type.Object(
  {
    /** Consecutive failures that eject an endpoint. Default 7. */
    consecutiveFailures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    /** First ejection; doubles per consecutive ejection. Default 1000. */
    baseEjection: Type.Optional(Duration('default 1000')),
    /** Longest ejection. Default 60000. */
    maxEjection: Type.Optional(Duration('default 60000')),
    /** Most requests in flight to the service; more wait as pending. Default 1000. */
    maxInFlight: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    /** Most requests waiting for an in-flight slot; more get 503 at once. Default 1000. */
    maxPending: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
);

export const Route = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 128 }),
    /** Every listed match must hold (AND); an empty/absent match matches everything. */
    match: Type.Optional(RouteMatch),
    /** Weighted split among backend services; absent: the service itself. */
    backends: Type.Optional(Type.Array(WeightedBackend, { minItems: 1, maxItems: 64 })),
    timeouts: Type.Optional(Timeouts),
    retry: Type.Optional(RouteRetryPolicy),
  },
  { additionalProperties: false },
);

/** Most routes a service may have (the proxy tries them in order on every request). */
export const MAX_ROUTES = 256;
/** Most endpoints a service may have in one config. */
export const MAX_ENDPOINTS = 10_000;
/** Most services one config holds (a view of a larger mesh keeps the nearest: translate.ts). */
export const MAX_SERVICES = 10_000;
/** Most inbound AuthorizationPolicies one config holds. */
export const MAX_POLICIES = 1024;
/**
 * Most bytes of one config document, as a file (--config) or as one line of the config stream:
 * the proxy reads no more before it refuses it. A view of 10 000 services with 3 meshed
 * endpoints each (hosts, identities, pod/workload/version labels) is 6.1 MiB of JSON: 16 MiB
 * leaves room for more endpoints and routes while a hostile or broken sender cannot grow the
 * proxy's memory without bound.
 */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export const Service = Type.Object(
  {
    /** Canonical name (`api.shop`), also the destination service label in metrics. */
    name: ServiceDocName,
    /** Host names (without port) that address this service; the name is always one of them. */
    hosts: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 32 })),
    /**
     * Only requests whose Host names this port reach this service (`api.shop:9090`, `api:9090`);
     * the others go to the service of the same hosts without `port`. For a Kubernetes Service's
     * ports other than its HTTP one: named `<service>:<port>`, endpoints on that port's target.
     */
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    endpoints: Type.Array(Endpoint, { maxItems: MAX_ENDPOINTS }),
    /** Ordered; first match wins. Absent: one catch-all route to the service itself. */
    routes: Type.Optional(Type.Array(Route, { maxItems: MAX_ROUTES })),
    timeouts: Type.Optional(Timeouts),
    retry: Type.Optional(RetryPolicy),
    breaker: Type.Optional(BreakerPolicy),
  },
  { additionalProperties: false },
);

export const InboundPort = Type.Object(
  {
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** Accept plaintext from unmeshed clients on this port. Default false (strict mTLS). */
    permissive: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const AuthorizationRule = Type.Object(
  {
    /** Exact SPIFFE IDs, `spiffe://<td>/ns/<ns>/sa/*` for a namespace, or `*` for any authenticated peer. */
    identities: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 256 }),
    methods: Type.Optional(Type.Array(Method, { maxItems: 9 })),
    /** Exact paths, or prefixes ending in `*` (`/billing/*`). Absent: every path. */
    paths: Type.Optional(Type.Array(Type.String({ pattern: '^/[^*]*\\*?$' }), { maxItems: 256 })),
  },
  { additionalProperties: false },
);

export const AuthorizationPolicyConfig = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    /** Inbound port this policy guards; absent: every port. */
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** A request is allowed when any rule allows it. */
    rules: Type.Array(AuthorizationRule, { maxItems: 256 }),
  },
  { additionalProperties: false },
);

export const DEFAULT_AUTHZ = ['all-authenticated', 'all', 'deny'] as const;

export const Inbound = Type.Object(
  {
    ports: Type.Optional(Type.Array(InboundPort, { maxItems: 64 })),
    /** Where no policy guards a port. Default all-authenticated (plaintext peers only where permissive). */
    defaultPolicy: Type.Optional(Type.Union(DEFAULT_AUTHZ.map((d) => Type.Literal(d)))),
    policies: Type.Optional(Type.Array(AuthorizationPolicyConfig, { maxItems: MAX_POLICIES })),
  },
  { additionalProperties: false },
);

export const ProxyConfig = Type.Object(
  {
    /** Opaque version the proxy reports (ACK) and shows at /config. */
    version: Type.String({ minLength: 1, maxLength: 128 }),
    services: Type.Array(Service, { maxItems: MAX_SERVICES }),
    inbound: Type.Optional(Inbound),
    /** PEM trust bundle (one or more anchors). */
    trustBundle: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export type Endpoint = Static<typeof Endpoint>;
export type PathMatch = Static<typeof PathMatch>;
export type HeaderMatch = Static<typeof HeaderMatch>;
export type RouteMatch = Static<typeof RouteMatch>;
export type WeightedBackend = Static<typeof WeightedBackend>;
export type Timeouts = Static<typeof Timeouts>;
export type RetryPolicy = Static<typeof RetryPolicy>;
export type RouteRetryPolicy = Static<typeof RouteRetryPolicy>;
export type BreakerPolicy = Static<typeof BreakerPolicy>;
export type Route = Static<typeof Route>;
export type Service = Static<typeof Service>;
export type InboundPort = Static<typeof InboundPort>;
export type AuthorizationRule = Static<typeof AuthorizationRule>;
export type AuthorizationPolicyConfig = Static<typeof AuthorizationPolicyConfig>;
export type Inbound = Static<typeof Inbound>;
export type ProxyConfig = Static<typeof ProxyConfig>;

/** One problem found in a document: a JSON-pointer-like path and a message. */
export interface Problem {
  path: string;
  message: string;
}

export type Parsed<T> = { ok: true; value: Readonly<T> } | { ok: false; problems: Problem[] };

/** Schema errors worth a sentence: where the schema can only say "Unexpected property". */
const EXPLAINED: ReadonlyArray<readonly [RegExp, string]> = [
  [/^\/services\/\d+\/routes\/\d+\/retry\/budget$/, 'the retry budget is per service: set it on the service'],
  [/^\/inbound\/policies\/\d+\/rules\/\d+\/paths\/\d+$/, 'a path is exact (/healthz) or a prefix ending in * (/billing/*); * is allowed only at the end'],
];

/** Structural problems from a TypeBox schema, every one with its path. */
export function schemaProblems(schema: TSchema, doc: unknown): Problem[] {
  const out: Problem[] = [];
  const seen = new Set<string>();
  for (const e of Value.Errors(schema, doc)) {
    const key = `${e.path}\u0000${e.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: e.path || '/', message: e.message });
  }
  return out;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const listAt = (v: unknown, key: string): unknown[] => {
  const list = isRecord(v) ? v[key] : undefined;
  return Array.isArray(list) ? list : [];
};
const numberAt = (v: unknown, key: string): number | undefined => {
  const n = isRecord(v) ? v[key] : undefined;
  return typeof n === 'number' ? n : undefined;
};
const stringAt = (v: unknown, key: string): string | undefined => {
  const s = isRecord(v) ? v[key] : undefined;
  return typeof s === 'string' ? s : undefined;
};

/** What is wrong with an endpoint address the schema's pattern accepts (`host:99999`), if anything. */
export function endpointAddressProblem(address: string): string | undefined {
  const port = /:([0-9]{1,5})$/.exec(address)?.[1];
  if (port === undefined) return undefined; // the schema reports the shape
  const n = Number(port);
  return n >= 1 && n <= 65535 ? undefined : `port ${n} is out of range (1-65535)`;
}

/**
 * What is wrong with a service host, if anything. Requests match on the Host header without its
 * port (`hostOf` in proxy/http/listener.ts), so a host with a port could never match.
 */
export function hostProblem(host: string): string | undefined {
  const withPort = /^(\[[^\]]*\]|[^:[\]]*):([0-9]*)$/.exec(host);
  if (withPort) return `hosts are host names without a port: write "${withPort[1]}", not "${host}" (a service for one port sets "port")`;
  if (host.startsWith('[') ? !host.endsWith(']') : host.includes(':')) return 'not a host name: an IPv6 address is written in brackets ([::1]), without a port';
  return undefined;
}

function backoffAt(level: unknown): Partial<Record<'base' | 'cap', number>> {
  const b = isRecord(level) && isRecord(level.retry) ? level.retry.backoff : undefined;
  return { base: numberAt(b, 'base'), cap: numberAt(b, 'cap') };
}

type Levels<K extends string> = { own: Partial<Record<K, number | undefined>>; inherited: Partial<Record<K, number | undefined>>; defaults: Readonly<Record<K, number>> };

/**
 * The rule `low <= high` (backoff base <= cap, baseEjection <= maxEjection) on the values the proxy
 * will run: this level's own over the inherited (the service's, for a route) over the defaults.
 * A level reports only a conflict it takes part in (it sets one of the two); the path is the value
 * set here, or `both` when it sets both; the message says where each value comes from.
 */
function orderProblem<K extends string>(at: string, [lo, hi]: [K, K], both: string, [lowName, highName]: [string, string], l: Levels<K>): Problem | undefined {
  if (l.own[lo] === undefined && l.own[hi] === undefined) return undefined;
  const resolve = (key: K): [number, string] =>
    l.own[key] !== undefined ? [l.own[key], 'set here'] : l.inherited[key] !== undefined ? [l.inherited[key], "the service's"] : [l.defaults[key], 'the default'];
  const [low, lowFrom] = resolve(lo);
  const [high, highFrom] = resolve(hi);
  if (low <= high) return undefined;
  const path = l.own[lo] !== undefined && l.own[hi] !== undefined ? both : `${at}/${l.own[lo] !== undefined ? lo : hi}`;
  return { path, message: `${lowName} is larger than ${highName}: ${low} ms (${lowFrom}) > ${high} ms (${highFrom})` };
}

/**
 * Rules a schema cannot say: unique names, backends that exist, weights that are not all zero.
 * Reads the document defensively, so it runs even where the schema found problems elsewhere (and
 * a document with a bad address AND an unknown backend reports both); a part that has not the
 * shape a rule reads is skipped by that rule.
 */
export function semanticProblems(doc: unknown): Problem[] {
  const out: Problem[] = [];
  const services = listAt(doc, 'services');
  const names = new Map<string, number>();
  const hostOwner = new Map<string, string>();
  services.forEach((svc, i) => {
    const name = stringAt(svc, 'name');
    if (name === undefined) return;
    if (names.has(name)) out.push({ path: `/services/${i}/name`, message: `duplicate service "${name}" (also /services/${names.get(name)})` });
    names.set(name, i);
    const port = numberAt(svc, 'port');
    const suffix = /:([0-9]+)$/.exec(name)?.[1];
    if (suffix !== undefined ? Number(suffix) !== port : port !== undefined) {
      out.push({ path: `/services/${i}/port`, message: `a service for one port is named <service>:<port> and sets that port; "${name}" has port ${port ?? '(none)'}` });
    }
    // A service with `port` claims its hosts on that port only (`api:9090`), beside the one without.
    const base = suffix !== undefined ? name.slice(0, -suffix.length - 1) : name;
    for (const h of [base, ...listAt(svc, 'hosts').filter((x): x is string => typeof x === 'string')]) {
      const key = port !== undefined ? `${h.toLowerCase()}:${port}` : h.toLowerCase();
      const owner = hostOwner.get(key);
      if (owner !== undefined && owner !== name) out.push({ path: `/services/${i}/hosts`, message: `host "${port !== undefined ? `${h}:${port}` : h}" is already claimed by service "${owner}"` });
      hostOwner.set(key, name);
    }
  });
  services.forEach((svc, i) => {
    if (!isRecord(svc)) return;
    listAt(svc, 'hosts').forEach((host, k) => {
      const problem = typeof host === 'string' ? hostProblem(host) : undefined;
      if (problem) out.push({ path: `/services/${i}/hosts/${k}`, message: problem });
    });
    listAt(svc, 'endpoints').forEach((ep, j) => {
      const address = stringAt(ep, 'address');
      const problem = address === undefined ? undefined : endpointAddressProblem(address);
      if (problem) out.push({ path: `/services/${i}/endpoints/${j}/address`, message: problem });
    });
    const routes = listAt(svc, 'routes');
    const routeNames = new Set<string>();
    routes.forEach((route, r) => {
      const at = `/services/${i}/routes/${r}`;
      const name = stringAt(route, 'name');
      if (name !== undefined && routeNames.has(name)) out.push({ path: `${at}/name`, message: `duplicate route name "${name}"` });
      if (name !== undefined) routeNames.add(name);
      const backends = listAt(route, 'backends');
      const seen = new Set<string>();
      backends.forEach((b, j) => {
        const service = stringAt(b, 'service');
        if (service === undefined) return;
        if (!names.has(service)) out.push({ path: `${at}/backends/${j}/service`, message: `unknown service "${service}"` });
        if (seen.has(service)) out.push({ path: `${at}/backends/${j}/service`, message: `duplicate backend "${service}"` });
        seen.add(service);
      });
      if (backends.length > 0 && backends.every((b) => numberAt(b, 'weight') === 0)) out.push({ path: `${at}/backends`, message: 'all backend weights are 0: the route could send traffic nowhere' });
    });
    const levels: Array<[string, unknown]> = [['', svc], ...routes.map((r, k): [string, unknown] => [`/routes/${k}`, r])];
    for (const [where, level] of levels) {
      const timeouts = isRecord(level) ? level.timeouts : undefined;
      const perTry = numberAt(timeouts, 'perTry');
      const request = numberAt(timeouts, 'request');
      if (perTry !== undefined && request !== undefined && perTry > request) {
        out.push({ path: `/services/${i}${where}/timeouts/perTry`, message: 'perTry timeout is longer than the whole-request timeout' });
      }
    }
    // Backoff and ejection as the proxy resolves them (compile refuses base > cap there): each
    // level's own values over the service's over the defaults. A level reports only a conflict it
    // takes part in; a route that sets neither value inherits the service's verdict.
    const serviceBackoff = backoffAt(svc);
    const backoff = (at: string, own: typeof serviceBackoff, inherited: typeof serviceBackoff) =>
      orderProblem(at, ['base', 'cap'], at, ['backoff base', 'its cap'], { own, inherited, defaults: DEFAULT_BACKOFF });
    const checks = [
      backoff(`/services/${i}/retry/backoff`, serviceBackoff, {}),
      ...routes.map((route, k) => backoff(`/services/${i}/routes/${k}/retry/backoff`, backoffAt(route), serviceBackoff)),
      orderProblem(`/services/${i}/breaker`, ['baseEjection', 'maxEjection'], `/services/${i}/breaker/baseEjection`, ['baseEjection', 'maxEjection'], {
        own: { baseEjection: numberAt(svc.breaker, 'baseEjection'), maxEjection: numberAt(svc.breaker, 'maxEjection') },
        inherited: {},
        defaults: DEFAULT_EJECTION,
      }),
    ];
    for (const p of checks) if (p) out.push(p);
  });
  const inbound = isRecord(doc) ? doc.inbound : undefined;
  const ports = new Set<number>();
  listAt(inbound, 'ports').forEach((p, i) => {
    const port = numberAt(p, 'port');
    if (port === undefined) return;
    if (ports.has(port)) out.push({ path: `/inbound/ports/${i}/port`, message: `duplicate inbound port ${port}` });
    ports.add(port);
  });
  listAt(inbound, 'policies').forEach((pol, i) =>
    listAt(pol, 'rules').forEach((rule, r) =>
      listAt(rule, 'identities').forEach((id, k) => {
        if (typeof id !== 'string') return;
        if (id !== '*' && !new RegExp(SPIFFE_ID_PATTERN).test(id) && !/^spiffe:\/\/[a-z0-9.-]+\/ns\/[a-z0-9-]+\/sa\/\*$/.test(id)) {
          out.push({ path: `/inbound/policies/${i}/rules/${r}/identities/${k}`, message: `"${id}" is neither "*", a SPIFFE ID, nor spiffe://<td>/ns/<ns>/sa/*` });
        }
      }),
    ),
  );
  return out;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

/** Validate a proxy config document. Never throws; returns a deep-frozen copy or every problem. */
export function parseProxyConfig(doc: unknown): Parsed<ProxyConfig> {
  // Both sets in one pass: a document with a schema problem and a semantic one reports both.
  const structural = schemaProblems(ProxyConfig, doc).map((p) => {
    const explained = EXPLAINED.find(([path]) => path.test(p.path));
    return explained ? { path: p.path, message: explained[1] } : p;
  });
  const seen = new Set(structural.map((p) => `${p.path}\u0000${p.message}`));
  const semantic = semanticProblems(doc).filter((p) => !seen.has(`${p.path}\u0000${p.message}`));
  if (structural.length > 0 || semantic.length > 0) return { ok: false, problems: [...structural, ...semantic] };
  return { ok: true, value: deepFreeze(structuredClone(doc) as ProxyConfig) };
}

export function formatProblems(problems: Problem[]): string {
  return problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
}
