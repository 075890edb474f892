// Retries, the retry budget and the per-endpoint breaker for HTTP/2 (gRPC), through a real proxy
// to real node:http2 apps (h2c, unmeshed endpoints): a trailers-only UNAVAILABLE and a reset before
// any response are retried where the route retries POST (gRPC's method), with the same body; not
// by default, where only a connect failure is; a body over maxBufferedBody, or one still streaming, is sent once; HTTP/2 requests
// earn and spend the service's retry budget; an endpoint answering HTTP 200 with grpc-status
// UNAVAILABLE in its trailers is ejected like one answering 5xx; a caller's grpc-timeout bounds
// its request when shorter than the route's timeout.
import t from 'tap';
import http2 from 'node:http2';
import { startProxyProcess, metricValue, reservedPort, type ProxyProcess } from '../fixtures/mesh.ts';

/** One gRPC message: uncompressed flag, 4-byte length, payload. */
const frame = (text: string): Buffer => {
  const p = Buffer.from(text);
  const b = Buffer.alloc(5 + p.length);
  b.writeUInt32BE(p.length, 1);
  p.copy(b, 5);
  return b;
};

const GRPC = { 'content-type': 'application/grpc' };

interface App {
  name: string;
  port: number;
  /** Streams seen, by `x-key` (or path when none), with the request body bytes of each. */
  seen: Map<string, Buffer[]>;
  /** The grpc-timeout of each stream that had one, by `x-key`. */
  grpcTimeouts: Map<string, string>;
  close(): Promise<void>;
}

/**
 * A gRPC-framed app. `x-fail: N` on a request: the first N streams with its `x-key` fail, after
 * the whole request body was read, as `x-fail-how` says: `unavailable` (trailers-only
 * grpc-status 14, the default) or `reset` (RST_STREAM, no response); later ones answer OK with the
 * body's length. Paths: /echo.Echo/Unary (that), /echo.Echo/Early (trailers-only UNAVAILABLE
 * after the first DATA frame, the request still open), /echo.Echo/NotFound (trailers-only NOT_FOUND),
 * /echo.Echo/Mixed (app "bad" answers HTTP 200, a message, then grpc-status 14 in the trailers; the
 * others OK), /echo.Echo/Slow (OK after 3 s), /plain (not gRPC: 503 for the first x-fail, then 200).
 */
async function startApp(name: string): Promise<App> {
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  const app: App = {
    name,
    port: 0,
    seen: new Map(),
    grpcTimeouts: new Map(),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        server.close(() => r());
      }),
  };
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  const ok = (s: http2.ServerHttp2Stream, text: string) => {
    s.respond({ ':status': 200, ...GRPC, 'x-app': name }, { waitForTrailers: true });
    s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
    s.end(frame(text));
  };
  server.on('stream', (s, h) => {
    s.on('error', () => {});
    const path = String(h[':path']);
    const key = String(h['x-key'] ?? path);
    if (typeof h['grpc-timeout'] === 'string') app.grpcTimeouts.set(key, h['grpc-timeout']);
    const bodies = app.seen.get(key) ?? [];
    app.seen.set(key, bodies);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    if (path === '/echo.Echo/Early') {
      bodies.push(Buffer.alloc(0));
      s.once('data', () => s.respond({ ':status': 200, ...GRPC, 'grpc-status': '14', 'grpc-message': 'early' }, { endStream: true }));
      return;
    }
    if (path === '/echo.Echo/NotFound') {
      bodies.push(Buffer.alloc(0));
      s.resume();
      s.respond({ ':status': 200, ...GRPC, 'grpc-status': '5', 'grpc-message': 'no such thing' }, { endStream: true });
      return;
    }
    if (path === '/plain') {
      // Not gRPC: the first x-fail calls of an x-key get 503 (x-fail-how: refuse, REFUSED_STREAM), then 200.
      bodies.push(Buffer.alloc(0));
      s.resume();
      if (bodies.length <= Number(h['x-fail'] ?? 0)) {
        if (h['x-fail-how'] === 'refuse') s.close(http2.constants.NGHTTP2_REFUSED_STREAM);
        else s.respond({ ':status': 503 }, { endStream: true });
      }
      else {
        s.respond({ ':status': 200, 'content-type': 'text/plain' });
        s.end(`plain from ${name}`);
      }
      return;
    }
    if (path === '/echo.Echo/Slow') {
      s.resume();
      const timer = setTimeout(() => ok(s, 'slow'), 3000);
      s.once('close', () => clearTimeout(timer));
      return;
    }
    s.on('end', () => {
      const body = Buffer.concat(chunks);
      bodies.push(body);
      if (path === '/echo.Echo/Mixed') {
        if (name !== 'bad') return ok(s, name);
        s.respond({ ':status': 200, ...GRPC, 'x-app': name }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '14', 'grpc-message': 'bad endpoint' }));
        s.end(frame('partial'));
        return;
      }
      if (bodies.length <= Number(h['x-fail'] ?? 0)) {
        if (h['x-fail-how'] === 'reset') s.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else s.respond({ ':status': 200, ...GRPC, 'grpc-status': '14', 'grpc-message': 'try again' }, { endStream: true });
        return;
      }
      ok(s, `${name} got ${body.length} bytes`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  app.port = (server.address() as { port: number }).port;
  return app;
}

interface Call {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
}

/** One unary call: `payload` as one message, the request ended; everything that came back. */
function call(session: http2.ClientHttp2Session, authority: string, path: string, payload: string, headers: Record<string, string> = {}): Promise<Call> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', ':path': path, ':authority': authority, ...GRPC, te: 'trailers', ...headers });
    const out: Call = { headers: {}, trailers: undefined, body: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    req.on('response', (h) => (out.headers = h));
    req.on('trailers', (tr) => (out.trailers = tr));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('close', () => {
      out.body = Buffer.concat(chunks);
      resolve(out);
    });
    req.end(frame(payload));
  });
}

