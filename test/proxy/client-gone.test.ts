// Clients that leave early, through a real proxy process on real sockets: what they held (the
// upstream response, a concurrency slot, a place in the line) is freed at once, and what they
// broke off (an upload) is not held against the endpoint's breaker.
import t from 'tap';
import net from 'node:net';
import http2 from 'node:http2';
import { startUpstream, startProxyProcess, pool, metricValue, type ProxyProcess, type Upstream } from '../fixtures/mesh.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `done` every 20 ms until it holds or `ms` passes. */
async function eventually(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await sleep(20);
}

/** Open a raw client connection to the proxy's outbound listener. */
async function rawClient(p: ProxyProcess): Promise<net.Socket> {
  const s = net.connect(p.outboundPort, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  return s;
}

async function get(p: ProxyProcess, path: string): Promise<{ status: number; reason: string | undefined }> {
  const c = pool(p.outboundUrl, 1);
  try {
    const r = await c.request({ path, method: 'GET', headers: { host: 'api' } });
    await r.body.dump();
    const pe = r.headers['meshlet-proxy-error'];
    return { status: r.statusCode, reason: typeof pe === 'string' ? pe : undefined };
  } finally {
    await c.close();
  }
}

function stopAll(p: ProxyProcess, ups: Upstream[], timers: NodeJS.Timeout[] = []) {
  return async () => {
    for (const x of timers) clearInterval(x);
    await p.stop('SIGKILL');
    for (const u of ups) await u.close();
  };
}

t.test('a client that leaves mid-response stops the upstream body and frees the slot', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  let closedEarly = 0;
  const up = await startUpstream((req, res) => {
    req.resume();
    if (req.url !== '/stream') return void res.end('ok');
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const tick = setInterval(() => {
      res.write(`data: ${n++}\n\n`);
      if (n >= 400) {
        clearInterval(tick);
        res.end();
      }
    }, 25);
    timers.push(tick);
    res.on('close', () => {
      clearInterval(tick);
      if (!res.writableFinished) closedEarly++;
    });
  });
  // One slot: while the stream holds it, every other request is refused.
  const p = await startProxyProcess({ config: { version: 'g1', services: [{ name: 'api', endpoints: [{ address: up.address }], breaker: { maxInFlight: 1, maxPending: 0 } }] }, args: ['--access-log', 'off'] });
  t.teardown(stopAll(p, [up], timers));
  const s = await rawClient(p);
  s.write('GET /stream HTTP/1.1\r\nhost: api\r\n\r\n');
  await new Promise<void>((resolve) => {
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString();
      if (got.includes('data: 2')) resolve();
    });
  });
  const during = await get(p, '/other');
  t.same(during, { status: 503, reason: 'concurrency-limit' }, 'while the stream runs, its slot is taken');
  s.destroy();
  await eventually(() => closedEarly > 0, 2000);
  t.equal(closedEarly, 1, 'the upstream response was closed when the client left (it would have run 10 s)');
  t.same(await get(p, '/after'), { status: 200, reason: undefined }, 'the slot is free again');
  t.equal(metricValue(await p.metrics(), 'meshlet_endpoint_ejections_total'), 0, 'the client leaving is not an endpoint failure');
});

t.test('uploads the client breaks off are not endpoint failures: 10 of them eject nothing', async (t) => {
  const up = await startUpstream();
  const p = await startProxyProcess({ config: { version: 'g2', services: [{ name: 'api', endpoints: [{ address: up.address }] }] }, args: ['--access-log', 'off'] });
  t.teardown(stopAll(p, [up]));
  for (let i = 0; i < 10; i++) {
    const s = await rawClient(p);
    // Over 64 KiB: streamed to the upstream as it comes, not buffered first.
    s.write('POST /upload HTTP/1.1\r\nhost: api\r\ncontent-length: 100000\r\n\r\n' + 'x'.repeat(1000));
    await sleep(50);
    s.end(); // FIN mid-body: the client gave up on its upload
    await sleep(50);
    s.destroy();
  }
  await sleep(200);
  t.same(await get(p, '/'), { status: 200, reason: undefined }, 'the endpoint still serves');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total'), 0, 'no ejection');
  t.equal(metricValue(m, 'meshlet_proxy_errors_total', { reason: 'upstream-error' }), 0, 'not counted as an upstream error');
  t.equal(metricValue(m, 'meshlet_proxy_errors_total', { reason: 'bad-request' }), 10, 'counted as the requests they were: incomplete');
});

t.test('a request that gives up while waiting for a slot leaves the line at once', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  const up = await startUpstream((req, res) => {
    req.resume();
    timers.push(setTimeout(() => res.end('slow'), 1500));
  });
  // One in flight, one pending.
  const p = await startProxyProcess({ config: { version: 'g3', services: [{ name: 'api', endpoints: [{ address: up.address }], breaker: { maxInFlight: 1, maxPending: 1 } }] }, args: ['--access-log', 'off'] });
  t.teardown(stopAll(p, [up], timers));
  const holder = get(p, '/a');
  await sleep(150);
  const waiter = await rawClient(p);
  waiter.write('GET /b HTTP/1.1\r\nhost: api\r\n\r\n');
  await sleep(150);
  waiter.destroy(); // gives up while in the line
  await sleep(150);
  const started = Date.now();
  const third = get(p, '/c');
  t.same(await third, { status: 200, reason: undefined }, 'the place the waiter left is free: the next request waits in it and is served');
  t.ok(Date.now() - started > 500, 'it waited for the slot (it was not refused)');
  t.same(await holder, { status: 200, reason: undefined });
  t.equal(up.hits, 2, 'the request that left never reached the upstream');
});

