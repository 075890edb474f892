// The control plane: is it up, who is connected, how fast config reaches proxies and whether
// they accept it, the CA (issued/refused, expiries) and the injector.
import { dashboard, stat, timeseries, row } from './grafana.ts';
import { RATE } from './promql.ts';

const CP = 'job="meshlet-control-plane"';
const PX = 'job="meshlet-proxy"';

export const controlPlane = dashboard({
  uid: 'meshlet-control-plane',
  title: 'meshlet / Control plane',
  description: 'Control plane replicas, connected proxies, config push latency and NACKs, certificates issued and refused, CA expiry, injections.',
  variables: [],
  panels: [
    stat({ title: 'Control plane replicas up', unit: 'short', queries: [{ expr: `sum(up{${CP}})`, legend: 'up', expect: { min: 1 } }] }),
    stat({ title: 'Connected proxies', unit: 'short', queries: [{ expr: `sum(meshlet_cp_connected_proxies{${CP}})`, legend: 'connected', expect: { min: 1 } }] }),
    stat({ title: 'Proxies without a control plane', description: 'Proxies reporting no config stream.', unit: 'short', queries: [{ expr: `count(meshlet_control_plane_connected{${PX}} == 0) or vector(0)`, legend: 'disconnected', expect: { min: 0, max: 0 } }] }),
    stat({ title: 'Issuer certificate life left', unit: 's', queries: [{ expr: `min(meshlet_ca_issuer_expiry_timestamp_seconds{${CP}}) - time()`, legend: 'issuer', expect: { min: 86400 } }] }),
    row('Config push'),
    timeseries({ title: 'Config pushes', unit: 'ops', queries: [{ expr: `sum(rate(meshlet_cp_pushes_total{${CP}}[${RATE}]))`, legend: 'pushes', expect: { min: 0 } }] }),
    timeseries({
      title: 'Change to ACK latency',
      description: 'From a change seen by the control plane to a proxy ACKing the version that carries it.',
      unit: 's',
      queries: [
        { expr: `histogram_quantile(0.5, sum by (le) (rate(meshlet_cp_change_to_ack_seconds_bucket{${CP}}[${RATE}])))`, legend: 'p50', expect: { min: 0, quantile: 0.5 } },
        { expr: `histogram_quantile(0.99, sum by (le) (rate(meshlet_cp_change_to_ack_seconds_bucket{${CP}}[${RATE}])))`, legend: 'p99', expect: { min: 0, quantile: 0.99 } },
      ],
    }),
    timeseries({
      title: 'Config refused (NACKs) and view errors',
      unit: 'ops',
      queries: [
        { expr: `sum(rate(meshlet_config_updates_total{${PX},result="refused"}[${RATE}]))`, legend: 'NACKs (proxies)', expect: { min: 0, max: 0 } },
        { expr: `sum(rate(meshlet_cp_view_errors_total{${CP}}[${RATE}]))`, legend: 'views not built', expect: { min: 0, max: 0 } },
      ],
    }),
    timeseries({ title: 'Push size (mean)', unit: 'bytes', queries: [{ expr: `sum(meshlet_cp_push_size_bytes_sum{${CP}}) / sum(meshlet_cp_push_size_bytes_count{${CP}})`, legend: 'bytes per push', expect: { min: 1 } }] }),
    row('Certificates'),
    timeseries({ title: 'Certificates issued', unit: 'ops', queries: [{ expr: `sum by (proof) (rate(meshlet_ca_certificates_issued_total{${CP}}[${RATE}]))`, legend: '{{proof}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Certificate requests refused', unit: 'ops', queries: [{ expr: `sum by (reason) (rate(meshlet_ca_certificates_refused_total{${CP}}[${RATE}]))`, legend: '{{reason}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Signing time (mean since start)', unit: 's', queries: [{ expr: `sum(meshlet_ca_signing_duration_seconds_sum{${CP}}) / sum(meshlet_ca_signing_duration_seconds_count{${CP}})`, legend: 'mean', expect: { min: 0, max: 1 } }] }),
    timeseries({
      title: 'CA certificate life left',
      unit: 's',
      queries: [
        { expr: `min by (role) (meshlet_ca_anchor_expiry_timestamp_seconds{${CP}}) - time()`, legend: 'anchor ({{role}})', expect: { min: 86400 } },
        { expr: `min(meshlet_ca_issuer_expiry_timestamp_seconds{${CP}}) - time()`, legend: 'issuer', expect: { min: 86400 } },
        { expr: `min(meshlet_identity_leaf_expiry_timestamp_seconds{${PX}}) - time()`, legend: 'shortest proxy leaf', expect: { min: 0 } },
      ],
    }),
    row('Injector'),
    timeseries({ title: 'Injections by outcome', unit: 'ops', queries: [{ expr: `sum by (outcome, reason) (rate(meshlet_injections_total{${CP}}[${RATE}]))`, legend: '{{outcome}} {{reason}}', expect: { min: 0 } }] }),
    timeseries({
      title: 'Injection latency',
      unit: 's',
      queries: [
        { expr: `histogram_quantile(0.5, sum by (le) (rate(meshlet_injection_duration_seconds_bucket{${CP}}[${RATE}])))`, legend: 'p50', expect: { min: 0, quantile: 0.5 } },
        { expr: `histogram_quantile(0.99, sum by (le) (rate(meshlet_injection_duration_seconds_bucket{${CP}}[${RATE}])))`, legend: 'p99', expect: { min: 0, quantile: 0.99 } },
      ],
    }),
    row('Resources'),
    timeseries({ title: 'CPU', unit: 'percentunit', queries: [{ expr: `rate(meshlet_control_plane_process_cpu_seconds_total{${CP}}[${RATE}])`, legend: '{{instance}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Memory (RSS)', unit: 'bytes', queries: [{ expr: `meshlet_control_plane_process_resident_memory_bytes{${CP}}`, legend: '{{instance}}', expect: { min: 1e6 } }] }),
  ],
});
