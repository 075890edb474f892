// Config and process lifecycle on real processes: a config change under load loses nothing, a
// bad config file is refused with every problem and its path while the old one stays, SIGTERM
// under load finishes every in-flight request, SIGTERM leaves an open WebSocket working until it
// closes or the grace period ends, and a 100 MB body streams with bounded memory.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { Readable } from 'node:stream';
import net, { type AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { closedAfter, reservedPort, startUpstream, startProxyProcess, pool, load, metricValue, UNINSTRUMENTED } from '../fixtures/mesh.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PROXY_MAIN } from '../../proxy/launch.ts';

const splitConfig = (version: string, w1: number, w2: number, a: string, b: string) => ({
  version,
  services: [
    { name: 'api', endpoints: [], routes: [{ name: 'split', backends: [{ service: 'api-v1', weight: w1 }, { service: 'api-v2', weight: w2 }] }] },
    { name: 'api-v1', endpoints: [{ address: a }] },
    { name: 'api-v2', endpoints: [{ address: b }] },
  ],
});

const slow = (ms: number) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, u: { port: number }) => {
  req.resume();
  setTimeout(() => res.end(String(u.port)), ms);
};

t.test('split changes under load lose 0 requests and apply to the next request', async (t) => {
  const v1 = await startUpstream(slow(20));
  const v2 = await startUpstream(slow(20));
  const p = await startProxyProcess({ config: splitConfig('c1', 100, 0, v1.address, v2.address), args: ['--access-log', 'off'] });
  const client = pool(p.outboundUrl);
  t.teardown(async () => {
    await client.close();
    await p.stop();
    await Promise.all([v1.close(), v2.close()]);
  });
  let flipped = 0;
  const running = load(client, {
    count: 3000,
    concurrency: 24,
    host: 'api',
    onProgress: (n) => {
      // Flip the split back and forth while requests are in flight.
      if (n % 500 === 0) {
        flipped++;
        p.writeConfig(splitConfig(`c${flipped + 1}`, flipped % 2 ? 0 : 100, flipped % 2 ? 100 : 0, v1.address, v2.address));
      }
    },
  });
  const r = await running;
  t.equal(r.errors.length, 0, `no client errors (${r.errors.slice(0, 3).join('; ')})`);
  t.equal(r.statuses.get(200), 3000, 'every request succeeded');
  t.ok(v1.hits > 0 && v2.hits > 0, `both versions served (v1 ${v1.hits}, v2 ${v2.hits})`);
  // After the last change settles, all traffic follows it.
  p.writeConfig(splitConfig('final', 0, 100, v1.address, v2.address));
  await p.waitForVersion('final');
  const before1 = v1.hits;
  const r2 = await load(client, { count: 200, concurrency: 8, host: 'api' });
  t.equal(r2.statuses.get(200), 200);
  t.equal(v1.hits, before1, 'the next requests all go to v2');
});

t.test('an endpoint leaving the config: requests already in flight to it finish there; its idle connections close', async (t) => {
  const a = await startUpstream();
  const b = await startUpstream();
  const p = await startProxyProcess({ config: { version: 'e1', services: [{ name: 'api', endpoints: [{ address: a.address }] }] }, args: ['--access-log', 'off'] });
  t.teardown(async () => {
    await p.stop();
    await a.close();
    await b.close();
  });
  // One request leaves an idle pooled connection to a; another is mid-body when a leaves.
  const warm = await request(`${p.outboundUrl}/warm`, { headers: { host: 'api' } });
  await warm.body.dump();
  const connectionsToA = () => new Promise<number>((resolve) => a.server.getConnections((_e, n) => resolve(n)));
  t.equal(await connectionsToA(), 1, 'one pooled connection to a');
  const body = new Readable({ read() {} });
  const put = request(`${p.outboundUrl}/put`, { method: 'PUT', headers: { host: 'api', 'content-length': '10' }, body });
  body.push('hello');
  await new Promise((r) => setTimeout(r, 200));
  p.writeConfig({ version: 'e2', services: [{ name: 'api', endpoints: [{ address: b.address }] }] });
  await p.waitForVersion('e2');
  body.push('world');
  body.push(null);
  const res = await put;
  const text = await res.body.text();
  t.equal(res.statusCode, 200, `the PUT that started on e1 is served: ${text.trim()}`);
  t.equal(res.headers['meshlet-proxy-error'], undefined);
  t.match(text, `ok from ${a.port}`, 'by the endpoint its config named');
  const next = await request(`${p.outboundUrl}/next`, { headers: { host: 'api' } });
  t.match(await next.body.text(), `ok from ${b.port}`, 'the next request goes to the new endpoint');
  let left = await connectionsToA();
  for (let i = 0; i < 40 && left > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    left = await connectionsToA();
  }
  t.equal(left, 0, 'no connection to the removed endpoint is kept');
});