t.test('a client that closes while waiting for the response cancels the upstream request', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  let cancelled = 0;
  const up = await startUpstream((req, res) => {
    req.resume();
    timers.push(setTimeout(() => res.end('late'), 2000));
    res.on('close', () => {
      if (!res.writableFinished) cancelled++;
    });
  });
  const p = await startProxyProcess({ config: { version: 'g4', services: [{ name: 'api', endpoints: [{ address: up.address }] }] }, args: ['--access-log', 'off'] });
  t.teardown(stopAll(p, [up], timers));
  const s = await rawClient(p);
  s.write('GET /wait HTTP/1.1\r\nhost: api\r\n\r\n');
  await sleep(200);
  s.destroy();
  await eventually(() => cancelled > 0, 1500);
  t.equal(cancelled, 1, 'the upstream saw its request cancelled (not answered 2 s later)');
  const m = await p.metrics();
  t.equal(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', error_reason: 'client-gone' }), 1, 'counted as client-gone');
  t.equal(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', classification: 'success' }), 0, 'not as a success');
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total'), 0);
});

t.test('a small upload the client breaks off (buffered for retries) is a bad request, not an upstream error', async (t) => {
  const up = await startUpstream();
  const p = await startProxyProcess({ config: { version: 'g5', services: [{ name: 'api', endpoints: [{ address: up.address }] }] } });
  t.teardown(stopAll(p, [up]));
  for (let i = 0; i < 3; i++) {
    const s = await rawClient(p);
    // Under 64 KiB with a length: read whole before the first attempt, so a retry can resend it.
    s.write('POST /upload HTTP/1.1\r\nhost: api\r\ncontent-length: 100\r\n\r\n0123456789');
    await sleep(50);
    s.end(); // FIN mid-body
    await sleep(50);
    s.destroy();
  }
  await sleep(250);
  const m = await p.metrics();
  t.equal(up.hits, 0, 'nothing reached the upstream');
  t.equal(metricValue(m, 'meshlet_proxy_errors_total', { reason: 'upstream-error' }), 0, 'not counted as an upstream error');
  t.equal(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', status_code: '502' }), 0, 'nor as a 502');
  t.equal(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', error_reason: 'bad-request' }), 3, 'counted as the incomplete requests they were');
  const log = p.stdout().split('\n').filter((l) => l.includes('"/upload"')).map((l) => JSON.parse(l) as { error: string });
  t.same(log.map((l) => l.error), ['bad-request', 'bad-request', 'bad-request'], 'and logged so');
});

t.test('HTTP/2: a caller whose connection goes mid-response frees its connection, its streams and the upstream streams', async (t) => {
  // A server-streaming app that would stream for 10 s, and one that answers at once while the caller still uploads.
  const app = http2.createServer();
  const open = new Set<http2.ServerHttp2Stream>();
  app.on('stream', (s, h) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    s.on('error', () => {});
    s.respond({ ':status': 200 });
    if (h[':path'] === '/early') return void s.end('early');
    let n = 0;
    const tick = setInterval(() => (n++ < 400 && !s.destroyed ? s.write(`${n}\n`) : clearInterval(tick)), 25);
    s.once('close', () => clearInterval(tick));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const address = `127.0.0.1:${(app.address() as net.AddressInfo).port}`;
  const p = await startProxyProcess({ config: { version: 'g6', services: [{ name: 'api', endpoints: [{ address }] }] }, args: ['--access-log', 'off'] });
  t.teardown(async () => {
    await p.stop('SIGKILL');
    for (const s of open) s.destroy();
    await new Promise((r) => app.close(r));
  });
  const gauges = async () => {
    const m = await p.metrics();
    return { connections: metricValue(m, 'meshlet_tcp_connections_open', { direction: 'outbound' }), inFlight: metricValue(m, 'meshlet_requests_in_flight', { direction: 'outbound' }) };
  };
  const caller = http2.connect(p.outboundUrl);
  caller.on('error', () => {});
  const streams = [0, 1, 2].map(() => caller.request({ ':path': '/stream', ':authority': 'api' }, { endStream: true }));
  const uploads = [0, 1, 2].map(() => caller.request({ ':method': 'POST', ':path': '/early', ':authority': 'api' }));
  for (const r of [...streams, ...uploads]) r.on('error', () => {});
  for (const u of uploads) u.write('still uploading');
  // Every stream has its answer's first bytes: the proxy relays them all.
  await Promise.all([...streams, ...uploads].map((r) => new Promise((resolve) => r.once('data', resolve))));
  t.same(await gauges(), { connections: 1, inFlight: 6 }, 'one connection, six streams in flight');
  caller.destroy();
  let now = await gauges();
  for (const end = Date.now() + 3000; (now.connections > 0 || now.inFlight > 0 || open.size > 0) && Date.now() < end; now = await gauges()) await sleep(50);
  t.same(now, { connections: 0, inFlight: 0 }, "the caller's connection and streams are closed on the proxy");
  t.equal(open.size, 0, 'the upstream streams are cancelled (they would have streamed for 10 s)');
});
