// Config → runtime view: turns a validated ProxyConfig into the lookup tables the request path
// reads (host → service, routes with defaults resolved). State that must outlive a config change
// (endpoint connection pools, load, breakers, budgets, limits) comes from a StateRegistry, so a
// new version keeps what still exists and in-flight requests finish on the objects they hold.
import type { LookupFunction } from 'node:net';
import type { Clock, Random } from '../../api/runtime.ts';
import type { BreakerPolicy, Endpoint as EndpointDoc, ProxyConfig, RetryPolicy, RouteMatch, Service as ServiceDoc, Timeouts, AuthorizationPolicyConfig, InboundPort } from '../../api/proxy-config.ts';
import { EndpointLoad } from '../policy/balancer.ts';
import { FailureAccrual, DEFAULT_FAILURE_ACCRUAL } from '../policy/failure-accrual.ts';
import { RetryBudget, DEFAULT_BUDGET } from '../policy/retry-budget.ts';
import { DEFAULT_RETRY } from '../policy/retry-decision.ts';
import { routesOf } from '../policy/route-match.ts';
import { backendsOf } from '../policy/split.ts';
import { ConcurrencyLimit } from '../policy/concurrency-limit.ts';
import { makeBackoff, type BackoffConfig } from '../policy/backoff.ts';

export const DEFAULT_TIMEOUTS = { connect: 1000, perTry: 10_000, request: 15_000 } as const;
export const DEFAULT_BREAKER = { ...DEFAULT_FAILURE_ACCRUAL, maxInFlight: 1000, maxPending: 1000 } as const;

export interface ResolvedTimeouts {
  connect: number;
  perTry: number;
  request: number;
}

export interface ResolvedRetry {
  attempts: number;
  statuses: ReadonlySet<number>;
  grpcStatuses: ReadonlySet<number>;
  methods: ReadonlySet<string>;
  backoff: BackoffConfig;
  maxBufferedBody: number;
}

/** One upstream endpoint and the state that follows it across config versions. */
export interface EndpointState {
  readonly key: string;
  readonly service: string;
  readonly address: string;
  readonly identity: string | undefined;
  /** Labels for metrics (workload, namespace): updated in place when a config changes them. */
  labels: Readonly<Record<string, string>>;
  readonly load: EndpointLoad;
  readonly accrual: FailureAccrual;
  /** Opaque connection pool made by the injected client factory. */
  readonly client: unknown;
  /** How its name is resolved when dialled, if not as usual: a passed-through host's (outbound/passthrough.ts). */
  readonly lookup?: LookupFunction;
}

export interface ServiceRuntime {
  readonly name: string;
  readonly endpoints: readonly EndpointState[];
  /** Ready endpoints only. */
  readonly ready: readonly EndpointState[];
  readonly routes: readonly RouteRuntime[];
  readonly limit: ConcurrencyLimit;
  readonly budget: RetryBudget;
}

export interface RouteRuntime {
  readonly name: string;
  readonly service: string;
  readonly match: RouteMatch | undefined;
  readonly backends: ReadonlyArray<{ readonly service: ServiceRuntime; readonly weight: number }>;
  readonly timeouts: ResolvedTimeouts;
  readonly retry: ResolvedRetry;
}

export interface InboundRuntime {
  readonly ports: ReadonlyMap<number, InboundPort>;
  readonly defaultPolicy: 'all-authenticated' | 'all' | 'deny';
  readonly policies: readonly AuthorizationPolicyConfig[];
}

export interface RuntimeConfig {
  readonly version: string;
  readonly doc: Readonly<ProxyConfig>;
  /** Lower-case host (no port) → service; `host:port` → the service of that port (a service with `port`). */
  readonly byHost: ReadonlyMap<string, ServiceRuntime>;
  /** Whether any service has a `port` (else a request's port is never looked at). */
  readonly portedHosts: boolean;
  readonly services: ReadonlyMap<string, ServiceRuntime>;
  /**
   * An endpoint's host (`10.1.0.7`, `[fd00::7]`, lower-case) → its endpoint, the first service's
   * that lists it: a call by a Pod's IP that names no service goes to that Pod with its identity
   * (outbound/passthrough.ts).
   */
  readonly endpointHosts: ReadonlyMap<string, EndpointState>;
  readonly inbound: InboundRuntime;
}

export interface ClientFactory {
  /** A connection pool for one endpoint. */
  create(endpoint: { address: string; identity: string | undefined; connectTimeout: number; lookup?: LookupFunction }): unknown;
  /** Close a pool once no config references it; in-flight requests finish first. */
  close(client: unknown): void;
}

function resolveTimeouts(...layers: Array<Timeouts | undefined>): ResolvedTimeouts {
  const t: ResolvedTimeouts = { ...DEFAULT_TIMEOUTS };
  for (const l of layers) {
    if (l?.connect !== undefined) t.connect = l.connect;
    if (l?.perTry !== undefined) t.perTry = l.perTry;
    if (l?.request !== undefined) t.request = l.request;
  }
  return t;
}

