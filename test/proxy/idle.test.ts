// An idle sidecar sleeps: with no traffic a proxy's main thread wakes a few times a second (the
// listeners' timeout sweep), not 100 times (prom-client's event-loop-lag sampler, replaced by the
// loop's busy time, api/process-metrics.ts). A node running many pods pays this per pod.
// Read from the kernel's count of the thread's voluntary context switches (one per wake-up).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { startUpstream, startProxyProcess, pool, load, metricValue, UNINSTRUMENTED } from '../fixtures/mesh.ts';

/** Times the thread gave up the CPU to wait (for epoll, a timer): its wake-ups. */
const wakeUps = (pid: number): number => Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('an idle proxy wakes at most a few times a second, and reports how busy its event loop was', async (t) => {
  const up = await startUpstream();
  const p = await startProxyProcess({
    config: { version: 'idle', services: [{ name: 'api', endpoints: [{ address: up.address }] }] },
    args: ['--access-log', 'off'],
    // Coverage hooks add their own work: measure the proxy as users run it.
    env: UNINSTRUMENTED,
  });
  const client = pool(p.outboundUrl, 4);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await up.close();
  });
  const r = await load(client, { count: 200, concurrency: 4, host: 'api' });
  t.equal(r.statuses.get(200), 200, 'traffic went through first (pools, timers and metrics exist)');

  await sleep(1000);
  const pid = p.proc.pid!;
  const before = wakeUps(pid);
  const seconds = 4;
  await sleep(seconds * 1000);
  const perSecond = (wakeUps(pid) - before) / seconds;
  t.ok(Number.isFinite(perSecond), 'the kernel reports the main thread’s voluntary context switches');
  // Measured: ~2 a second; with prom-client's 10 ms lag sampler ~100.
  t.ok(perSecond < 10, `idle main thread woke ${perSecond.toFixed(1)} times a second (bound 10)`);

  const text = await p.metrics();
  t.notMatch(text, /nodejs_eventloop_lag/, 'no lag gauges whose floor is the sampler’s own 10 ms');
  t.match(text, /# TYPE meshlet_proxy_nodejs_eventloop_busy_seconds_total counter/);
  const busy = metricValue(text, 'meshlet_proxy_nodejs_eventloop_busy_seconds_total');
  t.ok(busy > 0 && busy < 30, `the loop was busy ${busy.toFixed(3)} s handling 200 requests and the scrapes (more than 0, less than it has lived)`);
});
