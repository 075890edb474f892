// meshlet's Prometheus rules as typed values: recording rules for the SLO ratios, then alerts.
// scripts/gen-observe.ts renders them to manifests/prometheus/rules.yaml and a PrometheusRule.
//
// Burn-rate alerts follow the multi-window, multi-burn-rate scheme of Google's SRE workbook
// ("Alerting on SLOs"): a fast pair (1 h and 5 m at 14.4x, 6 h and 30 m at 6x) pages, a slow pair
// (1 d and 2 h at 3x, 3 d and 6 h at 1x) opens a ticket. The short window makes an alert stop soon
// after the burn stops.

export interface RecordingRule {
  record: string;
  expr: string;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels: { severity: 'critical' | 'warning' };
  /** Only `{{ $labels.x }}` templates: the unit tests expand them to check the exact text. */
  annotations: { summary: string; description: string };
}

export type Rule = RecordingRule | AlertRule;

export interface RuleGroup {
  name: string;
  rules: Rule[];
}

/** The objectives every service is held to unless you change them here and regenerate. */
export const SLO = {
  /** 99.9 % of inbound requests succeed (classification="success"). */
  availability: 0.999,
  /** 99 % of inbound requests get response headers within `latencySeconds` (a histogram bucket bound). */
  latencyTarget: 0.99,
  latencySeconds: '0.5',
} as const;

/** Certificates of the CA (issuer, trust anchors) alert this long before notAfter. */
export const CA_EXPIRY_WARNING_SECONDS = 7 * 86400;
/**
 * Leaves live 24 h and renew at ~70 % of their life (minus up to 10 % jitter), so a healthy leaf
 * always has more than ~7 h left; less than 6 h means renewals have been failing for hours.
 * (A 7-day threshold would fire for every healthy leaf.)
 */
export const LEAF_EXPIRY_WARNING_SECONDS = 6 * 3600;

/**
 * A proxy whose heap stays above this share of its cap is close to exiting with "JavaScript heap
 * out of memory" (V8 collects harder as the heap nears its cap; a healthy proxy's view sits far
 * below it, a view too large for the cap does not shrink).
 */
export const HEAP_WARNING_RATIO = 0.85;

const WINDOWS = ['5m', '30m', '1h', '2h', '6h', '1d', '3d'] as const;
type Window = (typeof WINDOWS)[number];

/** Inbound requests are counted by the serving proxy: the service's own view of itself. */
const INBOUND = 'direction="inbound"';
const BY_SERVICE = 'dst_namespace, dst_service';

export const errorRatio = (w: Window): string => `service:meshlet_requests:error_ratio_rate${w}`;
export const slowRatio = (w: Window): string => `service:meshlet_requests:slow_ratio_rate${w}`;

function recordingRules(): RecordingRule[] {
  const out: RecordingRule[] = [];
  for (const w of WINDOWS) {
    // A service that never failed has no failure series: `or ... * 0` makes its ratio 0, not absent.
    const all = `sum by (${BY_SERVICE}) (rate(meshlet_requests_total{${INBOUND}}[${w}]))`;
    out.push({
      record: errorRatio(w),
      expr: `(\n  sum by (${BY_SERVICE}) (rate(meshlet_requests_total{${INBOUND},classification="failure"}[${w}]))\n  or\n  ${all} * 0\n)\n/\n${all}`,
    });
    out.push({
      record: slowRatio(w),
      expr: `1 - (\n  sum by (${BY_SERVICE}) (rate(meshlet_request_duration_seconds_bucket{${INBOUND},le="${SLO.latencySeconds}"}[${w}]))\n  /\n  sum by (${BY_SERVICE}) (rate(meshlet_request_duration_seconds_count{${INBOUND}}[${w}]))\n)`,
    });
  }
  return out;
}

/** `long and short` over the burn factor, for each window pair, or-ed. */
function burn(ratio: (w: Window) => string, budget: number, pairs: Array<[Window, Window, number]>): string {
  return pairs.map(([long, short, factor]) => `(\n  ${ratio(long)} > (${factor} * ${round(budget)})\n  and\n  ${ratio(short)} > (${factor} * ${round(budget)})\n)`).join('\nor\n');
}

const round = (x: number): string => String(Math.round(x * 1e9) / 1e9);
const FAST: Array<[Window, Window, number]> = [
  ['1h', '5m', 14.4],
  ['6h', '30m', 6],
];
const SLOW: Array<[Window, Window, number]> = [
  ['1d', '2h', 3],
  ['3d', '6h', 1],
];