export function resolveRetry(...layers: Array<RetryPolicy | undefined>): ResolvedRetry {
  let attempts: number = DEFAULT_RETRY.attempts;
  let statuses: readonly number[] = DEFAULT_RETRY.statuses;
  let grpcStatuses: readonly number[] = DEFAULT_RETRY.grpcStatuses;
  let methods: readonly string[] = DEFAULT_RETRY.methods;
  let maxBufferedBody: number = DEFAULT_RETRY.maxBufferedBody;
  let base: number | undefined;
  let cap: number | undefined;
  for (const l of layers) {
    if (!l) continue;
    attempts = l.attempts ?? attempts;
    statuses = l.statuses ?? statuses;
    grpcStatuses = l.grpcStatuses ?? grpcStatuses;
    methods = l.methods ?? methods;
    maxBufferedBody = l.maxBufferedBody ?? maxBufferedBody;
    base = l.backoff?.base ?? base;
    cap = l.backoff?.cap ?? cap;
  }
  const backoff: Partial<BackoffConfig> = {};
  if (base !== undefined) backoff.base = base;
  if (cap !== undefined) backoff.cap = cap;
  return { attempts, statuses: new Set(statuses), grpcStatuses: new Set(grpcStatuses), methods: new Set(methods), backoff: makeBackoff(backoff), maxBufferedBody };
}

function budgetOf(svc: ServiceDoc): { ratio: number; minPerSecond: number; windowMs: number } {
  const b = svc.retry?.budget;
  return { ratio: b?.ratio ?? DEFAULT_BUDGET.ratio, minPerSecond: b?.minPerSecond ?? DEFAULT_BUDGET.minPerSecond, windowMs: b?.window ?? DEFAULT_BUDGET.windowMs };
}