t.test('a bad config file is refused with every problem and its path; the old config stays', async (t) => {
  const v1 = await startUpstream();
  const p = await startProxyProcess({ config: { version: 'good', services: [{ name: 'api', endpoints: [{ address: v1.address }] }] } });
  t.teardown(async () => {
    await p.stop();
    await v1.close();
  });
  p.writeConfig({
    version: 'bad',
    services: [
      { name: 'api', endpoints: [{ address: 'nope' }], routes: [{ name: 'r', backends: [{ service: 'api', weight: -1 }] }] },
      { name: 'Bad_Name', endpoints: [], retry: { attempts: 0 } },
    ],
  });
  let ready: { lastRefusal: { problems: Array<{ path: string; message: string }> } | null; version: string } = { lastRefusal: null, version: '' };
  for (let i = 0; i < 100 && !ready.lastRefusal; i++) {
    await new Promise((r) => setTimeout(r, 30));
    ready = (await (await fetch(`${p.adminUrl}/ready`)).json()) as typeof ready;
  }
  const paths = ready.lastRefusal?.problems.map((x) => x.path) ?? [];
  t.ok(paths.includes('/services/0/endpoints/0/address'), 'bad address reported with its path');
  t.ok(paths.includes('/services/0/routes/0/backends/0/weight'), 'negative weight reported');
  t.ok(paths.includes('/services/1/name'), 'bad name reported');
  t.ok(paths.includes('/services/1/retry/attempts'), 'bad attempts reported');
  t.equal(ready.version, 'good', 'the good config is still in force');
  const r = await request(`${p.outboundUrl}/`, { headers: { host: 'api' } });
  await r.body.text();
  t.equal(r.statusCode, 200, 'and still serves');
  t.match(p.stderr(), /config refused/, 'the refusal is logged');
  p.writeConfig('{ not json');
  await new Promise((r) => setTimeout(r, 300));
  const cfg = (await (await fetch(`${p.adminUrl}/config`)).json()) as { version: string; lastRefusal: { problems: Array<{ message: string }> } };
  t.equal(cfg.version, 'good');
  t.match(cfg.lastRefusal.problems[0]!.message, /does not parse/);
  t.equal(metricValue(await p.metrics(), 'meshlet_config_updates_total', { result: 'refused' }), 2, 'refusals counted');
});

t.test('SIGTERM under load: every in-flight request finishes, then the proxy exits', async (t) => {
  const v1 = await startUpstream((req, res) => {
    req.resume();
    setTimeout(() => res.end('slow ok'), 300);
  });
  const p = await startProxyProcess({ config: { version: 'd1', services: [{ name: 'api', endpoints: [{ address: v1.address }] }] } });
  const client = pool(p.outboundUrl, 64);
  t.teardown(async () => {
    await client.close();
    await v1.close();
  });
  const inFlight = Array.from({ length: 40 }, () => request(`${p.outboundUrl}/`, { dispatcher: client, headers: { host: 'api' } }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })));
  // SIGTERM once the proxy holds all 40 (a fixed pause is not enough on a loaded machine: a
  // request still in the client's queue when draining starts is refused, rightly).
  for (let i = 0; i < 250 && metricValue(await p.metrics(), 'meshlet_requests_in_flight', { direction: 'outbound' }) < 40; i++) await new Promise((r) => setTimeout(r, 20));
  const code = p.stop('SIGTERM');
  const results = await Promise.allSettled(inFlight);
  t.equal(results.filter((r) => r.status === 'fulfilled' && r.value.status === 200 && r.value.body === 'slow ok').length, 40, 'all 40 in-flight requests completed');
  t.equal(await code, 0, 'clean exit');
  const refused = await request(`${p.outboundUrl}/`, { headers: { host: 'api' } }).then(() => 'served', (e: Error & { code?: string }) => e.code ?? e.message);
  t.equal(refused, 'ECONNREFUSED', 'no longer accepting');
});

