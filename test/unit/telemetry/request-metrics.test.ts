// proxy/telemetry/request-metrics.ts, without I/O: what a scrape shows after observed requests
// (counter per label set, cumulative histogram buckets, _sum and _count), in prom-client's
// exposition format.
import t from 'tap';
import { Registry } from 'prom-client';
import { RequestMetrics, type RequestLabels } from '../../../proxy/telemetry/request-metrics.ts';

const base: RequestLabels = { direction: 'outbound', src_workload: 'web', src_namespace: 'shop', src_identity: '', dst_service: 'api.shop', dst_workload: 'api', dst_namespace: 'shop', status_code: '200', classification: 'success', error_reason: '', tls: 'true' };

const line = (text: string, name: string, labels: string): number | undefined => {
  const m = new RegExp(`^${name}\\{${labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

t.test('counters per label set, histogram per edge and classification', async (t) => {
  const registry = new Registry();
  const m = new RequestMetrics(registry);
  m.observe(base, 0.0004);
  m.observe(base, 0.003);
  m.observe({ ...base, status_code: '503', classification: 'failure', error_reason: 'breaker-open' }, 0.0002);
  const text = await registry.metrics();
  const edge = 'direction="outbound",src_workload="web",src_namespace="shop",dst_service="api.shop",dst_workload="api",dst_namespace="shop"';
  t.equal(line(text, 'meshlet_requests_total', `${edge.replace('dst_service', 'src_identity="",dst_service')},status_code="200",classification="success",error_reason="",tls="true"`), 2, 'two 200s on one series');
  t.equal(line(text, 'meshlet_requests_total', `${edge.replace('dst_service', 'src_identity="",dst_service')},status_code="503",classification="failure",error_reason="breaker-open",tls="true"`), 1, 'the failure on its own series');
  t.match(text, /# TYPE meshlet_requests_total counter/);
  t.match(text, /# TYPE meshlet_request_duration_seconds histogram/);
  const ok = `${edge},classification="success"`;
  t.equal(line(text, 'meshlet_request_duration_seconds_bucket', `${ok},le="0.0005"`), 1, 'buckets are cumulative: 1 under 0.5 ms');
  t.equal(line(text, 'meshlet_request_duration_seconds_bucket', `${ok},le="0.005"`), 2, '2 under 5 ms');
  t.equal(line(text, 'meshlet_request_duration_seconds_bucket', `${ok},le="+Inf"`), 2);
  t.equal(line(text, 'meshlet_request_duration_seconds_count', ok), 2);
  t.ok(Math.abs(line(text, 'meshlet_request_duration_seconds_sum', ok)! - 0.0034) < 1e-9, '_sum adds the seconds');
  t.equal(line(text, 'meshlet_request_duration_seconds_count', `${edge},classification="failure"`), 1, 'failures have their own histogram');
});

t.test('the fuse: past 10 000 series (edges and counters) everything is forgotten and counting starts again', async (t) => {
  const registry = new Registry();
  const m = new RequestMetrics(registry);
  // Each new service is two series: its latency edge and its counter.
  for (let i = 0; i < 5_000; i++) m.observe({ ...base, dst_service: `svc-${i}` }, 0.001);
  t.match(await registry.metrics(), /dst_service="svc-0"/, 'the first series is still there');
  m.observe({ ...base, dst_service: 'one-more' }, 0.001);
  const text = await registry.metrics();
  t.notMatch(text, /dst_service="svc-0"/, 'the old series are gone');
  t.match(text, /meshlet_requests_total\{[^}]*dst_service="one-more"[^}]*\} 1/, 'the new one counts from 1');
});

t.test('requests like the one before (the remembered series) and unlike it count where they belong', async (t) => {
  const registry = new Registry();
  const m = new RequestMetrics(registry);
  const inbound: RequestLabels = { ...base, direction: 'inbound', src_identity: 'spiffe://td/ns/shop/sa/web' };
  const failed: RequestLabels = { ...base, status_code: '503', classification: 'failure', error_reason: 'no-endpoints' };
  // Interleaved directions, repeats, a failure between successes, and a label differing only in tls.
  const sequence = [base, base, inbound, base, inbound, inbound, failed, base, failed, { ...base, tls: 'false' as const }, base];
  for (const l of sequence) m.observe({ ...l }, 0.002);
  const text = await registry.metrics();
  const total = (l: RequestLabels) => line(text, 'meshlet_requests_total', Object.entries(l).map(([k, v]) => `${k}="${v}"`).join(','));
  t.equal(total(base), 5, 'five successes outbound over tls');
  t.equal(total(inbound), 3, 'three inbound, though they came between outbound ones');
  t.equal(total(failed), 2, 'two failures');
  t.equal(total({ ...base, tls: 'false' }), 1, 'one without tls: a label differing by one value is its own series');
  const edge = 'direction="outbound",src_workload="web",src_namespace="shop",dst_service="api.shop",dst_workload="api",dst_namespace="shop"';
  t.equal(line(text, 'meshlet_request_duration_seconds_count', `${edge},classification="success"`), 6, 'the outbound success histogram saw all six (tls or not)');
  t.equal(line(text, 'meshlet_request_duration_seconds_count', `${edge},classification="failure"`), 2);
  t.ok(Math.abs(line(text, 'meshlet_request_duration_seconds_sum', `${edge},classification="success"`)! - 0.012) < 1e-9, 'and added their seconds');
});
