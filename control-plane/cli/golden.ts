// Golden signals from two scrapes of every proxy's /metrics: per edge (source workload → destination
// service, from the caller's outbound side) and per service (the callee's inbound side). Pure: the
// caller does the I/O and passes the text, the config and the time between the scrapes.
import type { ProxyErrorCode } from '../../proxy/errors.ts';

export interface Sample {
  name: string;
  labels: Readonly<Record<string, string>>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The Prometheus text exposition format, only the samples (names starting with `meshlet_`). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('meshlet_') || line.startsWith('meshlet_proxy_')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** What stat needs of one proxy's config (/config): endpoint identities and split weights. */
export interface ConfigView {
  services: ReadonlyArray<{ name: string; endpoints: ReadonlyArray<{ address: string; identity?: string }>; routes?: ReadonlyArray<{ name: string; backends?: ReadonlyArray<{ service: string; weight: number }> }> }>;
}

export interface ProxyScrape {
  workload: string;
  /** The service this workload serves (inbound), if any. */
  service: string | undefined;
  before: readonly Sample[];
  after: readonly Sample[];
  config: ConfigView | undefined;
}

export interface Split {
  /** The service callers name (`api.demo`); the split picks this edge's destination for it. */
  service: string;
  weight: number;
  /** weight / sum of weights. */
  share: number;
}

/** The golden signals of an edge or a service over one window. */
export interface GoldenSignals {
  requests: number;
  rps: number;
  /** 0..1; null without requests. */
  successRate: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Share of the requests sent to an endpoint that went over mTLS (0..1); null without any. */
  mtls: number | null;
}

export interface EdgeStat extends GoldenSignals {
  source: string;
  destination: string;
  /** The identities the destination's endpoints must prove (the caller checks them on connect). */
  serverIdentities: string[];
  /** Peer identities the destination's inbound side saw during the window (from every caller). */
  clientIdentities: string[];
  split: Split | null;
  breaker: { closed: number; open: number; probation: number };
  ejections: number;
}

export interface ServiceStat extends GoldenSignals {
  workload: string;
  service: string;
}

export interface RetryStat {
  source: string;
  service: string;
  retries: number;
  budgetExhausted: number;
}

export interface StatResult {
  windowSeconds: number;
  edges: EdgeStat[];
  services: ServiceStat[];
  retries: RetryStat[];
}

/** Counter increase between two scrapes, by a key of its labels; a reset counts from zero. */
export function increase(before: readonly Sample[], after: readonly Sample[], name: string, key: (l: Readonly<Record<string, string>>) => string | undefined): Map<string, number> {
  const id = (s: Sample) => JSON.stringify(s.labels);
  const prev = new Map<string, number>();
  for (const s of before) if (s.name === name) prev.set(id(s), s.value);
  const out = new Map<string, number>();
  for (const s of after) {
    if (s.name !== name) continue;
    const k = key(s.labels);
    if (k === undefined) continue;
    const p = prev.get(id(s)) ?? 0;
    const d = s.value >= p ? s.value - p : s.value;
    out.set(k, (out.get(k) ?? 0) + d);
  }
  return out;
}

/**
 * histogram_quantile over cumulative bucket counts (upper bound → count ≤ bound), linear within a
 * bucket as Prometheus does; the +Inf bucket answers its lower bound. null when empty.
 */
export function quantile(q: number, buckets: ReadonlyMap<number, number>): number | null {
  const sorted = [...buckets].toSorted((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      const inBucket = count - prevCount;
      return inBucket <= 0 ? bound : prevBound + ((bound - prevBound) * (rank - prevCount)) / inBucket;
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}

const ms = (v: number | null) => (v === null ? null : Math.round(v * 1e5) / 100);

function latency(p: ProxyScrape, direction: string, match: (l: Readonly<Record<string, string>>) => boolean): { p50Ms: number | null; p99Ms: number | null } {
  const d = increase(p.before, p.after, 'meshlet_request_duration_seconds_bucket', (l) => (l['direction'] === direction && match(l) ? l['le'] : undefined));
  const buckets = new Map<number, number>();
  for (const [le, n] of d) buckets.set(le === '+Inf' ? Infinity : Number(le), n);
  return { p50Ms: ms(quantile(0.5, buckets)), p99Ms: ms(quantile(0.99, buckets)) };
}

const shortName = (s: string) => s.split('.')[0]!;

/** The split that sends a caller's traffic for some service to `backend`, from the caller's config. */
export function splitFor(cfg: ConfigView | undefined, backend: string): Split | null {
  for (const svc of cfg?.services ?? []) {
    for (const r of svc.routes ?? []) {
      const b = r.backends?.find((x) => x.service === backend);
      if (!b || r.backends!.length < 2) continue;
      const total = r.backends!.reduce((a, x) => a + x.weight, 0);
      return { service: svc.name, weight: b.weight, share: total > 0 ? b.weight / total : 0 };
    }
  }
  return null;
}

interface Tally {
  requests: number;
  ok: number;
  tls: number;
  /** Requests that went to an endpoint (not refused by the proxy before picking one). */
  sent: number;
}

/**
 * Whether a request that ended in this proxy error went to an endpoint. Those refused before one
 * is picked (or before their head was read) say nothing about mTLS. A Record, so a new error code
 * cannot be added without deciding here.
 */
const SENT: Readonly<Record<ProxyErrorCode, boolean>> = {
  'bad-request': false,
  'header-too-large': false,
  'header-timeout': false,
  'unsupported-protocol': false,
  'no-config': false,
  'no-route': false,
  'no-endpoints': false,
  'breaker-open': false,
  'concurrency-limit': false,
  'budget-exhausted': false,
  // An inbound refusal by policy: the request came over the connection its tls label describes.
  forbidden: true,
  'connect-refused': true,
  'connect-timeout': true,
  'connect-failed': true,
  'identity-mismatch': true,
  'tls-failed': true,
  'upstream-reset': true,
  'upstream-error': true,
  'per-try-timeout': true,
  'request-timeout': true,
};
/** No reason (a response from upstream) or one this CLI does not know (a newer proxy): sent. */
const notSent = (reason: string | undefined): boolean => Object.hasOwn(SENT, reason ?? '') && !SENT[reason as ProxyErrorCode];

function tally(p: ProxyScrape, direction: string, key: (l: Readonly<Record<string, string>>) => string): Map<string, Tally> {
  const out = new Map<string, Tally>();
  const d = increase(p.before, p.after, 'meshlet_requests_total', (l) => (l['direction'] === direction ? `${key(l)}\u0000${l['classification']}\u0000${l['tls']}\u0000${notSent(l['error_reason']) ? 0 : 1}` : undefined));
  for (const [k, n] of d) {
    const [name, cls, tls, sent] = k.split('\u0000') as [string, string, string, string];
    const t = out.get(name) ?? { requests: 0, ok: 0, tls: 0, sent: 0 };
    t.requests += n;
    if (cls === 'success') t.ok += n;
    if (sent === '1') {
      t.sent += n;
      if (tls === 'true') t.tls += n;
    }
    out.set(name, t);
  }
  return out;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

export function goldenSignals(proxies: readonly ProxyScrape[], windowSeconds: number): StatResult {
  const edges: EdgeStat[] = [];
  const services: ServiceStat[] = [];
  const retries: RetryStat[] = [];
  const clientIds = new Map<string, string[]>();
  for (const p of proxies) {
    if (!p.service) continue;
    const ids = increase(p.before, p.after, 'meshlet_requests_total', (l) => (l['direction'] === 'inbound' ? l['src_identity'] : undefined));
    clientIds.set(shortName(p.service), [...ids].filter(([id, n]) => n > 0 && id !== '').map(([id]) => id).toSorted());
    const t = tally(p, 'inbound', () => 'in').get('in') ?? { requests: 0, ok: 0, tls: 0, sent: 0 };
    services.push({ workload: p.workload, service: p.service, requests: t.requests, rps: t.requests / windowSeconds, successRate: ratio(t.ok, t.requests), ...latency(p, 'inbound', () => true), mtls: ratio(t.tls, t.sent) });
  }
  for (const p of proxies) {
    const ejections = increase(p.before, p.after, 'meshlet_endpoint_ejections_total', (l) => l['dst_service']);
    for (const [dst, t] of tally(p, 'outbound', (l) => l['dst_service'] ?? '')) {
      const breaker = { closed: 0, open: 0, probation: 0 };
      for (const s of p.after) {
        if (s.name !== 'meshlet_endpoint_breaker_state' || s.labels['dst_service'] !== dst) continue;
        if (s.value === 1) breaker.open++;
        else if (s.value === 2) breaker.probation++;
        else breaker.closed++;
      }
      const svc = p.config?.services.find((s) => s.name === dst);
      edges.push({
        source: p.workload,
        destination: dst,
        requests: t.requests,
        rps: t.requests / windowSeconds,
        successRate: ratio(t.ok, t.requests),
        ...latency(p, 'outbound', (l) => l['dst_service'] === dst),
        mtls: ratio(t.tls, t.sent),
        serverIdentities: [...new Set((svc?.endpoints ?? []).map((e) => e.identity ?? '').filter((x) => x !== ''))].toSorted(),
        clientIdentities: clientIds.get(shortName(dst)) ?? [],
        split: splitFor(p.config, dst),
        breaker,
        ejections: ejections.get(dst) ?? 0,
      });
    }
    const r = increase(p.before, p.after, 'meshlet_retries_total', (l) => l['dst_service']);
    const b = increase(p.before, p.after, 'meshlet_retry_budget_exhausted_total', (l) => l['dst_service']);
    for (const service of new Set([...r.keys(), ...b.keys()])) retries.push({ source: p.workload, service, retries: r.get(service) ?? 0, budgetExhausted: b.get(service) ?? 0 });
  }
  edges.sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
  return { windowSeconds, edges, services, retries };
}