const svc = '{{ $labels.dst_namespace }}/{{ $labels.dst_service }}';

function sloAlerts(): AlertRule[] {
  const errBudget = 1 - SLO.availability;
  const slowBudget = 1 - SLO.latencyTarget;
  const avail = `${SLO.availability * 100} %`;
  const lat = `${SLO.latencyTarget * 100} % within ${SLO.latencySeconds} s`;
  return [
    {
      alert: 'MeshletServiceErrorBudgetBurnFast',
      expr: burn(errorRatio, errBudget, FAST),
      for: '2m',
      labels: { severity: 'critical' },
      annotations: {
        summary: `${svc} is burning its error budget fast`,
        description: `Inbound requests to ${svc} fail at more than 6x the rate its ${avail} availability objective allows (1 h and 5 m at 14.4x, or 6 h and 30 m at 6x): at this pace the 30-day budget lasts days. Look at the Service dashboard's status codes and proxy error reasons.`,
      },
    },
    {
      alert: 'MeshletServiceErrorBudgetBurnSlow',
      expr: burn(errorRatio, errBudget, SLOW),
      for: '15m',
      labels: { severity: 'warning' },
      annotations: {
        summary: `${svc} is burning its error budget`,
        description: `Inbound requests to ${svc} have failed faster than its ${avail} availability objective allows for hours (1 d and 2 h at 3x, or 3 d and 6 h at 1x).`,
      },
    },
    {
      alert: 'MeshletServiceLatencyBudgetBurnFast',
      expr: burn(slowRatio, slowBudget, FAST),
      for: '2m',
      labels: { severity: 'critical' },
      annotations: {
        summary: `${svc} is too slow, fast`,
        description: `Too many inbound requests to ${svc} take longer than its latency objective (${lat}) allows (1 h and 5 m at 14.4x, or 6 h and 30 m at 6x). Look at the Service dashboard's latency percentiles.`,
      },
    },
    {
      alert: 'MeshletServiceLatencyBudgetBurnSlow',
      expr: burn(slowRatio, slowBudget, SLOW),
      for: '15m',
      labels: { severity: 'warning' },
      annotations: {
        summary: `${svc} is too slow`,
        description: `Inbound requests to ${svc} have missed its latency objective (${lat}) for hours (1 d and 2 h at 3x, or 3 d and 6 h at 1x).`,
      },
    },
  ];
}

function certificateAlerts(): AlertRule[] {
  return [
    {
      alert: 'MeshletProxyCertificateExpiring',
      expr: `meshlet_identity_leaf_expiry_timestamp_seconds - time() < ${LEAF_EXPIRY_WARNING_SECONDS}`,
      for: '5m',
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Proxy {{ $labels.instance }} holds a leaf certificate that expires within 6 hours',
        description: 'The leaf of {{ $labels.identity }} should have been renewed at ~70 % of its life and was not: renewals are failing (meshlet_identity_renewals_total{result="failed"}, the proxy\'s /ready). When it expires, mTLS to and from this proxy stops.',
      },
    },
    {
      alert: 'MeshletIssuerCertificateExpiring',
      expr: `meshlet_ca_issuer_expiry_timestamp_seconds - time() < ${CA_EXPIRY_WARNING_SECONDS}`,
      for: '5m',
      labels: { severity: 'warning' },
      annotations: {
        summary: 'The mesh issuer certificate (serial {{ $labels.serial }}) expires within 7 days',
        description: 'Rotate the issuer (`meshlet identity rotate-issuer`) before it expires: leaves it signed stop being trusted at its notAfter.',
      },
    },
    {
      alert: 'MeshletTrustAnchorExpiring',
      // A previous anchor is being retired on purpose; current and next ones must stay valid.
      expr: `meshlet_ca_anchor_expiry_timestamp_seconds{role!="previous"} - time() < ${CA_EXPIRY_WARNING_SECONDS}`,
      for: '5m',
      labels: { severity: 'critical' },
      annotations: {
        summary: 'The {{ $labels.role }} trust anchor (serial {{ $labels.serial }}) expires within 7 days',
        description: 'Roll the trust anchor (`meshlet identity add-anchor`, then `use-anchor`, then `remove-anchor`): when it expires, no proxy trusts any certificate below it.',
      },
    },
  ];
}

