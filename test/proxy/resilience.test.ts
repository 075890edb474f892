// Resilience on real sockets, through a real proxy process: an endpoint killed under load, the
// retry budget and breaker against a dead backend, the breaker's single probe, what is (and is
// not) retried, and the service concurrency limit. Every load is bounded in count and time.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { startUpstream, startProxyProcess, pool, load, metricValue, freePort, type Upstream, type UpstreamHandler, type ProxyProcess } from '../fixtures/mesh.ts';

interface Answer {
  status: number;
  proxyError: string | undefined;
  from: string | undefined;
  body: string;
  ms: number;
}

async function send(client: Dispatcher, host: string, o: { method?: string; path?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const start = performance.now();
  const r = await client.request({ path: o.path ?? '/', method: (o.method ?? 'GET') as Dispatcher.HttpMethod, headers: { host, ...o.headers }, body: o.body ?? null });
  const body = await r.body.text();
  const pe = r.headers['meshlet-proxy-error'];
  const from = r.headers['x-upstream'];
  return { status: r.statusCode, proxyError: typeof pe === 'string' ? pe : undefined, from: typeof from === 'string' ? from : undefined, body, ms: performance.now() - start };
}

// proxy.ts fills meshlet_endpoint_breaker_state from a hook gauge registered after it, so a
// scrape serializes the gauge before the hook refreshes it: each scrape shows the previous one's.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Answer `status` to everything (after reading the body). */
const always = (status: number): UpstreamHandler => (req, res, u) => {
  req.resume();
  req.on('end', () => {
    res.statusCode = status;
    res.setHeader('x-upstream', String(u.port));
    res.end(`${status} from ${u.port}\n`);
  });
};

function median(xs: number[]): number {
  const s = xs.toSorted((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** The access log (proxy stdout): one JSON object per line; waits past the 100 ms flush. */
async function accessLog(p: ProxyProcess): Promise<Array<Record<string, unknown>>> {
  await sleep(250);
  return p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function closeAll(p: ProxyProcess, clients: Dispatcher[], ups: Upstream[]): Promise<void> {
  for (const c of clients) await c.close();
  await p.stop();
  await Promise.all(ups.map((u) => u.close()));
}

t.test('an endpoint killed under load costs no request while a healthy one remains', async (t) => {
  const doomed = await startUpstream();
  const healthy = await startUpstream();
  const p = await startProxyProcess({
    config: { version: 'kill1', services: [{ name: 'api', endpoints: [{ address: doomed.address }, { address: healthy.address }] }] },
    args: ['--access-log', 'off'],
  });
  const client = pool(p.outboundUrl);
  t.teardown(() => closeAll(p, [client], [doomed, healthy]));
  let hitsAtKill = -1;
  const r = await load(client, {
    count: 3000,
    concurrency: 16,
    host: 'api',
    timeoutMs: 20_000,
    onProgress: (done) => {
      if (done === 1000) {
        hitsAtKill = doomed.hits;
        doomed.kill();
      }
    },
  });
  t.same(r.errors, [], 'no client errors');
  t.equal(r.sent, 3000);
  t.equal(r.statuses.get(200), 3000, 'every response is 200');
  t.ok(hitsAtKill > 100, `the doomed endpoint took its share before the kill (${hitsAtKill} hits)`);
  t.ok(healthy.hits >= 2000, `the healthy endpoint carried the rest (${healthy.hits} hits)`);
  let m = await p.metrics();
  t.ok(metricValue(m, 'meshlet_endpoint_ejections_total', { dst_service: 'api' }) > 0, 'the dead endpoint was ejected');
  t.not(metricValue(m, 'meshlet_endpoint_breaker_state', { dst_service: 'api', endpoint: doomed.address }), 0, 'its breaker is not closed');
  t.equal(metricValue(m, 'meshlet_endpoint_breaker_state', { dst_service: 'api', endpoint: healthy.address }), 0, 'the healthy one is closed');
  t.ok(metricValue(m, 'meshlet_retries_total', { dst_service: 'api' }) > 0, 'failed attempts were retried');
});

t.test('a backend failing 100 %: retries bounded by the budget, then the breaker answers fast', async (t) => {
  const a = await startUpstream(always(503));
  const b = await startUpstream(always(503));
  const dead = await startUpstream(always(503));
  const p = await startProxyProcess({
    config: {
      version: 'dead1',
      services: [
        // consecutiveFailures 1000 (the schema's maximum) keeps the breaker out of the budget
        // measurement: ~650 failures per endpoint never make 1000 in a row.
        { name: 'failing', endpoints: [{ address: a.address }, { address: b.address }], breaker: { consecutiveFailures: 1000 } },
        // Default breaker (7 consecutive failures); a long ejection so the fast phase is not cut
        // short by a probe on a slow machine.
        { name: 'dead', endpoints: [{ address: dead.address }], breaker: { baseEjection: 20_000, maxEjection: 20_000 } },
      ],
    },
  });
  const client = pool(p.outboundUrl, 16);
  t.teardown(() => closeAll(p, [client], [a, b, dead]));

  // Budget arithmetic (defaults: ratio 0.2, minPerSecond 10, window 10 s). N = 1000 first
  // attempts within one window earn 0.2 * 1000 = 200 retries, plus the reserve 10/s * 10 s = 100:
  // at most 300 retries, so the backends see at most 1300 requests (1.2 N + 100 = 1.3 N). Without
  // the budget, 3 attempts each would be 3000. The whole load takes ~1 s, far inside the window.
  const N = 1000;
  const r = await load(client, { count: N, concurrency: 16, host: 'failing', timeoutMs: 20_000 });
  const hits = a.hits + b.hits;
  t.same(r.errors, []);
  t.equal(r.statuses.get(503), N, 'the client gets the backend\'s 503s');
  t.equal(r.proxyErrors.size, 0, 'upstream 503s pass through, not replaced by proxy errors');
  t.ok(hits <= 1.2 * N + 100, `backend hits ${hits} <= 1.2 N + 100 = ${1.2 * N + 100}`);
  t.ok(hits >= 1.2 * N + 100 - 5, `the budget was spent, not more (${hits} hits)`);
  let m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'failing' }), hits - N, 'retries metric = extra backend hits');
  t.ok(metricValue(m, 'meshlet_retry_budget_exhausted_total', { dst_service: 'failing' }) > 0, 'budget exhaustion counted');
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total', { dst_service: 'failing' }), 0, 'no ejection in the budget phase');

  // The breaker: 7 consecutive failures eject the only endpoint.
  const opening: Answer[] = [];
  while (opening.length < 10 && opening.at(-1)?.proxyError !== 'breaker-open') opening.push(await send(client, 'dead'));
  t.ok(opening.every((x) => x.status === 503), 'the client gets 503s');
  t.equal(opening.at(-1)?.proxyError, 'breaker-open', `the breaker opened (request ${opening.length})`);
  t.equal(dead.hits, 7, 'after exactly 7 failures');
  const fast: Answer[] = [];
  for (let i = 0; i < 50; i++) fast.push(await send(client, 'dead', { path: '/fast' }));
  t.ok(fast.every((x) => x.status === 503 && x.proxyError === 'breaker-open'), '50 × 503 breaker-open');
  t.equal(dead.hits, 7, 'an ejected endpoint is not contacted');
  const p50 = median(fast.map((x) => x.ms));
  t.ok(p50 < 5, `breaker-open answers are fast: p50 ${p50.toFixed(2)} ms`);
  m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_endpoint_breaker_state', { dst_service: 'dead', endpoint: dead.address }), 1, 'breaker state gauge: open');
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total', { dst_service: 'dead' }), 1);
  const lines = (await accessLog(p)).filter((l) => l['path'] === '/fast');
  t.equal(lines.length, 50, 'every request is in the access log');
  t.ok(lines.every((l) => l['error'] === 'breaker-open' && l['attempts'] === 1 && l['status'] === 503), 'with reason breaker-open and 1 attempt');
});

t.test('a split backend whose endpoints are all ejected gives way to the healthy one: its clients see no failure', async (t) => {
  const good = await startUpstream(always(200));
  const bad = await startUpstream(always(503));
  const p = await startProxyProcess({
    config: {
      version: 'canary1',
      services: [
        // Retries off: what keeps the client whole once the breaker is open is the split's re-pick.
        { name: 'api', endpoints: [], routes: [{ name: 'canary', backends: [{ service: 'api-v1', weight: 50 }, { service: 'api-v2', weight: 50 }], retry: { attempts: 1 } }] },
        { name: 'api-v1', endpoints: [{ address: good.address }] },
        // Default breaker (7 consecutive failures); a long ejection so no probe lands in the test.
        { name: 'api-v2', endpoints: [{ address: bad.address }], breaker: { baseEjection: 20_000, maxEjection: 20_000 } },
      ],
    },
  });
  const client = pool(p.outboundUrl, 8);
  t.teardown(() => closeAll(p, [client], [good, bad]));
  // Until the breaker opens, half the requests reach api-v2 and fail (no retries here).
  const opening = await load(client, { count: 100, concurrency: 1, host: 'api', timeoutMs: 20_000 });
  t.equal(bad.hits, 7, `api-v2 was ejected after its 7 consecutive failures (${opening.statuses.get(503) ?? 0} failed while it was open)`);
  const after = await load(client, { count: 1000, concurrency: 8, host: 'api', timeoutMs: 20_000 });
  t.same(after.errors, []);
  t.equal(after.statuses.get(200), 1000, 'then all 1000 requests succeed: the split sends api-v2\'s share to api-v1');
  t.equal(bad.hits, 7, 'and the ejected backend is not contacted');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total', { dst_service: 'api-v2' }), 1, 'the ejection is counted (the canary is visibly down)');
  t.equal(metricValue(m, 'meshlet_retries_total'), 0, 'no retry was needed');
});

t.test('an ejected endpoint gets exactly one probe per ejection, and traffic once it recovers', async (t) => {
  let failing = true;
  const times: number[] = [];
  const u = await startUpstream((req, res, up) => {
    times.push(performance.now());
    req.resume();
    res.statusCode = failing ? 503 : 200;
    res.setHeader('x-upstream', String(up.port));
    res.end('x');
  });
  const p = await startProxyProcess({
    config: { version: 'probe1', services: [{ name: 'api', endpoints: [{ address: u.address }], breaker: { consecutiveFailures: 3, baseEjection: 200, maxEjection: 200 } }] },
    args: ['--access-log', 'off'],
  });
  const client = pool(p.outboundUrl, 8);
  t.teardown(() => closeAll(p, [client], [u]));

  // 8 workers, a request every ~2 ms each, for `ms`; stops early when `until` says so.
  const drive = async (ms: number, until?: (a: Answer) => boolean): Promise<Answer[]> => {
    const out: Answer[] = [];
    const end = performance.now() + ms;
    let stop = false;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (!stop && performance.now() < end) {
          const a = await send(client, 'api');
          out.push(a);
          if (until?.(a)) stop = true;
          await sleep(2);
        }
      }),
    );
    return out;
  };

  const failingPhase = await drive(1500);
  // The opening burst: the first requests (and retries) before the breaker opened, hits less
  // than 50 ms apart. Each ejection lasts 200 ms (base = max: the cap leaves the jitter no room),
  // so after the burst every hit is a probe, alone in its ejection period, ~200 ms apart.
  let burstEnd = 1;
  while (burstEnd < times.length && times[burstEnd]! - times[burstEnd - 1]! < 50) burstEnd++;
  const burst = times.slice(0, burstEnd);
  const probes = times.slice(burstEnd);
  t.ok(burst.length >= 3, `the breaker opened after the first failures (${burst.length} hits)`);
  const gaps = times.slice(burstEnd - 1).slice(1).map((x, i) => x - times[burstEnd - 1 + i]!);
  t.ok(probes.length >= 4 && probes.length <= 15, `one probe per 200 ms ejection over ~1.45 s: ${probes.length}`);
  t.ok(gaps.every((g) => g >= 90), `probes never overlap an ejection: min gap ${Math.min(...gaps).toFixed(1)} ms`);
  t.ok(failingPhase.length > 10 * times.length, `meanwhile the proxy shed the traffic itself (${failingPhase.length} requests, ${times.length} hits)`);
  t.ok(failingPhase.filter((a) => a.proxyError === 'breaker-open').length > 0.8 * failingPhase.length, 'mostly breaker-open answers');

  failing = false;
  const flipped = performance.now();
  const recovering = await drive(1000, (a) => a.status === 200);
  const firstOk = performance.now() - flipped;
  t.ok(recovering.some((a) => a.status === 200), 'a probe succeeded');
  t.ok(firstOk < 500, `within one ejection of the recovery (${firstOk.toFixed(0)} ms)`);
  const hitsBefore = u.hits;
  let left = 100;
  const after: Answer[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) after.push(await send(client, 'api'));
    }),
  );
  t.ok(after.every((a) => a.status === 200), `all of the next ${after.length} requests answered 200`);
  t.equal(u.hits - hitsBefore, 100, 'every one reached the recovered endpoint');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_endpoint_breaker_state', { dst_service: 'api', endpoint: u.address }), 0, 'breaker closed');
});

