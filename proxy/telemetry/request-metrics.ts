// The two per-request golden-signal metrics (meshlet_requests_total, meshlet_request_duration_seconds)
// counted in plain numbers on the hot path, and turned into Prometheus series only when scraped.
// prom-client's labelled inc()/observe() hash and validate the label object on every call
// (children too), ~1 KB of garbage per request; here a request costs one Map lookup by a
// string key and a few additions. The exposition is prom-client's (the registry serializes
// these like its own metrics), so names, types and label sets are unchanged.
import type { Metric, Registry } from 'prom-client';
import { systemClock, type Clock } from '../../api/runtime.ts';

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

type LatencyLabels = Pick<RequestLabels, 'direction' | 'src_workload' | 'src_namespace' | 'dst_service' | 'dst_workload' | 'dst_namespace' | 'classification'>;

interface CountSeries {
  readonly labels: RequestLabels;
  count: number;
}

/** One edge (the latency histogram's label set) and the request counters under it. */
interface EdgeSeries {
  readonly labels: LatencyLabels;
  count: number;
  sum: number;
  /** Non-cumulative counts per bucket of LATENCY_BUCKETS (the +Inf one is count). */
  readonly buckets: Float64Array;
  /** meshlet_requests_total under this edge, by peer identity, status, reason and tls. */
  readonly counts: Map<string, CountSeries>;
  /** count as the last sweep saw it, and when a sweep first saw that value (idle detection off the request path). */
  seen: number;
  seenAt: number;
}

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** Bound on distinct label sets kept (labels come from config and closed code sets; this is a fuse). */
const MAX_SERIES = 10_000;

/** How long a series of a service the config dropped stays after its last request (Linkerd's retain-idle default). */
export const RETAIN_IDLE_MS = 10 * 60_000;

/** Whether two requests count into the same series (every label equal). */
function sameSeries(a: RequestLabels, b: RequestLabels): boolean {
  return (
    a.direction === b.direction &&
    a.status_code === b.status_code &&
    a.dst_service === b.dst_service &&
    a.classification === b.classification &&
    a.error_reason === b.error_reason &&
    a.src_identity === b.src_identity &&
    a.dst_workload === b.dst_workload &&
    a.dst_namespace === b.dst_namespace &&
    a.src_workload === b.src_workload &&
    a.src_namespace === b.src_namespace &&
    a.tls === b.tls
  );
}

/** The series a request counted into, remembered for the next request of its direction. */
interface LastHit {
  readonly labels: RequestLabels;
  readonly edge: EdgeSeries;
  readonly count: CountSeries;
}

export class RequestMetrics {
  readonly #edges = new Map<string, EdgeSeries>();
  #series = 0;
  /**
   * Most requests count into the series the one before them did: comparing their labels is
   * cheaper than building and hashing the two keys (which was ~2 % of a proxy's CPU at ~1000 rps).
   */
  #lastInbound: LastHit | undefined;
  #lastOutbound: LastHit | undefined;
  readonly #clock: Clock;
  readonly #retainIdleMs: number;
  /** The services the config in force names; undefined until a config is applied (nothing is evicted before). */
  #live: { has(name: string): boolean } | undefined;

