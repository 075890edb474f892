// HTTP/2 and gRPC through two real proxies over mTLS (identities from a real control plane), to a
// real node:http2 app, with gRPC's framing (5-byte message prefix, grpc-status in trailers):
// unary with body and trailers intact and trace context continued per hop, server streaming, bidi
// streaming message by message, a retried UNAVAILABLE, a weighted split, the proxy's own errors (no route, timeout,
// authorization deny) as gRPC callers read them, metrics, and many streams over one connection.
import t from 'tap';
import http2 from 'node:http2';
import { spawn } from 'node:child_process';
import { startProxyProcess, metricValue, type ProxyProcess } from '../fixtures/mesh.ts';
import { startControlPlane, identityArgs, type ControlPlane } from '../fixtures/control-plane.ts';

const TD = 'spiffe://cluster.local';
const WEB = `${TD}/ns/shop/sa/web`;
const API = `${TD}/ns/shop/sa/api`;

/** One gRPC message: uncompressed flag, 4-byte length, payload. */
const frame = (text: string): Buffer => {
  const p = Buffer.from(text);
  const b = Buffer.alloc(5 + p.length);
  b.writeUInt32BE(p.length, 1);
  p.copy(b, 5);
  return b;
};

/** Split a byte stream into gRPC messages as they complete. */
function messages(onMessage: (text: string) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const n = buf.readUInt32BE(1);
      onMessage(buf.subarray(5, 5 + n).toString());
      buf = buf.subarray(5 + n);
    }
  };
}

interface AppServer {
  port: number;
  /** Resolved by the server-streaming test once its caller has the first message. */
  gate: Promise<void>;
  open(): void;
  sessions: number;
  streams: number;
  /** x-keys of /echo.Echo/Flaky calls answered UNAVAILABLE once already. */
  flaky: Set<string>;
  close(): Promise<void>;
}

const GRPC = { 'content-type': 'application/grpc' };