const grpcStatus = (c: Call): string | undefined => String(c.trailers?.['grpc-status'] ?? c.headers['grpc-status'] ?? '') || undefined;
/** The text of the first message of an answer. */
const message = (c: Call): string => (c.body.length >= 5 ? c.body.subarray(5, 5 + c.body.readUInt32BE(1)).toString() : '');
const streams = (app: App, key: string): number => app.seen.get(key)?.length ?? 0;
const at = (app: App) => ({ address: `127.0.0.1:${app.port}` });
const budgetFail = (n: number) => call(session, 'budget', '/echo.Echo/Unary', 'b', { 'x-key': `b-fail-${n}`, 'x-fail': '9' });

let a: App;
let bad: App;
let good: App;
let proxy: ProxyProcess;
let session: http2.ClientHttp2Session;

t.before(async () => {
  a = await startApp('a');
  bad = await startApp('bad');
  good = await startApp('good');
  // Backoff 0: the retries' timing is not what these tests look at.
  const noWait = { base: 0, cap: 0 };
  const closedPort = await reservedPort();
  proxy = await startProxyProcess({
    config: {
      version: 'r1',
      services: [
        // Retries POST (gRPC's method): trailers-only UNAVAILABLE (the default code), resets, ...
        { name: 'grpc', endpoints: [at(a)], retry: { methods: ['POST'], backoff: noWait } },
        // The defaults: idempotent methods only, so a gRPC call is retried only when nothing was sent.
        { name: 'plain', endpoints: [at(a)], retry: { backoff: noWait } },
        { name: 'dead', endpoints: [{ address: `127.0.0.1:${closedPort}` }], retry: { backoff: noWait } },
        { name: 'small', endpoints: [at(a)], retry: { methods: ['POST'], maxBufferedBody: 1024, backoff: noWait } },
        // Retries may add a quarter of the requests, nothing more.
        { name: 'budget', endpoints: [at(a)], retry: { attempts: 2, methods: ['POST'], backoff: noWait, budget: { ratio: 0.25, minPerSecond: 0 } } },
        // One endpoint, no retries: every answer is the endpoint's, until its breaker opens.
        { name: 'breaker', endpoints: [at(bad)], retry: { attempts: 1 }, breaker: { consecutiveFailures: 3, baseEjection: 60_000, maxEjection: 60_000 } },
        { name: 'slow-route', endpoints: [at(a)], timeouts: { request: 300 } },
        { name: 'app-errors', endpoints: [at(good)], retry: { attempts: 1 }, breaker: { consecutiveFailures: 3, baseEjection: 60_000, maxEjection: 60_000 } },
      ],
    },
    workload: 'web',
  });
  session = http2.connect(proxy.outboundUrl);
  session.on('error', () => {});
});
t.teardown(async () => {
  session?.destroy();
  await proxy?.stop();
  await a?.close();
  await bad?.close();
  await good?.close();
});

t.test('a trailers-only UNAVAILABLE is retried where the route retries POST, with the same body', async (t) => {
  const c = await call(session, 'grpc', '/echo.Echo/Unary', 'hello', { 'x-key': 'u1', 'x-fail': '2' });
  t.equal(grpcStatus(c), '0', `the third attempt's answer reached the caller (got grpc-status ${grpcStatus(c)}, ${String(c.headers['grpc-message'])})`);
  t.equal(message(c), 'a got 10 bytes');
  const bodies = a.seen.get('u1') ?? [];
  t.equal(bodies.length, 3, 'three attempts reached the app');
  t.ok(bodies.every((b) => b.equals(frame('hello'))), 'each with the whole request body');
  const m = await proxy.metrics();
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'grpc', reason: 'grpc-14' }), 2, 'two retries, by grpc-status');
});

