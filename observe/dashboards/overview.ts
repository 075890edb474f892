// Mesh overview: golden signals for every service at once, mTLS coverage, the worst edges.
import { dashboard, labelVariable, stat, table, timeseries, row } from './grafana.ts';
import { failureRatio, INBOUND, OUTBOUND, percentiles, requestsRate, successRatio, tlsRatio } from './promql.ts';

const IN = `${INBOUND},dst_namespace=~"$namespace"`;
const SVC = 'dst_namespace, dst_service';

export const overview = dashboard({
  uid: 'meshlet-overview',
  title: 'meshlet / Mesh overview',
  description: 'Success rate, request rate and latency of every meshed service (as its own proxies see inbound traffic), mTLS coverage and the edges that fail most.',
  variables: [labelVariable('namespace', 'Namespace', `meshlet_requests_total{${INBOUND}}`, 'dst_namespace', { includeAll: true })],
  panels: [
    stat({ title: 'Success rate', unit: 'percentunit', queries: [{ expr: successRatio(IN, 'direction'), legend: 'success', expect: { min: 0, max: 1 } }] }),
    stat({ title: 'Request rate', description: 'Inbound requests per second to meshed services (a request through two hops counts twice).', unit: 'reqps', queries: [{ expr: requestsRate(IN, 'direction'), legend: 'requests', expect: { min: 0 } }] }),
    stat({ title: 'mTLS share', description: 'Share of inbound requests that arrived over mutual TLS.', unit: 'percentunit', queries: [{ expr: tlsRatio(IN, 'direction'), legend: 'mTLS', expect: { min: 0, max: 1 } }] }),
    stat({ title: 'Proxies up', unit: 'short', queries: [{ expr: 'sum(up{job="meshlet-proxy"})', legend: 'proxies', expect: { min: 1 } }] }),
    row('Per service (inbound)'),
    timeseries({ title: 'Success rate by service', unit: 'percentunit', min: 0, max: 1, queries: [{ expr: successRatio(IN, SVC), legend: '{{dst_namespace}}/{{dst_service}}', expect: { min: 0, max: 1 } }] }),
    timeseries({ title: 'Request rate by service', unit: 'reqps', queries: [{ expr: requestsRate(IN, SVC), legend: '{{dst_namespace}}/{{dst_service}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Latency by service', unit: 's', w: 24, queries: percentiles(IN, SVC, '{{dst_namespace}}/{{dst_service}} ') }),
    timeseries({ title: 'mTLS share by service', unit: 'percentunit', min: 0, max: 1, queries: [{ expr: tlsRatio(IN, SVC), legend: '{{dst_namespace}}/{{dst_service}}', expect: { min: 0, max: 1 } }] }),
    table({
      title: 'Top failing edges',
      description: 'Outbound edges (calling workload → destination service) by failing share, worst first; healthy edges show 0.',
      unit: 'percentunit',
      queries: [{ expr: `topk(10, ${failureRatio(`${OUTBOUND},src_namespace=~"$namespace"`, 'src_namespace, src_workload, dst_service')})`, expect: { min: 0, max: 1 } }],
    }),
  ],
});
