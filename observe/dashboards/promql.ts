// PromQL building blocks over the proxies' metric names (proxy/telemetry/metrics.ts). Grafana
// fills $namespace, $service... and $__rate_interval (at least four scrape intervals).
export const RATE = '$__rate_interval';

/** Label matchers, written as Prometheus selectors: sel({direction: 'inbound'}) → `direction="inbound"`. */
export const sel = (m: Record<string, string>): string =>
  Object.entries(m)
    .map(([k, v]) => (v.startsWith('=~') || v.startsWith('!=') || v.startsWith('!~') ? `${k}${v}` : `${k}="${v}"`))
    .join(',');

export const requestsRate = (matchers: string, by: string): string => `sum by (${by}) (rate(meshlet_requests_total{${matchers}}[${RATE}]))`;

export const successRatio = (matchers: string, by: string): string =>
  `sum by (${by}) (rate(meshlet_requests_total{${matchers},classification="success"}[${RATE}]))\n/\n${requestsRate(matchers, by)}`;

/** Failing share, 0 (not missing) for edges that never failed: `or` fills them from the total. */
export const failureRatio = (matchers: string, by: string): string =>
  `(\n  sum by (${by}) (rate(meshlet_requests_total{${matchers},classification="failure"}[${RATE}]))\n  or\n  0 * ${requestsRate(matchers, by)}\n)\n/\n${requestsRate(matchers, by)}`;

export const tlsRatio = (matchers: string, by: string): string => `sum by (${by}) (rate(meshlet_requests_total{${matchers},tls="true"}[${RATE}]))\n/\n${requestsRate(matchers, by)}`;

export const quantile = (q: number, matchers: string, by: string): string =>
  `histogram_quantile(${q}, sum by (le${by ? `, ${by}` : ''}) (rate(meshlet_request_duration_seconds_bucket{${matchers}}[${RATE}])))`;

/** p50, p95, p99 targets of one latency panel. */
export const percentiles = (matchers: string, by: string, legendPrefix: string) =>
  ([0.5, 0.95, 0.99] as const).map((q) => ({ expr: quantile(q, matchers, by), legend: `${legendPrefix}p${Math.round(q * 100)}`, expect: { min: 0, quantile: q } }));

/** An error reason of "" means the application answered: named "app" on the legend. */
export const byErrorReason = (matchers: string, by: string): string =>
  `label_replace(\n  ${requestsRate(matchers, `${by ? `${by}, ` : ''}error_reason`)},\n  "error_reason", "app", "error_reason", ""\n)`;

/**
 * Series of a per-proxy metric (labelled by dst_service only) kept for the proxies that serve as
 * the given outbound source: joined on the scrape target (instance).
 */
export const fromProxiesOf = (expr: string, sourceMatchers: string): string =>
  `${expr}\nand on (instance)\ngroup by (instance) (meshlet_requests_total{direction="outbound",${sourceMatchers}})`;

/**
 * A per-proxy metric kept for the proxies of one service: those that serve it (its inbound series)
 * or call out as it (its outbound series). A service that calls nothing has only the first.
 */
export const fromServiceProxies = (expr: string, inboundMatchers: string, sourceMatchers: string): string =>
  `${expr}\nand on (instance)\n(\n  group by (instance) (meshlet_requests_total{${inboundMatchers}})\n  or\n  group by (instance) (meshlet_requests_total{direction="outbound",${sourceMatchers}})\n)`;

export const INBOUND = 'direction="inbound"';
export const OUTBOUND = 'direction="outbound"';
