// One service: what it receives (by caller, status, latency), what it sends (by destination),
// and the resilience machinery on its outbound side (retries, budget, breaker, load shedding).
// A proxy's outbound series name its workload (src_workload); the service variable matches it,
// as the proxy's --service defaults to its --workload.
import { dashboard, labelVariable, row, stat, timeseries } from './grafana.ts';
import { byErrorReason, fromProxiesOf, fromServiceProxies, INBOUND, OUTBOUND, percentiles, RATE, requestsRate, successRatio } from './promql.ts';

const IN = `${INBOUND},dst_namespace=~"$namespace",dst_service=~"$service"`;
const OUT = `${OUTBOUND},src_namespace=~"$namespace",src_workload=~"$service"`;
const SRC = 'src_namespace=~"$namespace",src_workload=~"$service"';

export const service = dashboard({
  uid: 'meshlet-service',
  title: 'meshlet / Service',
  description: 'One service: inbound by caller and status, outbound by destination, latency percentiles, retries and circuit breaking.',
  variables: [
    labelVariable('namespace', 'Namespace', `meshlet_requests_total{${INBOUND}}`, 'dst_namespace'),
    labelVariable('service', 'Service', `meshlet_requests_total{${INBOUND},dst_namespace=~"$namespace"}`, 'dst_service'),
  ],
  panels: [
    stat({ title: 'Success rate (inbound)', unit: 'percentunit', queries: [{ expr: successRatio(IN, 'dst_service'), legend: 'success', expect: { min: 0, max: 1 } }] }),
    stat({ title: 'Request rate (inbound)', unit: 'reqps', queries: [{ expr: requestsRate(IN, 'dst_service'), legend: 'requests', expect: { min: 0 } }] }),
    stat({ title: 'Latency p99 (inbound)', unit: 's', queries: [percentiles(IN, 'dst_service', '')[2]!] }),
    // The service's proxies: those serving it, and those calling out as it (a leaf service calls nothing).
    stat({ title: 'Requests in flight', unit: 'short', queries: [{ expr: fromServiceProxies('sum by (instance) (meshlet_requests_in_flight)', IN, SRC), legend: '{{instance}}', expect: { min: 0 } }] }),
    row('Inbound'),
    timeseries({ title: 'Inbound request rate by caller', unit: 'reqps', queries: [{ expr: requestsRate(IN, 'src_identity'), legend: '{{src_identity}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Inbound success rate by caller', unit: 'percentunit', min: 0, max: 1, queries: [{ expr: successRatio(IN, 'src_identity'), legend: '{{src_identity}}', expect: { min: 0, max: 1 } }] }),
    timeseries({ title: 'Inbound latency', unit: 's', queries: percentiles(IN, 'dst_service', '') }),
    timeseries({ title: 'Inbound responses by status code', unit: 'reqps', queries: [{ expr: requestsRate(IN, 'status_code'), legend: '{{status_code}}', expect: { min: 0 } }] }),
    row('Outbound'),
    timeseries({ title: 'Outbound request rate by destination', unit: 'reqps', queries: [{ expr: requestsRate(OUT, 'dst_service'), legend: '{{dst_service}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Outbound success rate by destination', unit: 'percentunit', min: 0, max: 1, queries: [{ expr: successRatio(OUT, 'dst_service'), legend: '{{dst_service}}', expect: { min: 0, max: 1 } }] }),
    timeseries({ title: 'Outbound latency by destination', unit: 's', queries: percentiles(OUT, 'dst_service', '{{dst_service}} ') }),
    timeseries({ title: 'Outbound responses by proxy error reason', description: '"app": the destination answered; anything else is a response the proxy made itself (meshlet-proxy-error).', unit: 'reqps', queries: [{ expr: byErrorReason(OUT, 'dst_service'), legend: '{{dst_service}} {{error_reason}}', expect: { min: 0 } }] }),
    row('Retries and circuit breaking (outbound)'),
    timeseries({ title: 'Retries by destination and reason', unit: 'ops', queries: [{ expr: fromProxiesOf(`sum by (instance, dst_service, reason) (rate(meshlet_retries_total[${RATE}]))`, SRC), legend: '{{dst_service}} {{reason}}', expect: { min: 0 } }] }),
    timeseries({
      title: 'Retries refused by the budget, load shed',
      unit: 'ops',
      queries: [
        { expr: fromProxiesOf(`sum by (instance, dst_service) (rate(meshlet_retry_budget_exhausted_total[${RATE}]))`, SRC), legend: '{{dst_service}} budget exhausted', expect: { min: 0 } },
        { expr: fromProxiesOf(`sum by (instance, dst_service) (rate(meshlet_load_shed_total[${RATE}]))`, SRC), legend: '{{dst_service}} load shed', expect: { min: 0 } },
      ],
    }),
    timeseries({ title: 'Endpoint ejections', unit: 'ops', queries: [{ expr: fromProxiesOf(`sum by (instance, dst_service) (rate(meshlet_endpoint_ejections_total[${RATE}]))`, SRC), legend: '{{dst_service}}', expect: { min: 0 } }] }),
    timeseries({ title: 'Endpoints not closed (ejected or on probation)', unit: 'short', queries: [{ expr: fromProxiesOf('sum by (instance, dst_service) (meshlet_endpoint_breaker_state != bool 0)', SRC), legend: '{{dst_service}}', expect: { min: 0 } }] }),
  ],
});
