// Golden-signal metrics on a registry the proxy owns (never prom-client's global default).
// Label values come from config and a closed set of codes, so cardinality stays bounded.
import { Counter, Gauge, Registry } from 'prom-client';
import { defaultMetrics } from '../../api/process-metrics.ts';
import type { Clock } from '../../api/runtime.ts';
import { RequestMetrics, type RequestLabels } from './request-metrics.ts';

export { LATENCY_BUCKETS, RETAIN_IDLE_MS, type RequestLabels } from './request-metrics.ts';

export class ProxyMetrics {
  readonly registry = new Registry();
  /** meshlet_requests_total and meshlet_request_duration_seconds (see request-metrics.ts). */
  readonly #requests: RequestMetrics;
  /** Set at scrape time from the listeners' own counts (inFlightOf): no gauge arithmetic per request. */
  readonly inFlight = new Gauge({ name: 'meshlet_requests_in_flight', help: 'Requests in flight (saturation).', labelNames: ['direction'], registers: [this.registry] });
  readonly #inFlightOf = new Map<string, Array<() => number>>();
  /** Authorization decisions per policy name, counted in plain numbers; the counter shows them at scrape time. */
  readonly #authz = new Map<string, { allow: number; deny: number }>();
  readonly retries = new Counter({ name: 'meshlet_retries_total', help: 'Retry attempts sent.', labelNames: ['dst_service', 'reason'], registers: [this.registry] });
  readonly budgetExhausted = new Counter({ name: 'meshlet_retry_budget_exhausted_total', help: 'Retries wanted but refused by the retry budget.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly ejections = new Counter({ name: 'meshlet_endpoint_ejections_total', help: 'Endpoints ejected by failure accrual.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly breakerState = new Gauge({ name: 'meshlet_endpoint_breaker_state', help: 'Per-endpoint breaker: 0 closed, 1 open (ejected), 2 probation.', labelNames: ['dst_service', 'endpoint'], registers: [this.registry] });
  readonly loadShed = new Counter({ name: 'meshlet_load_shed_total', help: 'Requests refused by a concurrency limit.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly proxyErrors = new Counter({ name: 'meshlet_proxy_errors_total', help: 'Responses the proxy made itself, by reason.', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly connections = new Gauge({ name: 'meshlet_tcp_connections_open', help: 'Open TCP connections accepted.', labelNames: ['direction'], registers: [this.registry] });
  readonly connectionsTotal = new Counter({ name: 'meshlet_tcp_connections_total', help: 'TCP connections accepted.', labelNames: ['direction'], registers: [this.registry] });
  readonly authz = new Counter({ name: 'meshlet_authz_decisions_total', help: 'Inbound authorization decisions by policy.', labelNames: ['policy', 'decision'], registers: [this.registry] });
  /** Policy names come from config; past this many the counts start again (a fuse, like request-metrics.ts). */
  static readonly MAX_AUTHZ_POLICIES = 1000;
  readonly tlsHandshakeFailures = new Counter({ name: 'meshlet_tls_handshake_failures_total', help: 'TLS handshakes refused or failed, by reason.', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly leafExpiry = new Gauge({ name: 'meshlet_identity_leaf_expiry_timestamp_seconds', help: "Expiry of the proxy's current leaf certificate (Unix seconds).", labelNames: ['identity'], registers: [this.registry] });
  readonly renewals = new Counter({ name: 'meshlet_identity_renewals_total', help: 'Certificate requests to the control plane, by result.', labelNames: ['result'], registers: [this.registry] });
  readonly controlPlaneConnected = new Gauge({ name: 'meshlet_control_plane_connected', help: '1 while the config stream to the control plane is up.', registers: [this.registry] });
  readonly configUpdates = new Counter({ name: 'meshlet_config_updates_total', help: 'Config updates applied or refused.', labelNames: ['result'], registers: [this.registry] });
  readonly configInfo = new Gauge({ name: 'meshlet_config_info', help: 'The config version in force (value 1).', labelNames: ['version'], registers: [this.registry] });

  /**
   * clock and retainIdleMs: how long the request series of a service the config dropped stay
   * after their last request (RETAIN_IDLE_MS, 10 minutes, by default; see RequestMetrics.evictIdle).
   */
  constructor(opts: { defaultMetrics?: boolean; collect?: (m: ProxyMetrics) => void; clock?: Clock; retainIdleMs?: number } = {}) {
    this.#requests = new RequestMetrics(this.registry, { ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.retainIdleMs !== undefined ? { retainIdleMs: opts.retainIdleMs } : {}) });
    if (opts.defaultMetrics !== false) defaultMetrics(this.registry, 'meshlet_proxy_');
    // Outcomes exported from 0: a first refusal is an increase Prometheus can see (alerts, dashboards).
    for (const result of ['applied', 'refused']) this.configUpdates.labels(result).inc(0);
    for (const result of ['ok', 'failed']) this.renewals.labels(result).inc(0);
    const collect = opts.collect;
    // Scrape-time gauges (breaker state) are computed when Prometheus asks, not per request,
    // by the gauge's own collect hook so the same scrape shows them.
    if (collect) (this.breakerState as unknown as { collect: () => void }).collect = () => collect(this);
    // prom-client's labels().inc() hashes the label object on every call (children too): the
    // per-request counters and gauges are plain numbers, copied into these at scrape time.
    (this.inFlight as unknown as { collect: () => void }).collect = () => {
      for (const [direction, counts] of this.#inFlightOf) {
        let n = 0;
        for (const count of counts) n += count();
        this.inFlight.labels(direction).set(n);
      }
    };
    (this.authz as unknown as { collect: () => void }).collect = () => {
      this.authz.reset();
      for (const [policy, n] of this.#authz) {
        if (n.allow > 0) this.authz.labels(policy, 'allow').inc(n.allow);
        if (n.deny > 0) this.authz.labels(policy, 'deny').inc(n.deny);
      }
    };
  }

  /** Where the in-flight count of a direction comes from: its listeners (inbound has one per app port), summed. */
  inFlightOf(direction: string, count: () => number): void {
    const counts = this.#inFlightOf.get(direction);
    if (counts) counts.push(count);
    else this.#inFlightOf.set(direction, [count]);
    this.inFlight.labels(direction).set(0);
  }

  /** Count one authorization decision. */
  authzDecision(policy: string, allowed: boolean): void {
    let n = this.#authz.get(policy);
    if (n === undefined) {
      if (this.#authz.size >= ProxyMetrics.MAX_AUTHZ_POLICIES) this.#authz.clear();
      n = { allow: 0, deny: 0 };
      this.#authz.set(policy, n);
    }
    if (allowed) n.allow++;
    else n.deny++;
  }

  /**
   * Drop the per-service resilience series of services the config no longer names, so their
   * number does not grow with config churn (a service re-added starts again from 0, which
   * Prometheus reads as a counter reset). Their request series go once idle for the retain-idle
   * period (checked at scrape time), so that requests still in flight count and are scraped.
   */
  async forgetServices(live: { has(name: string): boolean }): Promise<void> {
    this.#requests.liveServices(live);
    for (const c of [this.retries, this.budgetExhausted, this.loadShed, this.ejections] as Array<Counter<string>>) {
      for (const v of (await c.get()).values) {
        const svc = v.labels['dst_service'];
        if (svc !== undefined && !live.has(String(svc))) c.remove(v.labels as Record<string, string>);
      }
    }
  }

  /** Count one finished request. */
  observe(l: RequestLabels, seconds: number): void {
    this.#requests.observe(l, seconds);
  }
}