/** The app: a gRPC-framed echo service over h2c (prior knowledge), tagged with `name`. */
async function startApp(name: string): Promise<AppServer> {
  const server = http2.createServer();
  const gate = Promise.withResolvers<void>();
  const app: AppServer = { port: 0, sessions: 0, streams: 0, flaky: new Set(), gate: gate.promise, open: () => gate.resolve(), close: () => new Promise<void>((r) => server.close(() => r())) };
  const open = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    app.sessions++;
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  app.close = () =>
    new Promise<void>((r) => {
      for (const s of open) s.destroy();
      server.close(() => r());
    });
  server.on('stream', (s, h) => {
    app.streams++;
    s.on('error', () => {});
    const path = h[':path'];
    const seen = { 'x-seen-traceparent': String(h['traceparent'] ?? ''), 'x-seen-te': String(h['te'] ?? ''), 'x-app': name };
    if (path === '/plain') {
      s.respond({ ':status': 200, 'content-type': 'text/plain', ...seen });
      s.end(`plain from ${name}`);
      return;
    }
    if (path === '/echo.Echo/Unary') {
      const got: string[] = [];
      s.on('data', messages((m) => got.push(m)));
      s.on('end', () => {
        s.respond({ ':status': 200, ...GRPC, ...seen }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'all good', 'x-trailer': name }));
        s.end(frame(`${name}: ${got.join('+')}`));
      });
      return;
    }
    if (path === '/echo.Echo/ServerStream') {
      // The first message, then the rest only once the caller has the first: a proxy that held
      // the body back (to the end, or to a buffer size) would never let the caller have it.
      s.resume();
      s.respond({ ':status': 200, ...GRPC }, { waitForTrailers: true });
      s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.write(frame('item 0'));
      void app.gate.then(() => {
        if (s.closed) return;
        for (let i = 1; i < 5; i++) s.write(frame(`item ${i}`));
        s.end();
      });
      return;
    }
    if (path === '/echo.Echo/SlowStream') {
      s.resume();
      s.respond({ ':status': 200, ...GRPC }, { waitForTrailers: true });
      s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      let i = 0;
      const tick = setInterval(() => {
        if (s.closed) return clearInterval(tick);
        s.write(frame(`slow ${i}`));
        if (++i === 4) {
          clearInterval(tick);
          s.end();
        }
      }, 150);
      return;
    }
    if (path === '/echo.Echo/Bidi') {
      s.respond({ ':status': 200, ...GRPC }, { waitForTrailers: true });
      s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.on('data', messages((m) => s.write(frame(`echo ${m}`))));
      s.on('end', () => s.end());
      return;
    }
    if (path === '/echo.Echo/Flaky') {
      // The first call of each x-key: UNAVAILABLE (trailers-only) once its body was read; then the echo.
      const key = String(h['x-key']);
      const got: string[] = [];
      s.on('data', messages((m) => got.push(m)));
      s.on('end', () => {
        if (!app.flaky.has(key)) {
          app.flaky.add(key);
          s.respond({ ':status': 200, ...GRPC, 'grpc-status': '14', 'grpc-message': 'restarting' }, { endStream: true });
          return;
        }
        s.respond({ ':status': 200, ...GRPC }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(frame(`${name}: ${got.join('+')}`));
      });
      return;
    }
    if (path === '/echo.Echo/Fail') {
      s.resume();
      s.respond({ ':status': 200, ...GRPC, 'grpc-status': '5', 'grpc-message': 'no such thing' }, { endStream: true });
      return;
    }
    if (path === '/echo.Echo/Slow') {
      s.resume();
      const t = setTimeout(() => {
        if (!s.closed) {
          s.respond({ ':status': 200, ...GRPC }, { endStream: true });
        }
      }, 3000);
      s.once('close', () => clearTimeout(t));
      return;
    }
    s.respond({ ':status': 404 }, { endStream: true });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  app.port = (server.address() as { port: number }).port;
  return app;
}

interface Call {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  messages: string[];
  body: string;
  rstCode: number;
}

/** One call: headers, request messages (sent then the request ends), everything that came back. */
function call(session: http2.ClientHttp2Session, authority: string, path: string, o: { grpc?: boolean; send?: string[]; headers?: Record<string, string> } = {}): Promise<Call> {
  return new Promise((resolve, reject) => {
    const grpc = o.grpc ?? true;
    const req = session.request({ ':method': 'POST', ':path': path, ':authority': authority, ...(grpc ? { ...GRPC, te: 'trailers' } : {}), ...o.headers });
    const out: Call = { headers: {}, trailers: undefined, messages: [], body: '', rstCode: 0 };
    const parse = messages((m) => out.messages.push(m));
    req.on('response', (h) => (out.headers = h));
    req.on('trailers', (tr) => (out.trailers = tr));
    req.on('data', (c: Buffer) => {
      out.body += c.toString();
      if (grpc) parse(c);
    });
    req.on('error', reject);
    req.on('close', () => {
      out.rstCode = req.rstCode ?? 0;
      resolve(out);
    });
    for (const m of o.send ?? ['hi']) req.write(frame(m));
    req.end();
  });
}

/** The grpc-status a caller reads: from the trailers, or from the headers of a trailers-only answer. */
const grpcStatus = (c: Call): string | undefined => String(c.trailers?.['grpc-status'] ?? c.headers['grpc-status'] ?? '') || undefined;

let cp: ControlPlane;
let app: AppServer;
let v2: AppServer;
let server: ProxyProcess;
let client: ProxyProcess;
let session: http2.ClientHttp2Session;

t.before(async () => {
  cp = await startControlPlane();
  app = await startApp('v1');
  v2 = await startApp('v2');
  server = await startProxyProcess({
    config: {
      version: 's1',
      services: [],
      // web may call the echo service and /plain; nothing else (the deny test calls /admin.Admin/Reset).
      inbound: { defaultPolicy: 'deny', policies: [{ name: 'echo-callers', rules: [{ identities: [WEB], paths: ['/echo.Echo/*', '/plain'] }] }] },
    },
    appPort: app.port,
    workload: 'api',
    args: identityArgs(cp, 'shop', 'api'),
  });
  const api = { address: `127.0.0.1:${server.inboundPort}`, identity: API };
  client = await startProxyProcess({
    config: {
      version: 'c1',
      services: [
        { name: 'api', endpoints: [api] },
        { name: 'slow', endpoints: [api], timeouts: { request: 300 } },
        // Retries gRPC (POST) answered UNAVAILABLE, without backoff.
        { name: 'api-retry', endpoints: [api], retry: { methods: ['POST'], backoff: { base: 0, cap: 0 } } },
        { name: 'upload', endpoints: [api], timeouts: { perTry: 300, request: 5000 } },
        { name: 'v2', endpoints: [{ address: `127.0.0.1:${v2.port}` }] },
        { name: 'split', endpoints: [], routes: [{ name: 'three-to-one', backends: [{ service: 'api', weight: 3 }, { service: 'v2', weight: 1 }] }] },
      ],
    },
    workload: 'web',
    args: identityArgs(cp, 'shop', 'web'),
  });
  session = http2.connect(client.outboundUrl);
  session.on('error', () => {});
});
t.teardown(async () => {
  session?.destroy();
  await client?.stop();
  await server?.stop();
  await app?.close();
  await v2?.close();
  await cp?.stop();
});

t.test('unary gRPC through outbound → inbound (mTLS, h2) → app (h2c): body and trailers intact, a new span per hop', async (t) => {
  const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const c = await call(session, 'api', '/echo.Echo/Unary', { send: ['a', 'b'], headers: { traceparent: parent } });
  t.equal(c.headers[':status'], 200);
  t.same(c.messages, ['v1: a+b'], 'both request messages reached the app; its answer came back whole');
  t.equal(c.trailers?.['grpc-status'], '0');
  t.equal(c.trailers?.['grpc-message'], 'all good');
  t.equal(c.trailers?.['x-trailer'], 'v1', 'every trailer is forwarded');
  t.equal(c.headers['x-seen-te'], 'trailers', 'te: trailers reaches the app (RFC 9113 §8.2.2 allows it)');
  const seen = String(c.headers['x-seen-traceparent']);
  t.match(seen, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/, 'the app continues the caller\'s trace');
  t.not(seen.split('-')[2], 'b7ad6b7169203331', 'with the span of a proxy hop as its parent');
  await new Promise((r) => setTimeout(r, 300));
  const outLog = client.stdout().split('\n').filter((l) => l.includes('"path":"/echo.Echo/Unary"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(outLog.some((l) => l.direction === 'outbound' && l.status === 200 && l.dst_service === 'api' && l.upstream === `127.0.0.1:${server.inboundPort}` && l.trace_id === '0af7651916cd43dd8448eb211c80319c'), 'outbound access log: one line, with the endpoint and the trace');
  const inLog = server.stdout().split('\n').filter((l) => l.includes('"path":"/echo.Echo/Unary"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(inLog.some((l) => l.direction === 'inbound' && l.peer === WEB && l.upstream === `127.0.0.1:${app.port}`), 'inbound access log names the mTLS peer and the app');
});

t.test('curl with HTTP/2 prior knowledge, not gRPC: a plain response across both hops', async (t) => {
  const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    const c = spawn('curl', ['-sS', '-i', '--max-time', '10', '--http2-prior-knowledge', '-H', 'Host: api', `http://127.0.0.1:${client.outboundPort}/plain`]);
    let stdout = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.on('close', (code) => resolve({ code, stdout }));
  });
  t.equal(out.code, 0);
  t.match(out.stdout, /^HTTP\/2 200/);
  t.match(out.stdout, /plain from v1$/);
});

t.test('server streaming: each message reaches the caller as the app sends it, then grpc-status 0', async (t) => {
  const req = session.request({ ':method': 'POST', ':path': '/echo.Echo/ServerStream', ':authority': 'api', ...GRPC, te: 'trailers' });
  const got: string[] = [];
  const firstArrived = Promise.withResolvers<void>();
  req.on('data', messages((m) => {
    got.push(m);
    firstArrived.resolve();
  }));
  let trailers: http2.IncomingHttpHeaders | undefined;
  req.on('trailers', (tr) => (trailers = tr));
  const closed = new Promise((r) => req.on('close', r));
  req.end(frame('go'));
  const before = await Promise.race([firstArrived.promise.then(() => 'arrived'), new Promise<string>((r) => setTimeout(() => r('held back'), 5000))]);
  t.equal(before, 'arrived', 'the first message arrived while the app held the rest (not buffered by a proxy)');
  t.same(got, ['item 0'], 'and only it');
  app.open();
  await closed;
  t.same(got, ['item 0', 'item 1', 'item 2', 'item 3', 'item 4']);
  t.equal(trailers?.['grpc-status'], '0');
});

t.test('client streaming: an upload longer than the per-try timeout is the caller\'s pace, not a timeout', async (t) => {
  const req = session.request({ ':method': 'POST', ':path': '/echo.Echo/Unary', ':authority': 'upload', ...GRPC, te: 'trailers' });
  const got: string[] = [];
  req.on('data', messages((m) => got.push(m)));
  let trailers: http2.IncomingHttpHeaders | undefined;
  let headers: http2.IncomingHttpHeaders = {};
  req.on('response', (h) => (headers = h));
  req.on('trailers', (tr) => (trailers = tr));
  const closed = new Promise((r) => req.on('close', r));
  // 4 messages 150 ms apart: 450 ms of upload on a route whose per-try timeout is 300 ms.
  for (const m of ['w', 'x', 'y', 'z']) {
    req.write(frame(m));
    await new Promise((r) => setTimeout(r, 150));
  }
  req.end();
  await closed;
  t.equal(headers['meshlet-proxy-error'], undefined, `no proxy error (got ${String(headers['meshlet-proxy-error'])})`);
  t.same(got, ['v1: w+x+y+z'], 'every message reached the app, one answer came back');
  t.equal(trailers?.['grpc-status'], '0');
});

t.test('bidi streaming: each message answered before the next is sent', async (t) => {
  const req = session.request({ ':method': 'POST', ':path': '/echo.Echo/Bidi', ':authority': 'api', ...GRPC, te: 'trailers' });
  const waiting: Array<(m: string) => void> = [];
  req.on('data', messages((m) => waiting.shift()?.(m)));
  const replies: string[] = [];
  for (const word of ['one', 'two', 'three']) {
    const reply = new Promise<string>((r) => waiting.push(r));
    req.write(frame(word));
    replies.push(
      await Promise.race([reply, new Promise<string>((_, rej) => setTimeout(() => rej(new Error(`no echo of "${word}" within 5 s: the stream is buffered somewhere`)), 5000))]),
    );
  }
  let trailers: http2.IncomingHttpHeaders | undefined;
  req.on('trailers', (tr) => (trailers = tr));
  req.end();
  await new Promise((r) => req.on('close', r));
  t.same(replies, ['echo one', 'echo two', 'echo three']);
  t.equal(trailers?.['grpc-status'], '0');
});

t.test('a gRPC error from the app passes through and counts as a failure', async (t) => {
  const c = await call(session, 'api', '/echo.Echo/Fail');
  t.equal(c.headers[':status'], 200);
  t.equal(grpcStatus(c), '5', 'grpc-status NOT_FOUND from the app (trailers-only) reaches the caller');
  t.equal(c.headers['grpc-message'], 'no such thing');
  t.equal(c.headers['meshlet-proxy-error'], undefined, 'not a proxy error');
  const m = await client.metrics();
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', dst_service: 'api', status_code: '200', classification: 'failure', error_reason: '' }) >= 1, 'HTTP 200 with grpc-status 5: classified failure');
});

t.test('a trailers-only UNAVAILABLE from the app behind the server proxy is retried over mTLS, the body sent again', async (t) => {
  const before = app.streams;
  const c = await call(session, 'api-retry', '/echo.Echo/Flaky', { send: ['x', 'y'], headers: { 'x-key': 'mtls-1' } });
  t.equal(c.trailers?.['grpc-status'], '0', `the retry's answer reached the caller (got ${grpcStatus(c)})`);
  t.same(c.messages, ['v1: x+y'], 'both messages reached the app again');
  t.equal(app.streams - before, 2, 'two attempts through both proxies');
  t.equal(metricValue(await client.metrics(), 'meshlet_retries_total', { dst_service: 'api-retry', reason: 'grpc-14' }), 1);
});

t.test('weighted split over HTTP/2: 3:1 within tolerance', async (t) => {
  const n = 400;
  const tally = { v1: 0, v2: 0, other: 0 };
  for (let i = 0; i < n; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => call(session, 'split', '/echo.Echo/Unary')));
    for (const c of batch) {
      const who = c.messages[0]?.split(':')[0];
      if (who === 'v1' || who === 'v2') tally[who]++;
      else tally.other++;
    }
  }
  t.equal(tally.other, 0, 'every call answered by a backend');
  const share = tally.v2 / n;
  // 25 % expected; ±8 % is over 3.5 standard deviations at n = 400.
  t.ok(share > 0.17 && share < 0.33, `v2 took ${(share * 100).toFixed(1)} % (${tally.v2}/${n}), weight 1 of 4`);
});

t.test('no route: the proxy answers itself, with the reason (gRPC: NOT_FOUND; HTTP: 404)', async (t) => {
  const g = await call(session, 'nope', '/echo.Echo/Unary');
  t.equal(g.headers[':status'], 200, 'a gRPC caller gets a trailers-only answer');
  t.equal(grpcStatus(g), '5');
  t.equal(g.headers['meshlet-proxy-error'], 'no-route');
  t.match(decodeURIComponent(String(g.headers['grpc-message'])), /no-route: no service for host "nope"/);
  const h = await call(session, 'nope', '/plain', { grpc: false, send: [] });
  t.equal(h.headers[':status'], 404);
  t.equal(h.headers['meshlet-proxy-error'], 'no-route');
  t.match(h.body, /meshlet: no-route: no service for host "nope"/);
});

t.test('the route timeout: gRPC UNAVAILABLE (as Linkerd answers a proxy timeout), HTTP 504, both with request-timeout', async (t) => {
  // The app answers after 3 s; the route's whole-request timeout is 300 ms.
  const g = await call(session, 'slow', '/echo.Echo/Slow');
  t.equal(grpcStatus(g), '14');
  t.equal(g.headers['meshlet-proxy-error'], 'request-timeout');
  const h = await call(session, 'slow', '/echo.Echo/Slow', { grpc: false, send: [] });
  t.equal(h.headers[':status'], 504);
  t.equal(h.headers['meshlet-proxy-error'], 'request-timeout');
});

t.test('authorization over h2: the inbound policy denies web on another path (PERMISSION_DENIED), the app never sees it', async (t) => {
  const before = app.streams;
  const g = await call(session, 'api', '/admin.Admin/Reset');
  t.equal(grpcStatus(g), '7');
  t.equal(g.headers['meshlet-proxy-error'], 'forbidden');
  t.equal(app.streams, before, 'nothing reached the app');
  const h = await call(session, 'api', '/admin.Admin/Reset', { grpc: false, send: [] });
  t.equal(h.headers[':status'], 403);
  t.equal(h.headers['meshlet-proxy-error'], 'forbidden');
  const m = await server.metrics();
  t.ok(metricValue(m, 'meshlet_authz_decisions_total', { decision: 'deny' }) >= 2, 'deny decisions counted');
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'inbound', src_identity: WEB, status_code: '403', error_reason: 'forbidden' }) >= 1, 'and the denied request is in the inbound metrics');
});