/** GET `url` on `dispatcher`: its status and body. */
const get = (dispatcher: ReturnType<typeof pool>, url: string) => request(url, { dispatcher, headers: { host: 'api' } }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));

t.test("an app with two ports: each has its own inbound listener; the accept deadline, the in-flight gauge and SIGTERM's drain cover both", async (t) => {
  // Each answers with its own port.
  const main = await startUpstream(slow(300));
  const health = await startUpstream(slow(300));
  const healthListener = await reservedPort();
  // As injected: MESHLET_APP_PORTS names both, MESHLET_INBOUND_PORT_MAP gives the second its listener.
  const p = await startProxyProcess({
    config: { version: 'l1', services: [], inbound: { defaultPolicy: 'all' } },
    appPort: main.port,
    env: { MESHLET_APP_PORTS: `${main.port},${health.port}`, MESHLET_INBOUND_PORT_MAP: `${health.port}=${healthListener}` },
  });
  const client = pool(`http://127.0.0.1:${p.inboundPort}`, 64);
  const healthClient = pool(`http://127.0.0.1:${healthListener}`, 64);
  t.teardown(async () => {
    await Promise.all([client.close(), healthClient.close()]);
    await Promise.all([main.close(), health.close()]);
  });
  // Written just after the admin port answers /ready.
  for (let i = 0; i < 100 && !p.stderr().includes('"proxy started"'); i++) await new Promise((r) => setTimeout(r, 20));
  const started = JSON.parse(p.stderr().split('\n').find((l) => l.includes('"proxy started"')) ?? '{}') as { inboundByAppPort?: Record<string, string> };
  t.same(started.inboundByAppPort, { [main.port]: `127.0.0.1:${p.inboundPort}`, [health.port]: `127.0.0.1:${healthListener}` }, 'the start log names each listener and its app port');
  // The accept stage's deadline holds on the second listener too: a connection that sends nothing is closed.
  const silentMs = await closedAfter(net.connect(healthListener, '127.0.0.1'), 20_000);
  t.ok(silentMs >= 9_000 && silentMs < 13_000, `a connection to the second listener that sends nothing is closed after ~10 s (${silentMs} ms)`);
  t.ok(metricValue(await p.metrics(), 'meshlet_tls_handshake_failures_total', { direction: 'inbound', reason: 'handshake-timeout' }) >= 1, 'counted as handshake-timeout');
  const inFlight = [
    ...Array.from({ length: 10 }, () => get(client, `http://127.0.0.1:${p.inboundPort}/`)),
    ...Array.from({ length: 10 }, () => get(healthClient, `http://127.0.0.1:${healthListener}/healthz`)),
  ];
  const gauge = async () => metricValue(await p.metrics(), 'meshlet_requests_in_flight', { direction: 'inbound' });
  for (let i = 0; i < 250 && (await gauge()) < 20; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(await gauge(), 20, 'meshlet_requests_in_flight{direction="inbound"} counts both listeners');
  const code = p.stop('SIGTERM');
  const results = await Promise.allSettled(inFlight);
  const bodies = results.map((r) => (r.status === 'fulfilled' && r.value.status === 200 ? r.value.body : `failed: ${JSON.stringify(r)}`));
  t.same(bodies, [...Array(10).fill(String(main.port)), ...Array(10).fill(String(health.port))], 'every in-flight request on both listeners finished, each at its own app port');
  t.equal(await code, 0, 'clean exit');
  for (const port of [p.inboundPort, healthListener]) {
    const refused = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'api' } }).then(() => 'served', (e: Error & { code?: string }) => e.code ?? e.message);
    t.equal(refused, 'ECONNREFUSED', `listener ${port === healthListener ? 'of the second port' : 'of the first port'} no longer accepting`);
  }
});

/** A WebSocket echo server: every message comes back as `echo:<message>`. */
async function startEchoServer(t: Test): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
  await new Promise((r) => wss.once('listening', r));
  t.teardown(() => new Promise((r) => wss.close(r)));
  return `127.0.0.1:${(wss.address() as AddressInfo).port}`;
}