t.test('a reset before any response is retried where the route retries POST', async (t) => {
  const c = await call(session, 'grpc', '/echo.Echo/Unary', 'again', { 'x-key': 'r1', 'x-fail': '1', 'x-fail-how': 'reset' });
  t.equal(grpcStatus(c), '0', `answered by the second attempt (got ${grpcStatus(c)}, ${String(c.headers['meshlet-proxy-error'])})`);
  t.equal(streams(a, 'r1'), 2);
  t.equal(metricValue(await proxy.metrics(), 'meshlet_retries_total', { dst_service: 'grpc', reason: 'reset-before-response' }), 1);
});

t.test('by default (idempotent methods only) a gRPC call answered UNAVAILABLE is not retried', async (t) => {
  const c = await call(session, 'plain', '/echo.Echo/Unary', 'once', { 'x-key': 'p1', 'x-fail': '1' });
  t.equal(grpcStatus(c), '14', 'the app\'s UNAVAILABLE reached the caller');
  t.equal(c.headers['grpc-message'], 'try again');
  t.equal(streams(a, 'p1'), 1, 'one attempt');
});

/** A request without a body (END_STREAM on its headers) to the plain service; its status and body. */
function bodiless(method: string, headers: Record<string, string>): Promise<{ status: number; body: string; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': '/plain', ':authority': 'plain', ...headers }, { endStream: true });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('error', reject);
    req.on('close', () => resolve({ status, body, error: undefined }));
  });
}

t.test('not gRPC: an HTTP/2 GET answered 503 is retried by the default policy, as over HTTP/1', async (t) => {
  const got = await bodiless('GET', { 'x-key': 'get-1', 'x-fail': '1' });
  t.equal(got.status, 200, 'the retry\'s answer');
  t.equal(got.body, 'plain from a');
  t.equal(streams(a, 'get-1'), 2);
  t.equal(metricValue(await proxy.metrics(), 'meshlet_retries_total', { dst_service: 'plain', reason: '503' }), 1);
});

t.test('a stream the endpoint refused (REFUSED_STREAM: not processed) is retried for any method', async (t) => {
  const got = await bodiless('POST', { 'x-key': 'refused-1', 'x-fail': '1', 'x-fail-how': 'refuse' });
  t.equal(got.status, 200, `a POST on the default policy (no POST retries) answered by its retry (got ${got.status} ${got.body})`);
  t.equal(streams(a, 'refused-1'), 2);
  t.equal(metricValue(await proxy.metrics(), 'meshlet_retries_total', { dst_service: 'plain', reason: 'connect-failed' }), 1);
});

t.test('a connect failure is retried for any method, gRPC included (nothing was sent)', async (t) => {
  const c = await call(session, 'dead', '/echo.Echo/Unary', 'x');
  t.equal(grpcStatus(c), '14', 'UNAVAILABLE once every attempt failed');
  t.equal(c.headers['meshlet-proxy-error'], 'connect-refused');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_retries_total', { dst_service: 'dead', reason: 'connect-failed' }), 2, 'two retries on the default policy (3 attempts)');
});

t.test('a request body over maxBufferedBody is sent once; one within it is replayed', async (t) => {
  const big = await call(session, 'small', '/echo.Echo/Unary', 'x'.repeat(4096), { 'x-key': 's-big', 'x-fail': '1' });
  t.equal(grpcStatus(big), '14', 'a 4 KiB body on a route that keeps 1 KiB: not retried');
  t.equal(streams(a, 's-big'), 1);
  t.equal(a.seen.get('s-big')?.[0]?.length, 4101, 'and the one attempt got it whole');
  const small = await call(session, 'small', '/echo.Echo/Unary', 'x'.repeat(512), { 'x-key': 's-small', 'x-fail': '1' });
  t.equal(grpcStatus(small), '0', 'a 512-byte body: retried');
  t.equal(streams(a, 's-small'), 2);
});

t.test('a request still streaming when the answer came is sent once', async (t) => {
  const req = session.request({ ':method': 'POST', ':path': '/echo.Echo/Early', ':authority': 'grpc', ...GRPC, te: 'trailers', 'x-key': 'e1' });
  let headers: http2.IncomingHttpHeaders = {};
  const answered = new Promise<void>((r) =>
    req.on('response', (h) => {
      headers = h;
      r();
    }),
  );
  req.on('error', () => {});
  const closed = new Promise((r) => req.on('close', r));
  req.write(frame('first'));
  await answered;
  req.end(frame('second'));
  await closed;
  t.equal(headers['grpc-status'], '14', 'the app\'s answer to a body it had not had whole reached the caller');
  t.equal(streams(a, 'e1'), 1, 'one attempt: the body was not kept whole, so it could not be sent again');
});