t.test('many concurrent streams share one connection per hop', async (t) => {
  const inboundConnsBefore = metricValue(await server.metrics(), 'meshlet_tcp_connections_total', { direction: 'inbound' });
  const appSessionsBefore = app.sessions;
  const calls = await Promise.all(Array.from({ length: 200 }, (_, i) => call(session, 'api', '/echo.Echo/Unary', { send: [`n${i}`] })));
  t.equal(calls.filter((c) => c.trailers?.['grpc-status'] === '0').length, 200, 'all 200 concurrent calls succeed');
  t.ok(calls.every((c, i) => c.messages[0] === `v1: n${i}`), 'each answer is its own call\'s');
  const inboundConns = metricValue(await server.metrics(), 'meshlet_tcp_connections_total', { direction: 'inbound' }) - inboundConnsBefore;
  t.ok(inboundConns <= 1, `the client proxy opened ${inboundConns} new connection(s) to the server proxy for 200 streams (one session, reused)`);
  t.ok(app.sessions - appSessionsBefore <= 1, `the server proxy opened ${app.sessions - appSessionsBefore} new h2c session(s) to the app`);
});

t.test('golden signals on /metrics: requests by status and a latency histogram, both hops', async (t) => {
  const cm = await client.metrics();
  t.ok(metricValue(cm, 'meshlet_requests_total', { direction: 'outbound', dst_service: 'api', status_code: '200', classification: 'success', tls: 'true' }) >= 200, 'outbound successes over mTLS');
  t.ok(metricValue(cm, 'meshlet_request_duration_seconds_count', { direction: 'outbound', dst_service: 'api' }) >= 200, 'latency histogram');
  t.ok(metricValue(cm, 'meshlet_proxy_errors_total', { direction: 'outbound', reason: 'no-route' }) >= 2, 'proxy errors by reason');
  t.ok(metricValue(cm, 'meshlet_proxy_errors_total', { direction: 'outbound', reason: 'request-timeout' }) >= 2);
  const sm = await server.metrics();
  t.ok(metricValue(sm, 'meshlet_requests_total', { direction: 'inbound', src_identity: WEB, status_code: '200', classification: 'success', tls: 'true' }) >= 200, 'inbound successes with the peer identity');
});