/** A WebSocket to `host` through the proxy's outbound listener; echo() sends and waits (at most 2 s) for the answer. */
async function openChat(port: number, host: string): Promise<{ ws: WebSocket; echo(text: string): Promise<string>; closed: Promise<number> }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host } });
  ws.on('error', () => {});
  const closed = new Promise<number>((r) => ws.once('close', () => r(Date.now())));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('close', () => reject(new Error('closed before open')));
  });
  const echo = (text: string) =>
    new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve(`no answer (socket ${ws.readyState === WebSocket.OPEN ? 'open' : 'closed'})`), 2000);
      ws.once('message', (m) => {
        clearTimeout(timer);
        resolve(String(m));
      });
      if (ws.readyState === WebSocket.OPEN) ws.send(text);
    });
  return { ws, echo, closed };
}

/** Until the proxy has logged that it is draining (SIGTERM handled). */
async function draining(p: { stderr(): string }): Promise<boolean> {
  for (let i = 0; i < 200 && !p.stderr().includes('"draining"'); i++) await new Promise((r) => setTimeout(r, 10));
  return p.stderr().includes('"draining"');
}

t.test('SIGTERM with an open WebSocket: it keeps working through the grace period, then is closed and the proxy exits', async (t) => {
  const chat = await startEchoServer(t);
  const p = await startProxyProcess({ config: { version: 'w1', services: [{ name: 'chat', endpoints: [{ address: chat }] }] }, args: ['--drain-grace', '2000'] });
  const c = await openChat(p.outboundPort, 'chat');
  t.equal(await c.echo('before'), 'echo:before', 'the tunnel works');
  const signalled = Date.now();
  const exited = p.stop('SIGTERM').then((code) => ({ code, at: Date.now() }));
  t.ok(await draining(p), 'the proxy is draining');
  t.equal(await c.echo('after'), 'echo:after', 'the tunnel still works after SIGTERM');
  await new Promise((r) => setTimeout(r, 1000));
  t.equal(await c.echo('later'), 'echo:later', 'and a second later');
  const closedAt = await c.closed;
  const exit = await exited;
  t.equal(exit.code, 0, 'clean exit');
  t.ok(closedAt - signalled >= 1900, `closed by the proxy at the end of the 2 s grace period (${closedAt - signalled} ms after SIGTERM)`);
  t.ok(exit.at - signalled >= 1900 && exit.at - signalled < 4000, `exited ${exit.at - signalled} ms after SIGTERM`);
});

t.test('SIGTERM, then the WebSocket closes on its own: the proxy exits then, not at the end of the grace period', async (t) => {
  const chat = await startEchoServer(t);
  const p = await startProxyProcess({ config: { version: 'w2', services: [{ name: 'chat', endpoints: [{ address: chat }] }] } });
  const c = await openChat(p.outboundPort, 'chat');
  const exited = p.stop('SIGTERM').then((code) => ({ code, at: Date.now() }));
  t.ok(await draining(p), 'the proxy is draining');
  t.equal(await c.echo('after'), 'echo:after', 'the tunnel still works after SIGTERM');
  const closing = Date.now();
  c.ws.close(1000, 'done');
  await c.closed;
  const exit = await exited;
  t.equal(exit.code, 0, 'clean exit');
  t.ok(exit.at >= closing && exit.at - closing < 3000, `exited ${exit.at - closing} ms after the WebSocket was closed (grace: 10 s)`);
});

