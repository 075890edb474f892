// Golden-signal metrics on a registry the proxy owns (never prom-client's global default).
// Label values come from config and a closed set of codes, so cardinality stays bounded.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface RequestLabels {
  direction: 'inbound' | 'outbound';
  /** Calling workload: this proxy's own (outbound) or the peer's (inbound). */
  src_workload: string;
  src_namespace: string;
  /** Peer identity (SPIFFE ID) or "" when unauthenticated. */
  src_identity: string;
  dst_service: string;
  dst_workload: string;
  dst_namespace: string;
  status_code: string;
  classification: 'success' | 'failure';
  /** The proxy error code, or "" when the upstream answered. */
  error_reason: string;
  tls: 'true' | 'false';
}

const REQUEST_LABELS = ['direction', 'src_workload', 'src_namespace', 'src_identity', 'dst_service', 'dst_workload', 'dst_namespace', 'status_code', 'classification', 'error_reason', 'tls'] as const;

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'meshlet_requests_total', help: 'Requests handled, by edge, status and classification.', labelNames: REQUEST_LABELS, registers: [this.registry] });
  readonly latency = new Histogram({ name: 'meshlet_request_duration_seconds', help: 'Time from request received to response headers sent.', labelNames: ['direction', 'src_workload', 'src_namespace', 'dst_service', 'dst_workload', 'dst_namespace', 'classification'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'meshlet_requests_in_flight', help: 'Requests in flight (saturation).', labelNames: ['direction'], registers: [this.registry] });
  readonly retries = new Counter({ name: 'meshlet_retries_total', help: 'Retry attempts sent.', labelNames: ['dst_service', 'reason'], registers: [this.registry] });
  readonly budgetExhausted = new Counter({ name: 'meshlet_retry_budget_exhausted_total', help: 'Retries wanted but refused by the retry budget.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly ejections = new Counter({ name: 'meshlet_endpoint_ejections_total', help: 'Endpoints ejected by failure accrual.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly breakerState = new Gauge({ name: 'meshlet_endpoint_breaker_state', help: 'Per-endpoint breaker: 0 closed, 1 open (ejected), 2 probation.', labelNames: ['dst_service', 'endpoint'], registers: [this.registry] });
  readonly loadShed = new Counter({ name: 'meshlet_load_shed_total', help: 'Requests refused by a concurrency limit.', labelNames: ['dst_service'], registers: [this.registry] });
  readonly proxyErrors = new Counter({ name: 'meshlet_proxy_errors_total', help: 'Responses the proxy made itself, by reason.', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly connections = new Gauge({ name: 'meshlet_tcp_connections_open', help: 'Open TCP connections accepted.', labelNames: ['direction'], registers: [this.registry] });
  readonly connectionsTotal = new Counter({ name: 'meshlet_tcp_connections_total', help: 'TCP connections accepted.', labelNames: ['direction'], registers: [this.registry] });
  readonly authz = new Counter({ name: 'meshlet_authz_decisions_total', help: 'Inbound authorization decisions by policy.', labelNames: ['policy', 'decision'], registers: [this.registry] });
  readonly tlsHandshakeFailures = new Counter({ name: 'meshlet_tls_handshake_failures_total', help: 'TLS handshakes refused or failed, by reason.', labelNames: ['direction', 'reason'], registers: [this.registry] });
  readonly leafExpiry = new Gauge({ name: 'meshlet_identity_leaf_expiry_timestamp_seconds', help: "Expiry of the proxy's current leaf certificate (Unix seconds).", labelNames: ['identity'], registers: [this.registry] });
  readonly renewals = new Counter({ name: 'meshlet_identity_renewals_total', help: 'Certificate requests to the control plane, by result.', labelNames: ['result'], registers: [this.registry] });
  readonly controlPlaneConnected = new Gauge({ name: 'meshlet_control_plane_connected', help: '1 while the config stream to the control plane is up.', registers: [this.registry] });
  readonly configUpdates = new Counter({ name: 'meshlet_config_updates_total', help: 'Config updates applied or refused.', labelNames: ['result'], registers: [this.registry] });
  readonly configInfo = new Gauge({ name: 'meshlet_config_info', help: 'The config version in force (value 1).', labelNames: ['version'], registers: [this.registry] });

  readonly #children = new Map<string, { count: CounterChild; latency: HistogramChild }>();

  constructor(opts: { defaultMetrics?: boolean; collect?: (m: ProxyMetrics) => void } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'meshlet_proxy_' });
    // Outcomes exported from 0: a first refusal is an increase Prometheus can see (alerts, dashboards).
    for (const result of ['applied', 'refused']) this.configUpdates.labels(result).inc(0);
    for (const result of ['ok', 'failed']) this.renewals.labels(result).inc(0);
    const collect = opts.collect;
    // Scrape-time gauges (breaker state) are computed when Prometheus asks, not per request,
    // by the gauge's own collect hook so the same scrape shows them.
    if (collect) (this.breakerState as unknown as { collect: () => void }).collect = () => collect(this);
  }

  /** Count one finished request. Children are cached per label set: one Map lookup per request. */
  observe(l: RequestLabels, seconds: number): void {
    const key = `${l.direction}\u0001${l.src_workload}\u0001${l.src_namespace}\u0001${l.src_identity}\u0001${l.dst_service}\u0001${l.dst_workload}\u0001${l.dst_namespace}\u0001${l.status_code}\u0001${l.error_reason}\u0001${l.tls}`;
    let c = this.#children.get(key);
    if (!c) {
      if (this.#children.size > 10_000) this.#children.clear();
      c = {
        count: this.requests.labels(l),
        latency: this.latency.labels({ direction: l.direction, src_workload: l.src_workload, src_namespace: l.src_namespace, dst_service: l.dst_service, dst_workload: l.dst_workload, dst_namespace: l.dst_namespace, classification: l.classification }),
      };
      this.#children.set(key, c);
    }
    c.count.inc();
    c.latency.observe(seconds);
  }
}
