// One edge, calling workload → destination service, as the caller's proxy measures it.
import { dashboard, labelVariable, stat, timeseries } from './grafana.ts';
import { byErrorReason, fromProxiesOf, OUTBOUND, percentiles, RATE, requestsRate, successRatio, tlsRatio } from './promql.ts';

const EDGE = `${OUTBOUND},src_namespace=~"$namespace",src_workload=~"$source",dst_service=~"$destination"`;

export const edge = dashboard({
  uid: 'meshlet-edge',
  title: 'meshlet / Edge',
  description: 'Traffic from one workload to one destination service, as the calling proxy sees it.',
  variables: [
    labelVariable('namespace', 'Namespace', `meshlet_requests_total{${OUTBOUND}}`, 'src_namespace'),
    labelVariable('source', 'Source workload', `meshlet_requests_total{${OUTBOUND},src_namespace=~"$namespace"}`, 'src_workload'),
    labelVariable('destination', 'Destination service', `meshlet_requests_total{${OUTBOUND},src_namespace=~"$namespace",src_workload=~"$source"}`, 'dst_service'),
  ],
  panels: [
    stat({ title: 'Request rate', unit: 'reqps', queries: [{ expr: requestsRate(EDGE, 'dst_service'), legend: 'requests', expect: { min: 0 } }] }),
    stat({ title: 'Success rate', unit: 'percentunit', queries: [{ expr: successRatio(EDGE, 'dst_service'), legend: 'success', expect: { min: 0, max: 1 } }] }),
    stat({ title: 'mTLS share', unit: 'percentunit', queries: [{ expr: tlsRatio(EDGE, 'dst_service'), legend: 'mTLS', expect: { min: 0, max: 1 } }] }),
    stat({ title: 'Latency p99', unit: 's', queries: [percentiles(EDGE, 'dst_service', '')[2]!] }),
    timeseries({ title: 'Request rate by status code', unit: 'reqps', queries: [{ expr: requestsRate(EDGE, 'status_code'), legend: '{{status_code}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Latency', unit: 's', queries: percentiles(EDGE, 'dst_service', '') }),
    timeseries({ title: 'Responses by proxy error reason', description: '"app": the destination answered.', unit: 'reqps', queries: [{ expr: byErrorReason(EDGE, ''), legend: '{{error_reason}}', expect: { min: 0 } }] }),
    timeseries({
      title: "Source's retries by service and reason",
      description: 'Retries happen above the traffic split, so they are counted per service the source named (e.g. api), not per backend (api-v1).',
      unit: 'ops',
      queries: [{ expr: fromProxiesOf(`sum by (instance, dst_service, reason) (rate(meshlet_retries_total[${RATE}]))`, 'src_namespace=~"$namespace",src_workload=~"$source"'), legend: '{{dst_service}} {{reason}}', expect: { min: 0 } }],
    }),
  ],
});