t.test('a 100 MB body streams through with bounded proxy memory', async (t) => {
  let received = 0;
  const sink = await startUpstream((req, res) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => {
      res.setHeader('content-type', 'application/octet-stream');
      // And 100 MB back.
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (sent < 100 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
  });
  // Measured without the test runner's coverage hooks, as the proxy runs for users.
  const p = await startProxyProcess({ config: { version: 'b1', services: [{ name: 'sink', endpoints: [{ address: sink.address }] }] }, env: UNINSTRUMENTED });
  t.teardown(async () => {
    await p.stop();
    await sink.close();
  });
  const total = 100 * 1024 * 1024;
  /** One round trip: 100 MB up, 100 MB down. */
  const transfer = async () => {
    received = 0;
    let produced = 0;
    const body = new Readable({
      read() {
        if (produced >= total) return this.push(null);
        produced += 256 * 1024;
        this.push(Buffer.alloc(256 * 1024, 1));
      },
    });
    const r = await request(`${p.outboundUrl}/upload`, { method: 'POST', headers: { host: 'sink', 'content-length': String(total) }, body });
    let down = 0;
    for await (const c of r.body) down += (c as Buffer).length;
    t.equal(r.statusCode, 200);
    t.equal(received, total, '100 MB up');
    t.equal(down, total, '100 MB down');
  };
  const rssBefore = p.rssKb();
  await transfer();
  const afterFirst = p.rssKb();
  await transfer();
  await transfer();
  const peak = p.rssKb();
  // Bounded means independent of the body size: buffers are recycled, not accumulated. The first
  // transfer grows the allocator's pools to their working size; two more add little: a proxy that
  // kept the bodies would grow by hundreds of MB; on a loaded machine the allocator's arenas alone
  // have grown 27 MB, so the bound is 48 MB, an eighth of the 400 MB they move.
  t.ok(afterFirst - rssBefore < 96 * 1024, `the first 200 MB round trip grew peak RSS by ${((afterFirst - rssBefore) / 1024).toFixed(1)} MB (< 96 MB)`);
  t.ok(peak - afterFirst < 48 * 1024, `400 MB more moved with ${((peak - afterFirst) / 1024).toFixed(1)} MB more peak RSS (< 48 MB)`);
  t.ok(peak < 160 * 1024, `proxy peak RSS ${(peak / 1024).toFixed(1)} MB < 160 MB`);
});

t.test('log level: MESHLET_LOG_LEVEL=warn keeps warnings and drops info lines; a bad level is refused at start', async (t) => {
  const up = await startUpstream();
  const p = await startProxyProcess({ config: { version: 'l1', services: [{ name: 'api', endpoints: [{ address: up.address }] }] }, env: { MESHLET_LOG_LEVEL: 'warn' } });
  t.teardown(async () => {
    await p.stop();
    await up.close();
  });
  const lines = p.stderr().trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
  t.ok(lines.some((l) => l.level === 'warn' && /plaintext mode/.test(l.msg)), 'the plaintext-mode warning is logged');
  t.notOk(lines.some((l) => l.level === 'info'), `no info line (${lines.map((l) => l.msg).join('; ')})`);
  const bad = spawnSync(process.execPath, [PROXY_MAIN, '--config', p.configPath, '--log-level', 'loud'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(bad.status, 2, 'exit 2');
  t.match(bad.stderr, /--log-level \/ MESHLET_LOG_LEVEL: "loud" is not one of debug, info, warn, error/);
  t.match(bad.stderr, /usage: /, 'a bad command line gets the usage');
});

t.test('a listener port in use: exit 1 with the reason, not a usage error', async (t) => {
  const taken = net.createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => taken.close(() => r())));
  const port = (taken.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-inuse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ version: 'l2', services: [] }));
  const r = spawnSync(process.execPath, [PROXY_MAIN, '--config', join(dir, 'config.json'), '--outbound-listen', `127.0.0.1:${port}`, '--inbound-listen', 'off', '--admin-listen', '127.0.0.1:0'], { encoding: 'utf8', timeout: 20_000 });
  t.equal(r.status, 1, 'exit 1: the command line was right');
  t.match(r.stderr, `meshlet proxy: cannot start: listen EADDRINUSE: address already in use 127.0.0.1:${port}`, "says which port");
  t.notMatch(r.stderr, /usage: /, 'no usage text');
});

t.test("MESHLET_INBOUND_PORT_MAP onto the proxy's own outbound or admin port: refused at start naming the map, not blamed on the app or the admin listener", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-ownmap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ version: 'l3', services: [] }));
  const [outbound, inbound, admin] = [await reservedPort(), await reservedPort(), await reservedPort()];
  for (const [flag, port] of [['--outbound-listen', outbound], ['--admin-listen', admin]] as const) {
    const r = spawnSync(process.execPath, [PROXY_MAIN, '--config', join(dir, 'config.json'), '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--app', '127.0.0.1:8080', '--admin-listen', `127.0.0.1:${admin}`], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, MESHLET_APP_PORTS: '8080,9090', MESHLET_INBOUND_PORT_MAP: `9090=${port}` },
    });
    t.equal(r.status, 2, `${flag}: exit 2, a bad environment`);
    t.match(r.stderr, `MESHLET_INBOUND_PORT_MAP: "9090=${port}": proxy port ${port} is already the proxy's ${flag} port`, `${flag}: says which (was: EADDRINUSE, blamed on the app or on the admin listener)`);
  }
});