  constructor(registry: Registry, opts: { clock?: Clock; retainIdleMs?: number } = {}) {
    this.#clock = opts.clock ?? systemClock;
    const retain = opts.retainIdleMs ?? RETAIN_IDLE_MS;
    if (!(retain > 0)) throw new RangeError(`retainIdleMs must be a positive number of milliseconds, got ${retain}`);
    this.#retainIdleMs = retain;
    // Evicting at scrape time (before the counter's samples, which the registry serializes before
    // the histogram's) keeps both metrics showing the same edges, and costs requests nothing.
    registry.registerMetric(
      scraped('meshlet_requests_total', 'Requests handled, by edge, status and classification.', 'counter', () => {
        this.evictIdle();
        return [...this.#edges.values()].flatMap((e) => [...e.counts.values()].map((s) => ({ value: s.count, labels: { ...s.labels } })));
      }),
    );
    registry.registerMetric(scraped('meshlet_request_duration_seconds', 'Time from request received to the end of its response (the last body byte sent, or the exchange abandoned).', 'histogram', () => this.#histogramSamples()));
  }

  /** Count one finished request that took `seconds`. */
  observe(l: RequestLabels, seconds: number): void {
    const last = l.direction === 'inbound' ? this.#lastInbound : this.#lastOutbound;
    if (last !== undefined && sameSeries(last.labels, l)) {
      count(last.edge, seconds);
      last.count.count++;
      return;
    }
    const edge = `${l.direction}\u0001${l.src_workload}\u0001${l.src_namespace}\u0001${l.dst_service}\u0001${l.dst_workload}\u0001${l.dst_namespace}\u0001${l.classification}`;
    if (this.#series >= MAX_SERIES) this.#clear();
    let lat = this.#edges.get(edge);
    if (!lat) {
      lat = { labels: { direction: l.direction, src_workload: l.src_workload, src_namespace: l.src_namespace, dst_service: l.dst_service, dst_workload: l.dst_workload, dst_namespace: l.dst_namespace, classification: l.classification }, count: 0, sum: 0, buckets: new Float64Array(LATENCY_BUCKETS.length), counts: new Map(), seen: 0, seenAt: 0 };
      this.#edges.set(edge, lat);
      this.#series++;
    }
    count(lat, seconds);
    const key = `${l.src_identity}\u0001${l.status_code}\u0001${l.error_reason}\u0001${l.tls}`;
    let c = lat.counts.get(key);
    if (!c) {
      c = { labels: { ...l }, count: 0 };
      lat.counts.set(key, c);
      this.#series++;
    }
    c.count++;
    const hit: LastHit = { labels: l, edge: lat, count: c };
    if (l.direction === 'inbound') this.#lastInbound = hit;
    else this.#lastOutbound = hit;
  }

  /** The services the config now names (called when a config is applied). */
  liveServices(live: { has(name: string): boolean }): void {
    this.#live = live;
  }

  /**
   * Remove the edges (histogram and the counters under it) of outbound requests to a service the
   * config no longer names once no request has counted into them for the retain-idle period
   * (Linkerd's proxy does the same, for every idle series). Without it, churn in service names
   * grows the series until the fuse forgets them all at once. Series of services still named are
   * never evicted (rate() needs a quiet service's counters), nor inbound ones: their dst_service
   * is this proxy's own service, which does not churn. Requests only bump numbers, so idleness
   * is seen here: an edge whose count differs from the last sweep's changed "now"; the idle time
   * measured from there is never longer than the real one.
   */
  evictIdle(): void {
    const live = this.#live;
    if (live === undefined) return;
    const now = this.#clock.now();
    let evicted = false;
    for (const [key, e] of this.#edges) {
      if (e.count !== e.seen) {
        e.seen = e.count;
        e.seenAt = now;
        continue;
      }
      const svc = e.labels.dst_service;
      if (e.labels.direction !== 'outbound' || svc === 'unknown' || live.has(svc) || now - e.seenAt < this.#retainIdleMs) continue;
      this.#edges.delete(key);
      this.#series -= 1 + e.counts.size;
      evicted = true;
    }
    // The remembered series may be gone: the next request must not count into a detached one.
    if (evicted) {
      this.#lastInbound = undefined;
      this.#lastOutbound = undefined;
    }
  }

  /** The fuse: forget every series (Prometheus reads the drop as counter resets). */
  #clear(): void {
    this.#edges.clear();
    this.#series = 0;
    this.#lastInbound = undefined;
    this.#lastOutbound = undefined;
  }

  #histogramSamples(): Sample[] {
    const out: Sample[] = [];
    const name = 'meshlet_request_duration_seconds';
    for (const s of this.#edges.values()) {
      let acc = 0;
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
        acc += s.buckets[i]!;
        out.push({ value: acc, labels: { ...s.labels, le: LATENCY_BUCKETS[i]! }, metricName: `${name}_bucket` });
      }
      out.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${name}_bucket` });
      out.push({ value: s.sum, labels: { ...s.labels }, metricName: `${name}_sum` });
      out.push({ value: s.count, labels: { ...s.labels }, metricName: `${name}_count` });
    }
    return out;
  }
}

/** One request of `seconds` on an edge's histogram. */
function count(edge: EdgeSeries, seconds: number): void {
  edge.count++;
  edge.sum += seconds;
  for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
    if (seconds <= LATENCY_BUCKETS[i]!) {
      edge.buckets[i]!++;
      break;
    }
  }
}

/**
 * A metric the registry serializes like prom-client's own (it calls get() at scrape time). The
 * registry's type names the abstract Metric class; this object has the members it uses.
 */
function scraped(name: string, help: string, type: 'counter' | 'histogram', values: () => Sample[]): Metric {
  const base = { name, help, type, aggregator: 'sum' as const };
  return { ...base, collect: () => undefined, get: async () => ({ ...base, values: values() }), reset: () => undefined } as unknown as Metric;
}
