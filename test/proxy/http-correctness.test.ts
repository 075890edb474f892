// HTTP correctness through the proxy on real sockets: ambiguous framing rejected and never
// forwarded, oversized heads → 431, hop-by-hop headers removed, header case kept, trace
// context continued with a new span (tracestate only with a valid traceparent), WebSocket through two hops, bodies streamed both ways.
import t from 'tap';
import net from 'node:net';
import { request } from 'undici';
import { WebSocketServer, WebSocket } from 'ws';
import { startUpstream, startProxyProcess, metricValue, type Upstream, type ProxyProcess } from '../fixtures/mesh.ts';

/** Send raw bytes, read until the server closes or `ms` passes. */
function raw(port: number, bytes: string, ms = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, ms);
    s.on('data', (c) => (out += c.toString('latin1')));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', reject);
    s.write(bytes);
  });
}

let up: Upstream;
let p: ProxyProcess;
t.before(async () => {
  up = await startUpstream((req, res, u) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('X-Upstream', String(u.port));
      res.setHeader('X-MixedCase-Header', 'kept');
      res.setHeader('Keep-Alive', 'timeout=5');
      res.setHeader('Connection', 'keep-alive, X-Secret-Hop');
      res.setHeader('X-Secret-Hop', 'must-not-pass');
      res.end(JSON.stringify({ url: req.url, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString() }));
    });
  });
  p = await startProxyProcess({ config: { version: 'h1', services: [{ name: 'up', endpoints: [{ address: up.address }] }] } });
});
t.teardown(async () => {
  await p.stop();
  await up.close();
});

t.test('ambiguous framing is rejected with 400 and never reaches the upstream', async (t) => {
  const variants: Record<string, string> = {
    'CL + TE': 'POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'TE + CL': 'POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
    'duplicate CL (different)': 'POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    'duplicate CL (same)': 'POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
    'obs-fold': 'GET / HTTP/1.1\r\nHost: up\r\nX-Folded: a\r\n  b\r\n\r\n',
    'TE not chunked-last': 'POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    'space before colon': 'GET / HTTP/1.1\r\nHost: up\r\nContent-Length : 0\r\n\r\n',
    'bare LF in chunk size': 'POST / HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n',
    'missing Host': 'GET / HTTP/1.1\r\n\r\n',
  };
  for (const [name, bytes] of Object.entries(variants)) {
    const before = up.hits;
    const res = await raw(p.outboundPort, bytes);
    t.match(res, /^HTTP\/1\.1 400 /, `${name}: 400`);
    t.match(res, /meshlet-proxy-error: bad-request/i, `${name}: reason header`);
    t.equal(up.hits, before, `${name}: never forwarded`);
  }
});

t.test('oversized request head → 431, never forwarded', async (t) => {
  const before = up.hits;
  const res = await raw(p.outboundPort, `GET / HTTP/1.1\r\nHost: up\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(res, /^HTTP\/1\.1 431 /);
  t.match(res, /meshlet-proxy-error: header-too-large/i);
  t.equal(up.hits, before);
});

t.test('requests refused before routing are counted and logged like every request', async (t) => {
  const count = async (code: string, status: string) => metricValue(await p.metrics(), 'meshlet_requests_total', { direction: 'outbound', error_reason: code, status_code: status });
  const logged = (code: string) => p.stdout().split('\n').filter((l) => l.includes(`"error":"${code}"`)).length;
  await new Promise((r) => setTimeout(r, 250)); // earlier tests' lines are flushed (every 100 ms)
  const before = { bad: await count('bad-request', '400'), big: await count('header-too-large', '431'), badLog: logged('bad-request'), bigLog: logged('header-too-large') };
  await raw(p.outboundPort, 'POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
  await raw(p.outboundPort, 'GET /nohost HTTP/1.0\r\n\r\n');
  await raw(p.outboundPort, `GET / HTTP/1.1\r\nHost: up\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  await new Promise((r) => setTimeout(r, 250)); // the access log flushes every 100 ms
  t.equal((await count('bad-request', '400')) - before.bad, 2, 'meshlet_requests_total: two 400 bad-request');
  t.equal((await count('header-too-large', '431')) - before.big, 1, 'meshlet_requests_total: one 431 header-too-large');
  t.equal(logged('bad-request') - before.badLog, 2, 'access log: two bad-request lines');
  t.equal(logged('header-too-large') - before.bigLog, 1, 'access log: one header-too-large line');
  t.ok(p.stdout().split('\n').some((l) => l.includes('"path":"/nohost"') && l.includes('"status":400')), 'a refusal with a parsed head logs its method and path');
});

t.test('hop-by-hop headers are removed both ways; header case is kept', async (t) => {
  const res = await raw(
    p.outboundPort,
    'GET /h HTTP/1.1\r\nHost: up\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic Zm9v\r\nX-CamelCase-Name: v\r\n\r\n',
    500,
  );
  const body = JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4)) as { rawHeaders: string[] };
  const names = body.rawHeaders.filter((_, i) => i % 2 === 0);
  t.notOk(names.some((n) => /^(x-drop-me|keep-alive|te|proxy-authorization)$/i.test(n)), `request hop-by-hop removed: ${names.join(',')}`);
  t.ok(names.includes('X-CamelCase-Name'), 'request header name case kept');
  t.match(res, /\r\nX-MixedCase-Header: kept\r\n/, 'response header name case kept');
  t.notMatch(res, /X-Secret-Hop/i, 'a response header named in Connection is removed');
});

