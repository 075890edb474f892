// ProxyMetrics: per-service series of services the config dropped are forgotten.
import t from 'tap';
import { ProxyMetrics } from '../../../proxy/telemetry/metrics.ts';

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