t.test('plaintext h2c on an inbound listener: served where plaintext is allowed, refused on a strict port', async (t) => {
  // A proxy without identity (plaintext mode) takes h2c on its inbound listener, as HTTP/1, and
  // authorizes it the same way: the default (all-authenticated) denies it, `all` lets it in.
  const plain = await startProxyProcess({ config: { version: 'p1', services: [] }, appPort: app.port, workload: 'plain' });
  t.teardown(() => plain.stop());
  const s = http2.connect(`http://127.0.0.1:${plain.inboundPort}`);
  s.on('error', () => {});
  const denied = await call(s, 'plain', '/echo.Echo/Unary', { send: ['p'] });
  t.equal(grpcStatus(denied), '7', 'no peer identity: PERMISSION_DENIED under the default policy');
  t.match(decodeURIComponent(String(denied.headers['grpc-message'])), /allows only authenticated \(mTLS\) peers/);
  plain.writeConfig({ version: 'p2', services: [], inbound: { defaultPolicy: 'all' } });
  await plain.waitForVersion('p2');
  const c = await call(s, 'plain', '/echo.Echo/Unary', { send: ['p'] });
  s.close();
  t.same(c.messages, ['v1: p'], 'allowed: through to the app as h2c');
  t.equal(c.trailers?.['grpc-status'], '0');
  // The mTLS proxy's port is strict: plaintext is refused at accept, h2c or not.
  const strict = http2.connect(`http://127.0.0.1:${server.inboundPort}`);
  const outcome = await new Promise<string>((resolve) => {
    strict.on('error', (e: Error & { code?: string }) => resolve(`error ${e.code}`));
    strict.on('close', () => resolve('closed'));
    const r = strict.request({ ':path': '/echo.Echo/Unary', ':authority': 'api' }, { endStream: true });
    r.on('response', (h) => resolve(`answered ${String(h[':status'])}`));
    r.on('error', () => {});
  });
  strict.destroy();
  t.notMatch(outcome, /^answered/, `no answer over plaintext on a strict port (${outcome})`);
});

t.test('drain: an HTTP/2 stream in flight when the proxy is told to stop finishes', async (t) => {
  const req = session.request({ ':method': 'POST', ':path': '/echo.Echo/SlowStream', ':authority': 'api', ...GRPC, te: 'trailers' });
  const got: string[] = [];
  req.on('data', messages((m) => got.push(m)));
  let trailers: http2.IncomingHttpHeaders | undefined;
  req.on('trailers', (tr) => (trailers = tr));
  req.on('error', () => {});
  const closed = new Promise((r) => req.on('close', r));
  const first = new Promise<void>((r) => req.once('data', () => r()));
  req.end(frame('go'));
  await first;
  const exited = client.stop('SIGTERM');
  await closed;
  t.same(got, ['slow 0', 'slow 1', 'slow 2', 'slow 3'], 'every message after SIGTERM arrived (the app spaces them 150 ms)');
  t.equal(trailers?.['grpc-status'], '0', 'and the trailers');
  t.equal(await exited, 0, 'the proxy exits 0 once the stream is done');
});