t.test('retries: hidden transient failures; what is and is not retried', async (t) => {
  // Fails the first attempt of every 10th request (by request id): 10 % of requests.
  const seen = new Set<string>();
  const flaky = await startUpstream((req, res, up) => {
    const id = Number(req.headers['x-req-id']);
    const first = !seen.has(String(id));
    seen.add(String(id));
    req.resume();
    res.statusCode = id % 10 === 0 && first ? 503 : 200;
    res.setHeader('x-upstream', String(up.port));
    res.end('x');
  });
  const healthy = await startUpstream();
  // Records each body; 503 to the first PUT of a given x-req-id, 200 to the second.
  const bodies: Array<{ method: string; id: string; sha: string; len: number }> = [];
  const recorder = await startUpstream((req, res, up) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const data = Buffer.concat(chunks);
      const id = String(req.headers['x-req-id']);
      const before = bodies.filter((b) => b.id === id).length;
      bodies.push({ method: req.method ?? '', id, sha: createHash('sha256').update(data).digest('hex'), len: data.length });
      res.statusCode = req.method === 'PUT' && before === 0 ? 503 : req.method === 'POST' && req.url === '/fail' ? 503 : 200;
      res.setHeader('x-upstream', String(up.port));
      res.end('x');
    });
  });
  const nobody = await freePort();
  const p = await startProxyProcess({
    config: {
      version: 'retry1',
      services: [
        { name: 'flaky', endpoints: [{ address: flaky.address }] },
        { name: 'rec', endpoints: [{ address: recorder.address }] },
        // 8 attempts: whatever the balancer picks, the breaker ejects the dead port after its 7th
        // refusal, so every POST reaches the healthy endpoint within the attempts it has.
        { name: 'half-dead', endpoints: [{ address: `127.0.0.1:${nobody}` }, { address: healthy.address }], retry: { attempts: 8 } },
      ],
    },
    args: ['--access-log', 'off'],
  });
  const client = pool(p.outboundUrl, 16);
  t.teardown(() => closeAll(p, [client], [flaky, healthy, recorder]));

  // 2000 GETs, 16 at a time, to the flaky endpoint alone: every failure is retried away.
  let next = 0;
  const statuses = new Map<number, number>();
  const deadline = performance.now() + 20_000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < 2000 && performance.now() < deadline) {
        const a = await send(client, 'flaky', { headers: { 'x-req-id': String(next++) } });
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      }
    }),
  );
  t.same([...statuses], [[200, 2000]], '0 non-200 over 2000 GETs');
  t.equal(flaky.hits, 2200, '200 failures, each retried once');
  let m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'flaky', reason: '503' }), 200);

  // POST is not a retry method: the client sees the 503, the backend saw it once.
  const post503 = await send(client, 'rec', { method: 'POST', path: '/fail', body: 'order=1', headers: { 'x-req-id': 'post-1' } });
  t.equal(post503.status, 503);
  t.equal(post503.proxyError, undefined, 'the backend\'s own 503');
  t.equal(bodies.filter((b) => b.id === 'post-1').length, 1, 'POST sent once');

  // A PUT over maxBufferedBody (64 KiB) streams once and is not retried, even though PUT may be.
  const big = randomBytes(100 * 1024);
  const bigPut = await send(client, 'rec', { method: 'PUT', body: big, headers: { 'x-req-id': 'put-big' } });
  t.equal(bigPut.status, 503, 'the failed attempt is the answer');
  const bigSeen = bodies.filter((b) => b.id === 'put-big');
  t.equal(bigSeen.length, 1, 'sent once');
  t.equal(bigSeen[0]?.len, big.length, 'whole body streamed');

  // A small PUT is buffered and replayed byte-identical.
  const small = randomBytes(10 * 1024);
  const smallPut = await send(client, 'rec', { method: 'PUT', body: small, headers: { 'x-req-id': 'put-small' } });
  t.equal(smallPut.status, 200, 'the retry succeeded');
  const sha = createHash('sha256').update(small).digest('hex');
  t.same(bodies.filter((b) => b.id === 'put-small').map((b) => b.sha), [sha, sha], 'both attempts carried the same bytes');

  // Connect refused: nothing reached any application, so even a POST is retried elsewhere.
  const posts: Answer[] = [];
  for (let i = 0; i < 20; i++) posts.push(await send(client, 'half-dead', { method: 'POST', body: `{"n":${i}}`, headers: { 'content-type': 'application/json' } }));
  t.same(posts.map((a) => a.status), Array(20).fill(200), 'every POST answered 200 by the healthy endpoint');
  t.equal(healthy.hits, 20, 'each POST reached an application exactly once');
  m = await p.metrics();
  t.ok(metricValue(m, 'meshlet_retries_total', { dst_service: 'half-dead', reason: 'connect-failed' }) >= 1, 'some POSTs were first sent to the dead port and retried');
});

