// proxy/http/upgrade.ts's wait for the upstream's answer, on the request path's deadlines with a
// manual clock: real loopback sockets carry the bytes, the clock alone decides when the wait ends.
// Nothing answers by itself, so a 504 comes exactly when the clock reaches the timeout, never before.
// Last, the attributes an upgrade's span starts with.
import t, { type Test } from 'tap';
import net from 'node:net';
import { ManualClock } from '../../../api/runtime.ts';
import { Deadlines, type TimerApi } from '../../../proxy/http/deadlines.ts';
import { makeUpgradeHandler, type UpgradeOutcome } from '../../../proxy/http/upgrade.ts';
import { parseRequestHead } from '../../../proxy/http1/head.ts';
import { IdOnlyTracing, type Tracing } from '../../../proxy/telemetry/trace.ts';
import { targetOf } from '../../../proxy/http/listener.ts';
import { ProxyError } from '../../../proxy/errors.ts';
import type { RuntimeConfig } from '../../../proxy/config/compile.ts';

/** Timers fired only by moving the clock. */
class FakeTimers implements TimerApi {
  readonly clock: ManualClock;
  readonly #pending = new Set<{ at: number; fn: () => void }>();
  constructor(clock: ManualClock) {
    this.clock = clock;
  }
  set(fn: () => void, ms: number): unknown {
    const h = { at: this.clock.now() + ms, fn };
    this.#pending.add(h);
    return h;
  }
  clear(h: unknown): void {
    this.#pending.delete(h as { at: number; fn: () => void });
  }
  /** Moves the clock to `until`, firing every timer due on the way, in order. */
  advanceTo(until: number): void {
    for (;;) {
      let next: { at: number; fn: () => void } | undefined;
      for (const h of this.#pending) if (h.at <= until && (!next || h.at < next.at)) next = h;
      if (!next) break;
      this.#pending.delete(next);
      if (next.at > this.clock.now()) this.clock.advance(next.at - this.clock.now());
      next.fn();
    }
    if (until > this.clock.now()) this.clock.advance(until - this.clock.now());
  }
}

/** Polls (real time, at most 3 s) until `ok`. */
async function until(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; !ok(); i++) {
    if (i > 300) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function listen(t: Test, onConnection: (s: net.Socket) => void, opts: net.ServerOpts = {}): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer(opts, (s) => {
    sockets.add(s);
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as net.AddressInfo).port;
}

const TIMEOUT_MS = 5000;

/**
 * An upstream that reads the upgrade request and answers only when the test says so, and a
 * front server whose every connection is handed to the upgrade handler (as the listener does
 * after reading the head, and half-open as the listener's); the client connection's bytes and
 * close are recorded. `requestHead` is the upgrade request the handler gets; a body, if it
 * announces one, is for the test to send on `client.socket`.
 */
async function setup(t: Test, requestHead = 'GET /chat HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket', requestTimeoutMs = 0) {
  const clock = new ManualClock(1000);
  const timers = new FakeTimers(clock);
  const deadlines = new Deadlines(clock, timers);
  const upstream = { head: '', socket: undefined as net.Socket | undefined, closed: false };
  const upstreamPort = await listen(t, (s) => {
    upstream.socket = s;
    s.on('data', (c: Buffer) => (upstream.head += c.toString('latin1')));
    s.once('close', () => (upstream.closed = true));
  });
  const handler = makeUpgradeHandler(
    () => ({
      address: `127.0.0.1:${upstreamPort}`,
      dial: (cb) => {
        const s = net.connect(upstreamPort, '127.0.0.1');
        s.once('connect', () => cb(null, s));
        s.once('error', (e) => cb(e, null));
      },
      responseTimeoutMs: TIMEOUT_MS,
      requestTimeoutMs,
    }),
    (req) => ({ target: req.target, authority: req.host, host: req.host }),
    { direction: 'outbound', tracing: new IdOnlyTracing() },
    deadlines,
  );
  const outcomes: UpgradeOutcome[] = [];
  const head = parseRequestHead(requestHead);
  const frontPort = await listen(t, (s) => handler(head, s, Buffer.alloc(0), {} as RuntimeConfig, { identity: '', tls: false }, (o) => outcomes.push(o)), { allowHalfOpen: true });
  const client = { text: '', closed: false, socket: net.connect(frontPort, '127.0.0.1') };
  client.socket.on('data', (c: Buffer) => (client.text += c.toString('latin1')));
  client.socket.on('error', () => {});
  client.socket.once('close', () => (client.closed = true));
  t.teardown(() => client.socket.destroy());
  await until('the upgrade request upstream', () => upstream.head.endsWith('\r\n\r\n'));
  return { clock, timers, deadlines, upstream, client, outcomes };
}

t.test('no answer: 504 per-try-timeout exactly when the clock reaches the timeout, and both connections close', async (t) => {
  const { timers, deadlines, upstream, client, outcomes } = await setup(t);
  t.equal(deadlines.pending, 1, 'the wait is armed on the deadlines');
  timers.advanceTo(1000 + TIMEOUT_MS - 1);
  t.same(outcomes, [], 'nothing 1 ms before the timeout');
  timers.advanceTo(1000 + TIMEOUT_MS);
  t.match(outcomes, [{ status: 504, reason: 'per-try-timeout', message: `the upstream sent no response to the upgrade within ${TIMEOUT_MS} ms` }], 'at the timeout: the proxy answers 504');
  t.equal(deadlines.pending, 0);
  await until('the client closed', () => client.closed);
  t.match(client.text, /^HTTP\/1\.1 504 Gateway Timeout\r\n[^]*meshlet-proxy-error: per-try-timeout\r\n/, 'the client gets the 504');
  await until('the upstream closed', () => upstream.closed);
  t.pass('the upstream connection is closed');
});

t.test('a 101 in time cancels the wait: moving the clock past the timeout leaves the tunnel open', async (t) => {
  const { timers, deadlines, upstream, client, outcomes } = await setup(t);
  timers.advanceTo(1000 + TIMEOUT_MS - 1);
  upstream.socket!.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  await until('the 101 reached the client', () => client.text.includes('\r\n\r\n'));
  t.match(outcomes, [{ status: 101, reason: '' }]);
  t.equal(deadlines.pending, 0, 'the wait is cancelled');
  timers.advanceTo(1000 + 10 * TIMEOUT_MS);
  t.equal(outcomes.length, 1, 'no timeout after the switch');
  upstream.socket!.write('through the tunnel');
  await until('tunnel bytes', () => client.text.endsWith('through the tunnel'));
  t.notOk(client.closed, 'the tunnel stays open');
});

t.test('a request body: the wait starts only once the body is upstream whole, however slowly it came', async (t) => {
  const { clock, timers, deadlines, upstream, client, outcomes } = await setup(t, 'POST /up HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 10');
  client.socket.write('12345');
  await until('the first half of the body upstream', () => upstream.head.endsWith('\r\n\r\n12345'));
  t.equal(deadlines.pending, 0, 'no wait armed while the body is still coming');
  timers.advanceTo(1000 + 10 * TIMEOUT_MS);
  t.same(outcomes, [], 'no 504 while the client is still sending the body');
  client.socket.write('67890');
  await until('the whole body upstream', () => upstream.head.endsWith('\r\n\r\n1234567890'));
  t.equal(deadlines.pending, 1, 'the wait is armed once the body is upstream whole');
  const sent = clock.now();
  timers.advanceTo(sent + TIMEOUT_MS - 1);
  t.same(outcomes, [], 'nothing 1 ms before the timeout counted from the body sent');
  timers.advanceTo(sent + TIMEOUT_MS);
  t.match(outcomes, [{ status: 504, reason: 'per-try-timeout' }], 'the timeout, counted from the body sent');
  await until('the client closed', () => client.closed);
  t.match(client.text, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
});

t.test('a request body that never ends: 504 request-timeout at the whole-request bound, counted from the start, and both connections close', async (t) => {
  const WHOLE_MS = 4 * TIMEOUT_MS;
  const { timers, deadlines, upstream, client, outcomes } = await setup(t, 'POST /up HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 10', WHOLE_MS);
  t.equal(deadlines.pending, 1, 'the whole-request bound is armed at the start');
  client.socket.write('12345');
  await until('the first half of the body upstream', () => upstream.head.endsWith('\r\n\r\n12345'));
  timers.advanceTo(1000 + WHOLE_MS - 1);
  t.same(outcomes, [], 'nothing 1 ms before the bound');
  timers.advanceTo(1000 + WHOLE_MS);
  t.match(outcomes, [{ status: 504, reason: 'request-timeout', message: `no response to the upgrade within ${WHOLE_MS} ms (its request body included)` }], 'at the bound: 504 request-timeout');
  t.equal(deadlines.pending, 0);
  await until('the client closed', () => client.closed);
  t.match(client.text, /^HTTP\/1\.1 504 Gateway Timeout\r\n[^]*meshlet-proxy-error: request-timeout\r\n/, 'the client gets the 504');
  await until('the upstream closed', () => upstream.closed);
  t.pass('the upstream connection is closed');
});

t.test('a 101 in time cancels the whole-request bound as well', async (t) => {
  const { timers, deadlines, upstream, client, outcomes } = await setup(t, undefined, 4 * TIMEOUT_MS);
  t.equal(deadlines.pending, 2, 'the answer wait and the whole bound');
  upstream.socket!.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  await until('the 101 reached the client', () => client.text.includes('\r\n\r\n'));
  t.equal(deadlines.pending, 0, 'both cancelled');
  timers.advanceTo(1000 + 10 * TIMEOUT_MS);
  t.match(outcomes, [{ status: 101 }], 'no timeout after the switch');
  t.notOk(client.closed, 'the tunnel stays open');
});

t.test('a chunked request body: the wait starts at its last chunk', async (t) => {
  const { clock, timers, deadlines, upstream, client, outcomes } = await setup(t, 'POST /up HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked');
  client.socket.write('5\r\nhello\r\n');
  await until('a chunk upstream', () => upstream.head.endsWith('5\r\nhello\r\n'));
  t.equal(deadlines.pending, 0, 'no wait armed before the last chunk');
  timers.advanceTo(1000 + 10 * TIMEOUT_MS);
  t.same(outcomes, [], 'no 504 before the last chunk');
  client.socket.write('0\r\n\r\n');
  await until('the last chunk upstream', () => upstream.head.endsWith('5\r\nhello\r\n0\r\n\r\n'));
  t.equal(deadlines.pending, 1, 'the wait is armed at the last chunk');
  timers.advanceTo(clock.now() + TIMEOUT_MS);
  t.match(outcomes, [{ status: 504, reason: 'per-try-timeout' }]);
});

t.test('the client ends its side before its body ended: taken as gone, both connections close', async (t) => {
  const { upstream, client, outcomes } = await setup(t, 'POST /up HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 10');
  client.socket.end('12345');
  await until('the client closed', () => client.closed);
  t.match(outcomes, [{ status: 0, reason: 'client-gone' }]);
  await until('the upstream closed', () => upstream.closed);
  t.equal(upstream.head.slice(upstream.head.indexOf('\r\n\r\n') + 4), '12345', 'the upstream got the part that came');
});

t.test("the upgrade's span carries server.port when the Host names one, as other requests' spans do", async (t) => {
  const started: Array<Record<string, string | number>> = [];
  const tracing: Tracing = {
    exporting: true,
    start: (_name, _kind, _parent, attributes) => {
      started.push(attributes);
      return { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', sampled: true, end: () => {} };
    },
  };
  const handler = makeUpgradeHandler(
    () => ({ error: new ProxyError('no-route', 'no route in this test') }),
    (req) => targetOf(req.target, req.host),
    { direction: 'outbound', tracing },
    new Deadlines(new ManualClock(0), new FakeTimers(new ManualClock(0))),
  );
  const heads = ['GET /chat HTTP/1.1\r\nHost: api:8080\r\nConnection: Upgrade\r\nUpgrade: websocket', 'GET /chat HTTP/1.1\r\nHost: api\r\nConnection: Upgrade\r\nUpgrade: websocket'];
  let next = 0;
  const port = await listen(t, (s) => handler(parseRequestHead(heads[next++]!), s, Buffer.alloc(0), {} as RuntimeConfig, { identity: '', tls: false }, () => {}));
  for (let i = 0; i < heads.length; i++) {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.resume();
    await new Promise((r) => c.once('close', r));
  }
  t.equal(started.length, 2);
  t.equal(started[0]!['server.address'], 'api');
  t.equal(started[0]!['server.port'], 8080, 'Host api:8080: server.port 8080');
  t.notOk('server.port' in started[1]!, 'Host api: no server.port');
  t.equal(started[1]!['server.address'], 'api');
});