function breakerOf(b: BreakerPolicy | undefined) {
  return {
    consecutiveFailures: b?.consecutiveFailures ?? DEFAULT_BREAKER.consecutiveFailures,
    baseEjection: b?.baseEjection ?? DEFAULT_BREAKER.baseEjection,
    maxEjection: b?.maxEjection ?? DEFAULT_BREAKER.maxEjection,
    maxInFlight: b?.maxInFlight ?? DEFAULT_BREAKER.maxInFlight,
    maxPending: b?.maxPending ?? DEFAULT_BREAKER.maxPending,
  };
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * Long-lived state keyed by identity, reused across config versions. `sweep` closes what the
 * newest config no longer mentions.
 */
export class StateRegistry {
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #clients: ClientFactory;
  #endpoints = new Map<string, EndpointState>();
  #limits = new Map<string, { key: string; limit: ConcurrencyLimit }>();
  #budgets = new Map<string, { key: string; budget: RetryBudget }>();

  constructor(clock: Clock, random: Random, clients: ClientFactory) {
    this.#clock = clock;
    this.#random = random;
    this.#clients = clients;
  }

  endpoint(service: string, doc: EndpointDoc, breaker: ReturnType<typeof breakerOf>, connectTimeout: number): EndpointState {
    // The key includes everything that needs a new pool or a new breaker when it changes.
    const key = `${service}|${doc.address}|${doc.identity ?? ''}|${connectTimeout}|${breaker.consecutiveFailures}/${breaker.baseEjection}/${breaker.maxEjection}`;
    let ep = this.#endpoints.get(key);
    if (!ep) {
      ep = {
        key,
        service,
        address: doc.address,
        identity: doc.identity,
        labels: Object.freeze({ ...doc.labels }),
        load: new EndpointLoad(this.#clock),
        accrual: new FailureAccrual(breaker, this.#clock, this.#random),
        client: this.#clients.create({ address: doc.address, identity: doc.identity, connectTimeout }),
      };
      this.#endpoints.set(key, ep);
    } else if (!sameLabels(ep.labels, doc.labels ?? {})) ep.labels = Object.freeze({ ...doc.labels });
    return ep;
  }

  limit(service: string, maxInFlight: number, maxPending: number): ConcurrencyLimit {
    const key = `${maxInFlight}/${maxPending}`;
    const cur = this.#limits.get(service);
    if (cur && cur.key === key) return cur.limit;
    const limit = new ConcurrencyLimit(maxInFlight, maxPending);
    this.#limits.set(service, { key, limit });
    return limit;
  }

  budget(service: string, cfg: { ratio: number; minPerSecond: number; windowMs: number }): RetryBudget {
    const key = `${cfg.ratio}/${cfg.minPerSecond}/${cfg.windowMs}`;
    const cur = this.#budgets.get(service);
    if (cur && cur.key === key) return cur.budget;
    const budget = new RetryBudget(cfg, this.#clock);
    this.#budgets.set(service, { key, budget });
    return budget;
  }

  /** Drop state the given config does not use; pools close once their in-flight requests end. */
  sweep(cfg: RuntimeConfig): void {
    const live = new Set<string>();
    for (const svc of cfg.services.values()) for (const ep of svc.endpoints) live.add(ep.key);
    for (const [key, ep] of this.#endpoints) {
      if (!live.has(key)) {
        this.#endpoints.delete(key);
        this.#clients.close(ep.client);
      }
    }
    for (const name of this.#limits.keys()) if (!cfg.services.has(name)) this.#limits.delete(name);
    for (const name of this.#budgets.keys()) if (!cfg.services.has(name)) this.#budgets.delete(name);
  }

  endpoints(): IterableIterator<EndpointState> {
    return this.#endpoints.values();
  }

  closeAll(): void {
    for (const ep of this.#endpoints.values()) this.#clients.close(ep.client);
    this.#endpoints.clear();
  }
}

/** Build the runtime view. Pure apart from fetching long-lived state from the registry. */
export function compile(doc: Readonly<ProxyConfig>, state: StateRegistry): RuntimeConfig {
  const services = new Map<string, ServiceRuntime>();
  const pendingRoutes: Array<{ svc: ServiceDoc; target: RouteRuntime[] }> = [];
  for (const svc of doc.services) {
    const timeouts = resolveTimeouts(svc.timeouts);
    const breaker = breakerOf(svc.breaker);
    const endpoints = svc.endpoints.map((e) => state.endpoint(svc.name, e, breaker, timeouts.connect));
    const ready = endpoints.filter((_, i) => svc.endpoints[i]?.ready !== false);
    const routes: RouteRuntime[] = [];
    services.set(svc.name, {
      name: svc.name,
      endpoints,
      ready,
      routes,
      limit: state.limit(svc.name, breaker.maxInFlight, breaker.maxPending),
      budget: state.budget(svc.name, budgetOf(svc)),
    });
    pendingRoutes.push({ svc, target: routes });
  }
  // Routes reference other services (split backends), so build them once every service exists.
  for (const { svc, target } of pendingRoutes) {
    const self = services.get(svc.name)!;
    for (const r of routesOf(svc)) {
      target.push(
        Object.freeze({
          name: r.name,
          service: svc.name,
          match: r.match,
          backends: backendsOf(svc.name, r).map((b) => Object.freeze({ service: services.get(b.service) ?? self, weight: b.weight })),
          timeouts: resolveTimeouts(svc.timeouts, r.timeouts),
          retry: resolveRetry(svc.retry, r.retry),
        }),
      );
    }
  }
  const endpointHosts = new Map<string, EndpointState>();
  for (const svc of services.values()) {
    for (const ep of svc.endpoints) {
      const host = ep.address.slice(0, ep.address.lastIndexOf(':')).toLowerCase();
      if (!endpointHosts.has(host)) endpointHosts.set(host, ep);
    }
  }
  const byHost = new Map<string, ServiceRuntime>();
  let portedHosts = false;
  for (const svc of doc.services) {
    const rt = services.get(svc.name)!;
    const port = svc.port;
    if (port === undefined) {
      for (const h of [svc.name, ...(svc.hosts ?? [])]) byHost.set(h.toLowerCase(), rt);
    } else {
      portedHosts = true;
      for (const h of [svc.name.slice(0, svc.name.lastIndexOf(':')), ...(svc.hosts ?? [])]) byHost.set(`${h.toLowerCase()}:${port}`, rt);
    }
  }
  const ports = new Map<number, InboundPort>();
  for (const p of doc.inbound?.ports ?? []) ports.set(p.port, p);
  return Object.freeze({
    version: doc.version,
    doc,
    byHost,
    portedHosts,
    services,
    endpointHosts,
    inbound: Object.freeze({ ports, defaultPolicy: doc.inbound?.defaultPolicy ?? 'all-authenticated', policies: doc.inbound?.policies ?? [] }),
  });
}

/** The port an authority names (`api:9090` → `9090`, `[fd00::1]:80` → `80`), '' when it names none. */
function portOf(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon < 0 || colon < authority.lastIndexOf(']')) return '';
  return authority.slice(colon + 1);
}

/**
 * The service a request's host (lower-case, no port) and authority (Host as sent) name: the
 * service of that port when one claims `host:port`, else the service of the host. Pure.
 */
export function serviceFor(cfg: RuntimeConfig, host: string, authority: string): ServiceRuntime | undefined {
  if (cfg.portedHosts) {
    const port = portOf(authority);
    const svc = port === '' ? undefined : cfg.byHost.get(`${host}:${port}`);
    if (svc) return svc;
  }
  return cfg.byHost.get(host);
}
