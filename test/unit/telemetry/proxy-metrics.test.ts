// ProxyMetrics: per-service series of services the config dropped are forgotten (request series once idle).
import t from 'tap';
import { ProxyMetrics, type RequestLabels } from '../../../proxy/telemetry/metrics.ts';

t.test('forgetServices drops the resilience series of services no longer named, keeps the others', async (t) => {
  const m = new ProxyMetrics({ defaultMetrics: false });
  for (const svc of ['api', 'gone']) {
    m.retries.labels(svc, '503').inc();
    m.retries.labels(svc, 'connect-failed').inc(2);
    m.budgetExhausted.labels(svc).inc();
    m.loadShed.labels(svc).inc(0);
    m.ejections.labels(svc).inc(3);
  }
  await m.forgetServices(new Set(['api']));
  const text = await m.registry.metrics();
  t.notMatch(text, /dst_service="gone"/, 'nothing left of the dropped service');
  t.match(text, /meshlet_retries_total\{dst_service="api",reason="503"\} 1/);
  t.match(text, /meshlet_retries_total\{dst_service="api",reason="connect-failed"\} 2/);
  t.match(text, /meshlet_endpoint_ejections_total\{dst_service="api"\} 3/);
  t.match(text, /meshlet_load_shed_total\{dst_service="api"\} 0/);
});

const req = (dst_service: string, direction: 'inbound' | 'outbound' = 'outbound'): RequestLabels => ({ direction, src_workload: 'web', src_namespace: 'shop', src_identity: '', dst_service, dst_workload: dst_service, dst_namespace: 'shop', status_code: '200', classification: 'success', error_reason: '', tls: 'true' });
const MIN = 60_000;

t.test('request series of a service the config dropped go once idle for the retain-idle period; the others stay', async (t) => {
  let now = 0;
  const m = new ProxyMetrics({ defaultMetrics: false, clock: { now: () => now }, retainIdleMs: 10 * MIN });
  for (const svc of ['api', 'gone', 'busy-gone', 'unknown']) m.observe(req(svc), 0.001);
  m.observe(req('gone', 'inbound'), 0.001);
  await m.forgetServices(new Set(['api']));
  const series = async (svc: string, direction = 'outbound') => {
    const text = await m.registry.metrics();
    const re = (name: string) => new RegExp(`^${name}\\{direction="${direction}"[^}]*dst_service="${svc}"[^}]*\\} (\\S+)$`, 'm');
    const total = re('meshlet_requests_total').exec(text);
    const count = re('meshlet_request_duration_seconds_count').exec(text);
    t.equal(total === null, count === null, `${direction} ${svc}: counter and histogram come and go together`);
    return total ? Number(total[1]) : undefined;
  };
  t.equal(await series('gone'), 1, 'a dropped service keeps its series at first (its last requests get scraped)');
  now = 6 * MIN;
  m.observe(req('busy-gone'), 0.001);
  t.equal(await series('busy-gone'), 2);
  now = 9 * MIN;
  t.equal(await series('gone'), 1, 'not yet idle for 10 minutes');
  now = 10 * MIN;
  t.equal(await series('gone'), undefined, 'idle 10 minutes and not in the config: evicted');
  t.equal(await series('busy-gone'), 2, 'a dropped service that had a request 4 minutes ago stays');
  t.equal(await series('api'), 1, 'a service still in the config is never evicted, however quiet');
  t.equal(await series('unknown'), 1, 'nor the series of requests that matched no service');
  t.equal(await series('gone', 'inbound'), 1, "nor inbound ones (their dst_service is the proxy's own)");
  now = 100 * MIN;
  t.equal(await series('api'), 1, 'api, 100 minutes quiet, keeps counting from where it was');
  t.equal(await series('busy-gone'), undefined, 'busy-gone, idle long enough, is evicted too');

  // The last request's series is remembered for the next one: after its eviction, a request with
  // the same labels must count into a series that is scraped.
  m.observe(req('busy-gone'), 0.001);
  m.observe(req('busy-gone'), 0.001);
  now = 200 * MIN;
  await m.registry.metrics();
  now = 300 * MIN;
  t.equal(await series('busy-gone'), undefined, 'evicted again once idle');
  m.observe(req('busy-gone'), 0.001);
  t.equal(await series('busy-gone'), 1, 'a request after the eviction counts from 1 into a scraped series');

  await m.forgetServices(new Set(['api', 'busy-gone']));
  now = 1000 * MIN;
  t.equal(await series('busy-gone'), 1, 'a service back in the config is not evicted');
});

t.test('with churn in service names, evicted series no longer count toward the 10 000-series fuse', async (t) => {
  let now = 0;
  const m = new ProxyMetrics({ defaultMetrics: false, clock: { now: () => now }, retainIdleMs: 10 * MIN });
  m.observe(req('api'), 0.001);
  // Four generations of 2 000 services (two series each: the edge and its counter), each dropped
  // by the next config: 16 000 series over time, never more than 4 001 at once.
  for (let gen = 0; gen < 4; gen++) {
    const names = Array.from({ length: 2_000 }, (_, i) => `svc-${gen}-${i}`);
    await m.forgetServices(new Set(['api', ...names]));
    for (const n of names) m.observe(req(n), 0.001);
    await m.registry.metrics();
    now += 11 * MIN;
  }
  await m.forgetServices(new Set(['api']));
  await m.registry.metrics();
  now += 11 * MIN;
  const text = await m.registry.metrics();
  t.match(text, /^meshlet_requests_total\{[^}]*dst_service="api"[^}]*\} 1$/m, 'the live service was never reset by the fuse');
  t.notMatch(text, /dst_service="svc-/, 'every churned service is gone');
});