t.test('trace context: same trace id, new span id, tracestate kept; B3 continued', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  await (await request(`${p.outboundUrl}/t`, { headers: { host: 'up', traceparent: `00-${traceId}-${parent}-01`, tracestate: 'vendor=x' } })).body.text();
  const seen = up.seen.at(-1)!.headers;
  const tp = String(seen['traceparent']);
  t.match(tp, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'same trace id, sampled flag kept');
  t.not(tp.split('-')[2], parent, 'a new span id for this hop');
  t.equal(seen['tracestate'], 'vendor=x');
  await (await request(`${p.outboundUrl}/t`, { headers: { host: 'up', 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': parent, 'x-b3-sampled': '1' } })).body.text();
  const b3 = up.seen.at(-1)!.headers;
  t.equal(b3['x-b3-traceid'], '0000000000000000a3ce929d0e0e4736', 'B3 trace id continued');
  t.not(b3['x-b3-spanid'], parent, 'B3 span id is new');
  t.match(String(b3['traceparent']), /^00-0000000000000000a3ce929d0e0e4736-/, 'and W3C traceparent added');
  await new Promise((r) => setTimeout(r, 300)); // the access log is flushed every 100 ms
  const log = p.stdout().trim().split('\n').map((l) => JSON.parse(l) as { trace_id: string; path: string });
  t.ok(log.some((l) => l.trace_id === traceId && l.path === '/t'), 'trace id in the access log');
});

t.test('tracestate is discarded when the trace restarts (traceparent missing or invalid)', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const cases: Record<string, Record<string, string>> = {
    'garbage traceparent': { traceparent: 'garbage', tracestate: 'vnd=abc' },
    'upper-case hex': { traceparent: `00-${traceId.toUpperCase()}-00F067AA0BA902B7-01`, tracestate: 'vnd=abc' },
    'tracestate alone': { tracestate: 'vnd=abc' },
    'version not hex': { traceparent: `zz-${traceId}-00f067aa0ba902b7-01`, tracestate: 'vnd=abc' },
    'future version, junk after the flags': { traceparent: `01-${traceId}-00f067aa0ba902b7-01Xjunk`, tracestate: 'vnd=abc' },
  };
  for (const [name, h] of Object.entries(cases)) {
    await (await request(`${p.outboundUrl}/ts`, { headers: { host: 'up', ...h } })).body.text();
    const seen = up.seen.at(-1)!.headers;
    t.equal(seen['tracestate'], undefined, `${name}: tracestate not forwarded`);
    t.match(String(seen['traceparent']), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/, `${name}: a new traceparent`);
    t.not(String(seen['traceparent']).split('-')[1], traceId, `${name}: a new trace id`);
  }
});

t.test('B3 is continued and forwarded when the traceparent beside it is invalid', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  await (await request(`${p.outboundUrl}/b3`, { headers: { host: 'up', traceparent: 'garbage', 'x-b3-traceid': traceId, 'x-b3-spanid': parent, 'x-b3-sampled': '1' } })).body.text();
  const seen = up.seen.at(-1)!.headers;
  t.equal(seen['x-b3-traceid'], traceId, 'B3 trace id forwarded');
  t.match(String(seen['x-b3-spanid']), /^[0-9a-f]{16}$/, 'a B3 span id forwarded');
  t.not(seen['x-b3-spanid'], parent, 'a new one');
  t.equal(seen['x-b3-sampled'], '1', 'sampled forwarded');
  t.match(String(seen['traceparent']), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'traceparent continues the B3 trace');
});

/** The headers the upstream saw for one request sent through the proxy with `headers`. */
async function via(headers: Record<string, string>) {
  await (await request(`${p.outboundUrl}/b3s`, { headers: { host: 'up', ...headers } })).body.text();
  return up.seen.at(-1)!.headers;
}

t.test('B3 sampling through the proxy: deferred stays deferred, debug stays debug, a decision alone is honoured', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  let seen = await via({ 'x-b3-traceid': traceId, 'x-b3-spanid': parent });
  t.equal(seen['x-b3-traceid'], traceId, 'deferred: trace continued');
  t.equal(seen['x-b3-sampled'], undefined, 'deferred: no x-b3-sampled (was 0)');
  t.match(String(seen['traceparent']), new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`), 'deferred: traceparent with the proxy\'s own decision');
  seen = await via({ 'x-b3-traceid': traceId, 'x-b3-spanid': parent, 'x-b3-flags': '1' });
  t.equal(seen['x-b3-flags'], '1', 'X-B3-Flags: 1 passed on');
  t.match(String(seen['traceparent']), /-01$/, 'debug is sampled');
  seen = await via({ b3: `${traceId}-${parent}-d` });
  t.match(String(seen['b3']), new RegExp(`^${traceId}-[0-9a-f]{16}-d$`), 'b3 ...-d passed on as -d');
  seen = await via({ b3: '0' });
  t.match(String(seen['b3']), /^[0-9a-f]{32}-[0-9a-f]{16}-0$/, 'b3: 0 alone: a new trace, not sampled');
  seen = await via({ 'x-b3-sampled': '1' });
  t.match(String(seen['x-b3-traceid']), /^[0-9a-f]{32}$/, 'X-B3-Sampled: 1 alone: a new trace');
  t.equal(seen['x-b3-sampled'], '1', 'X-B3-Sampled: 1 alone: sampled passed on');
  t.match(String(seen['traceparent']), /-01$/, 'X-B3-Sampled: 1 alone: traceparent sampled');
});

t.test('request and response bodies stream both ways', async (t) => {
  const r = await request(`${p.outboundUrl}/echo`, { method: 'POST', headers: { host: 'up' }, body: 'x'.repeat(200_000) });
  const body = JSON.parse(await r.body.text()) as { body: string };
  t.equal(body.body.length, 200_000);
});

t.test('WebSocket echo through two hops (outbound → inbound → app)', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await new Promise((r) => wss.once('listening', r));
  const appPort = (wss.address() as net.AddressInfo).port;
  wss.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(isBinary ? m : `echo:${m.toString()}`)));
  const inbound = await startProxyProcess({ config: { version: 'w1', services: [], inbound: { defaultPolicy: 'all' } }, appPort, workload: 'ws-app' });
  const outbound = await startProxyProcess({ config: { version: 'w1', services: [{ name: 'ws', endpoints: [{ address: `127.0.0.1:${inbound.inboundPort}` }] }] }, workload: 'ws-client' });
  t.teardown(async () => {
    await outbound.stop();
    await inbound.stop();
    wss.close();
  });
  const ws = new WebSocket(`ws://127.0.0.1:${outbound.outboundPort}/chat`, { headers: { host: 'ws' } });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const got: string[] = [];
  const done = new Promise<void>((resolve) =>
    ws.on('message', (m) => {
      got.push(m.toString());
      if (got.length === 3) resolve();
    }),
  );
  for (const m of ['a', 'b', 'c']) ws.send(m);
  await done;
  t.same(got, ['echo:a', 'echo:b', 'echo:c']);
  ws.close();
});