t.test('concurrency limit: 2 in flight, 1 pending, the rest refused at once', async (t) => {
  let inFlight = 0;
  let peak = 0;
  const slow = await startUpstream((req, res, up) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    req.resume();
    setTimeout(() => {
      inFlight--;
      res.setHeader('x-upstream', String(up.port));
      res.end('slow');
    }, 300);
  });
  const fast = await startUpstream();
  const p = await startProxyProcess({
    config: {
      version: 'cl1',
      services: [
        { name: 'api', endpoints: [{ address: slow.address }], breaker: { maxInFlight: 2, maxPending: 1 } },
        { name: 'warm', endpoints: [{ address: fast.address }] },
      ],
    },
  });
  const client = pool(p.outboundUrl, 16);
  t.teardown(() => closeAll(p, [client], [slow, fast]));
  // Open the 10 client connections first, so the timings below measure the proxy, not connects.
  await Promise.all(Array.from({ length: 10 }, () => send(client, 'warm')));
  const answers = await Promise.all(Array.from({ length: 10 }, () => send(client, 'api', { path: '/cl' })));
  const okFirst = Math.min(...answers.filter((a) => a.status === 200).map((a) => a.ms));
  const shed = answers.filter((a) => a.status === 503);
  const ok = answers.filter((a) => a.status === 200);
  t.equal(ok.length, 3, '2 in flight + 1 pending admitted');
  t.equal(shed.length, 7, 'the other 7 refused');
  t.ok(shed.every((a) => a.proxyError === 'concurrency-limit'), 'with reason concurrency-limit');
  const shedMax = Math.max(...shed.map((a) => a.ms));
  t.ok(shedMax < 150 && shedMax < okFirst - 150, `refused at once: slowest refusal ${shedMax.toFixed(1)} ms, first 200 after ${okFirst.toFixed(0)} ms`);
  t.ok(peak <= 2, `at most 2 at the upstream at any time (peak ${peak})`);
  const okMs = ok.map((a) => a.ms).toSorted((a, b) => a - b);
  t.ok(okMs[2]! >= 550, `the pending one waited for a slot (${okMs[2]!.toFixed(0)} ms)`);
  t.equal(slow.hits, 3, 'refused requests never reached the upstream');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_load_shed_total', { dst_service: 'api' }), 7);
  const lines = (await accessLog(p)).filter((l) => l['path'] === '/cl');
  t.equal(lines.filter((l) => l['error'] === 'concurrency-limit' && l['status'] === 503 && l['attempts'] === 1).length, 7, 'access log: reason and attempts');
});