function controlAlerts(): AlertRule[] {
  return [
    {
      alert: 'MeshletProxyConfigRefused',
      expr: 'increase(meshlet_config_updates_total{result="refused"}[15m]) > 0',
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Proxy {{ $labels.instance }} refused (NACKed) a config update',
        description: 'The proxy keeps its last good config, so it misses the changes since. `meshlet proxy-status` shows the reason; `meshlet proxy-config` what it runs.',
      },
    },
    {
      alert: 'MeshletProxyDisconnected',
      expr: 'meshlet_control_plane_connected == 0',
      for: '5m',
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Proxy {{ $labels.instance }} has no config stream to the control plane',
        description: 'The proxy keeps serving on its last config but misses updates and endpoint changes. Check the control plane and the network between them. (A proxy started with --config, without a control plane, also reports 0.)',
      },
    },
    {
      alert: 'MeshletControlPlaneDown',
      expr: 'absent(up{job="meshlet-control-plane"} == 1)',
      for: '5m',
      labels: { severity: 'critical' },
      annotations: {
        summary: 'No meshlet control plane is up',
        description: 'Prometheus has scraped no healthy meshlet-control-plane target for 5 minutes. Proxies keep serving their last config, but no certificate is issued or renewed and no config change reaches them.',
      },
    },
    {
      alert: 'MeshletControlPlaneNotSynced',
      expr: 'meshlet_cp_kube_synced == 0',
      for: '5m',
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Control plane {{ $labels.instance }} has not listed the cluster',
        description: 'Until its Kubernetes source has listed every kind once it sends no config, so new proxies behind it stay not ready, and it is not ready itself. Its /ready names what it cannot list and why (an RBAC 403, the API server unreachable).',
      },
    },
    {
      alert: 'MeshletControlPlaneWatchDown',
      expr: 'meshlet_cp_kube_watch_up == 0',
      for: '10m',
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Control plane {{ $labels.instance }} cannot watch {{ $labels.kind }}',
        description: 'Its list or watch of {{ $labels.kind }} has failed for 10 minutes (or, for a meshlet resource, its CRD is not installed): proxies are served the last state it listed, and changes to {{ $labels.kind }} do not reach them. The control plane\'s log and /ready (kubernetes.informers) say why.',
      },
    },
    {
      alert: 'MeshletInjectorErrors',
      expr: 'sum by (reason) (increase(meshlet_injections_total{outcome="error"}[10m])) > 0',
      labels: { severity: 'warning' },
      annotations: {
        summary: 'The sidecar injector failed ({{ $labels.reason }})',
        description: 'Pods admitted in the last 10 minutes may run without the meshlet proxy (or were refused, depending on the webhook\'s failurePolicy). See the control plane\'s log.',
      },
    },
  ];
}

function resourceAlerts(): AlertRule[] {
  return [
    {
      alert: 'MeshletProxyHeapNearLimit',
      // Both gauges come from the same scrape, so they match on all their labels.
      expr: `meshlet_proxy_nodejs_heap_size_used_bytes / meshlet_proxy_nodejs_heap_size_limit_bytes > ${HEAP_WARNING_RATIO}`,
      for: '5m',
      labels: { severity: 'warning' },
      annotations: {
        summary: `Proxy {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.instance }}) has used more than ${HEAP_WARNING_RATIO * 100} % of its heap cap for 5 minutes`,
        description: 'At its cap the proxy exits with "JavaScript heap out of memory" and restarts. Its config view is most likely too large for the heap (thousands of services): raise the `config.meshlet.io/proxy-memory-limit` annotation in the workload\'s Pod template (the heap cap is half of it; 1Gi gives 512 MB, enough for 10 000 services with 3 endpoints each): the injector sets the cap as each new Pod is created.',
      },
    },
  ];
}

export function ruleGroups(): RuleGroup[] {
  return [
    { name: 'meshlet-slo-ratios', rules: recordingRules() },
    { name: 'meshlet-slo-burn', rules: sloAlerts() },
    { name: 'meshlet-certificates', rules: certificateAlerts() },
    { name: 'meshlet-control', rules: controlAlerts() },
    { name: 'meshlet-resources', rules: resourceAlerts() },
  ];
}

export const isAlert = (r: Rule): r is AlertRule => 'alert' in r;
