// One proxy (or all of a namespace's): CPU, memory, connections, in-flight requests, the config
// version it runs, its certificate's remaining life. The scrape config labels targets with
// namespace and pod (manifests/prometheus/scrape-config.yaml, and the local mesh's config).
import { dashboard, labelVariable, stat, table, timeseries } from './grafana.ts';
import { RATE } from './promql.ts';

const P = 'job="meshlet-proxy",namespace=~"$namespace",pod=~"$pod"';

export const proxy = dashboard({
  uid: 'meshlet-proxy',
  title: 'meshlet / Proxy',
  description: 'Resources and state of meshlet proxies: CPU, memory, connections, config version, certificate expiry.',
  variables: [
    labelVariable('namespace', 'Namespace', 'meshlet_config_info{job="meshlet-proxy"}', 'namespace'),
    labelVariable('pod', 'Pod', 'meshlet_config_info{job="meshlet-proxy",namespace=~"$namespace"}', 'pod', { includeAll: true }),
  ],
  panels: [
    stat({ title: 'Proxies up', unit: 'short', queries: [{ expr: `sum(up{${P}})`, legend: 'up', expect: { min: 1 } }] }),
    stat({ title: 'Connected to the control plane', unit: 'short', queries: [{ expr: `sum(meshlet_control_plane_connected{${P}})`, legend: 'connected', expect: { min: 1 } }] }),
    stat({ title: 'Shortest certificate life left', unit: 's', queries: [{ expr: `min(meshlet_identity_leaf_expiry_timestamp_seconds{${P}}) - time()`, legend: 'left', expect: { min: 0 } }] }),
    stat({ title: 'Config refusals (NACKs) in range', unit: 'short', queries: [{ expr: `sum(increase(meshlet_config_updates_total{${P},result="refused"}[$__range]))`, legend: 'refused', expect: { min: 0 } }] }),
    timeseries({ title: 'CPU', description: 'Cores used (1 = one full core).', unit: 'percentunit', queries: [{ expr: `rate(meshlet_proxy_process_cpu_seconds_total{${P}}[${RATE}])`, legend: '{{pod}}', expect: { min: 0 } }] }),
    timeseries({
      title: 'Memory',
      description: 'RSS, V8 heap in use, and the heap cap (half the proxy\'s memory limit in a Pod): heap use near the cap means the proxy is about to run out of heap.',
      unit: 'bytes',
      queries: [
        { expr: `meshlet_proxy_process_resident_memory_bytes{${P}}`, legend: '{{pod}} RSS', expect: { min: 1e6 } },
        { expr: `meshlet_proxy_nodejs_heap_size_used_bytes{${P}}`, legend: '{{pod}} heap used', expect: { min: 1e5 } },
        // At the cap the proxy exits with "JavaScript heap out of memory" (alert MeshletProxyHeapNearLimit).
        { expr: `meshlet_proxy_nodejs_heap_size_limit_bytes{${P}}`, legend: '{{pod}} heap cap', expect: { min: 1e6 } },
      ],
    }),
    timeseries({
      title: 'Event loop utilization',
      description: 'Share of time the proxy ran code instead of waiting for I/O; near 1 it is saturated and requests queue.',
      unit: 'percentunit',
      queries: [{ expr: `rate(meshlet_proxy_nodejs_eventloop_busy_seconds_total{${P}}[${RATE}])`, legend: '{{pod}}', expect: { min: 0, max: 1 } }],
    }),
    timeseries({
      title: 'Connections and requests in flight',
      unit: 'short',
      queries: [
        { expr: `sum by (pod, direction) (meshlet_tcp_connections_open{${P}})`, legend: '{{pod}} {{direction}} connections', expect: { min: 0 } },
        { expr: `sum by (pod, direction) (meshlet_requests_in_flight{${P}})`, legend: '{{pod}} {{direction}} in flight', expect: { min: 0 } },
      ],
    }),
    timeseries({ title: 'New connections', unit: 'ops', queries: [{ expr: `sum by (pod, direction) (rate(meshlet_tcp_connections_total{${P}}[${RATE}]))`, legend: '{{pod}} {{direction}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Authorization decisions', unit: 'ops', queries: [{ expr: `sum by (pod, policy, decision) (rate(meshlet_authz_decisions_total{${P}}[${RATE}]))`, legend: '{{pod}} {{policy}} {{decision}}', expect: { min: 0 } }] }),
    table({ title: 'Config version in force', unit: 'none', queries: [{ expr: `max by (pod, version) (meshlet_config_info{${P}})`, expect: { min: 1, max: 1 } }] }),
    timeseries({ title: 'Config updates', unit: 'ops', queries: [{ expr: `sum by (pod, result) (rate(meshlet_config_updates_total{${P}}[${RATE}]))`, legend: '{{pod}} {{result}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Certificate life left', unit: 's', queries: [{ expr: `meshlet_identity_leaf_expiry_timestamp_seconds{${P}} - time()`, legend: '{{pod}} {{identity}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Certificate requests', unit: 'ops', queries: [{ expr: `sum by (pod, result) (rate(meshlet_identity_renewals_total{${P}}[${RATE}]))`, legend: '{{pod}} {{result}}', expect: { min: 0 } }] }),
  ],
});