t.test('HTTP/2 requests earn and spend the retry budget', async (t) => {
  // ratio 0.25, no reserve: the first failing call has earned a quarter of a retry (refused); four
  // good calls bring it to 1.5, the next failure takes one retry, the one after finds 0.75 (refused).
  const first = await budgetFail(1);
  t.equal(grpcStatus(first), '14');
  for (let i = 0; i < 4; i++) t.equal(grpcStatus(await call(session, 'budget', '/echo.Echo/Unary', 'ok', { 'x-key': `b-ok-${i}` })), '0');
  await budgetFail(2);
  await budgetFail(3);
  t.same([1, 2, 3].map((n) => streams(a, `b-fail-${n}`)), [1, 2, 1], 'attempts per failing call: refused, retried, refused');
  const m = await proxy.metrics();
  t.equal(metricValue(m, 'meshlet_retry_budget_exhausted_total', { dst_service: 'budget' }), 2, 'two retries refused by the budget');
  t.equal(metricValue(m, 'meshlet_retries_total', { dst_service: 'budget', reason: 'grpc-14' }), 1);
});

t.test('the breaker ejects an endpoint answering HTTP 200 with grpc-status UNAVAILABLE in its trailers', async (t) => {
  const calls: Call[] = [];
  for (let i = 0; i < 6; i++) calls.push(await call(session, 'breaker', '/echo.Echo/Mixed', 'm'));
  t.same(calls.slice(0, 3).map(grpcStatus), ['14', '14', '14'], 'three answers of the endpoint: UNAVAILABLE in the trailers');
  t.equal(streams(bad, '/echo.Echo/Mixed'), 3, 'then no more reached it (3 consecutive failures eject it)');
  t.same(calls.slice(3).map((c) => c.headers['meshlet-proxy-error']), ['breaker-open', 'breaker-open', 'breaker-open'], 'the proxy answers for it while it is ejected');
  const m = await proxy.metrics();
  t.equal(metricValue(m, 'meshlet_endpoint_ejections_total', { dst_service: 'breaker' }), 1, 'one ejection');
  t.equal(metricValue(m, 'meshlet_endpoint_breaker_state', { dst_service: 'breaker', endpoint: `127.0.0.1:${bad.port}` }), 1, 'the endpoint is open (ejected)');
});

t.test('an application\'s own gRPC errors (NOT_FOUND) do not eject its endpoint', async (t) => {
  for (let i = 0; i < 6; i++) t.equal(grpcStatus(await call(session, 'app-errors', '/echo.Echo/NotFound', 'n')), '5');
  t.equal(streams(good, '/echo.Echo/NotFound'), 6, 'every call reached the endpoint');
  t.equal(metricValue(await proxy.metrics(), 'meshlet_endpoint_ejections_total', { dst_service: 'app-errors' }), 0, 'no ejection');
});

t.test('grpc-timeout: the caller\'s deadline bounds the request when shorter than the route\'s (DEADLINE_EXCEEDED)', async (t) => {
  // The app answers after 3 s; the route's whole-request timeout is the default 15 s.
  const c = await call(session, 'grpc', '/echo.Echo/Slow', 's', { 'x-key': 'gt1', 'grpc-timeout': '300m' });
  t.equal(grpcStatus(c), '4', `DEADLINE_EXCEEDED (got ${grpcStatus(c)}: ${String(c.headers['grpc-message'])})`);
  t.equal(c.headers['meshlet-proxy-error'], 'request-timeout');
  const seen = a.grpcTimeouts.get('gt1') ?? '';
  t.match(seen, /^\d+m$/, `the app was told the time left in milliseconds (${seen})`);
  t.ok(Number(seen.slice(0, -1)) <= 300, 'no more than the caller gave');
  // A caller whose deadline is longer than the route's: the route's timeout, UNAVAILABLE as before.
  const r = await call(session, 'slow-route', '/echo.Echo/Slow', 's', { 'x-key': 'gt2', 'grpc-timeout': '10S' });
  t.equal(grpcStatus(r), '14');
  t.equal(r.headers['meshlet-proxy-error'], 'request-timeout');
  t.ok(Number((a.grpcTimeouts.get('gt2') ?? '').slice(0, -1)) > 9000, `the app was told what is left of the caller's 10 s (${a.grpcTimeouts.get('gt2')})`);
});
