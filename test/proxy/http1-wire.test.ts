// HTTP/1.1 on the wire through a real proxy process, against scripted upstreams that write raw
// bytes: pipelining, HTTP/1.0 clients, response framings the client cannot take as they come
// (chunked to HTTP/1.0, close-delimited to a keep-alive client), HEAD, interim responses,
// malformed upstream answers, 100-continue, chunked request bodies, upstreams that close idle
// connections. And the server connection's head timeout, on a real socket with a short limit.
import t, { type Test } from 'tap';
import net from 'node:net';
import { startProxyProcess, type ProxyProcess } from '../fixtures/mesh.ts';
import { ServerConnection, type ServerRequest } from '../../proxy/http1/server.ts';
import { Pool } from '../../proxy/http1/client.ts';
import { tcpConnector } from '../../proxy/http/connector.ts';

interface Scripted {
  address: string;
  /** Request heads (and bodies) as received, in order. */
  received: string[];
  connections: number;
  close(): Promise<void>;
}

/**
 * An upstream that answers each request head with what `answer` returns (raw bytes), or leaves
 * the socket to `answer` when it returns undefined. Request bodies are read by Content-Length or
 * up to the end of a chunked body.
 */
async function scripted(answer: (head: string, socket: net.Socket, n: number) => string | undefined): Promise<Scripted> {
  const sockets = new Set<net.Socket>();
  const s: Scripted = { address: '', received: [], connections: 0, close: async () => {} };
  const server = net.createServer((socket) => {
    s.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        let total = end + 4;
        const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (cl) total += Number(cl[1]);
        else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          const last = buf.indexOf('\r\n0\r\n', end);
          const fin = last === -1 ? -1 : buf.indexOf('\r\n\r\n', last + 2);
          if (fin === -1) return;
          total = fin + 4;
        }
        if (buf.length < total) return;
        const message = buf.slice(0, total);
        buf = buf.slice(total);
        s.received.push(message);
        const out = answer(message, socket, s.received.length);
        if (out !== undefined) socket.write(out, 'latin1');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  s.address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  s.close = () =>
    new Promise<void>((r) => {
      for (const so of sockets) so.destroy();
      server.close(() => r());
    });
  return s;
}

/** A client connection that sends raw bytes and collects what comes back. */
function client(port: number): { send(bytes: string): void; until(pred: (s: string) => boolean, ms?: number): Promise<string>; closed: Promise<void>; end(): void; text(): string } {
  const s = net.connect(port, '127.0.0.1');
  let out = '';
  const waiters: Array<() => void> = [];
  s.on('data', (c: Buffer) => {
    out += c.toString('latin1');
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  s.on('error', () => {});
  return {
    send: (bytes) => void s.write(bytes, 'latin1'),
    async until(pred, ms = 3000) {
      const end = Date.now() + ms;
      while (!pred(out)) {
        if (Date.now() > end || s.destroyed) throw new Error(`timed out waiting; got ${JSON.stringify(out)}`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 50))]);
      }
      return out;
    },
    closed,
    end: () => s.end(),
    text: () => out,
  };
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n${extra}\r\n${body}`;
const pathOf = (head: string) => head.split(' ')[1]!;

async function proxyTo(t: Test, up: Scripted): Promise<ProxyProcess> {
  const p = await startProxyProcess({ config: { version: 'w1', services: [{ name: 'up', endpoints: [{ address: up.address }], retry: { attempts: 1 } }] } });
  t.teardown(async () => {
    await p.stop();
    await up.close();
  });
  return p;
}

t.test('pipelined requests are answered in order on one connection', async (t) => {
  const up = await scripted((head) => ok(`path=${pathOf(head)}`));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET /one HTTP/1.1\r\nHost: up\r\n\r\nGET /two HTTP/1.1\r\nHost: up\r\n\r\nGET /three HTTP/1.1\r\nHost: up\r\n\r\n');
  const out = await c.until((s) => s.includes('path=/three'));
  t.ok(out.indexOf('path=/one') < out.indexOf('path=/two') && out.indexOf('path=/two') < out.indexOf('path=/three'), 'in the order asked');
  t.equal(out.match(/HTTP\/1\.1 200/g)?.length, 3);
  c.end();
});

t.test('HTTP/1.0 clients: closed after the response unless they ask for keep-alive', async (t) => {
  const up = await scripted((head) => ok(`path=${pathOf(head)}`));
  const p = await proxyTo(t, up);
  const a = client(p.outboundPort);
  a.send('GET /old HTTP/1.0\r\nHost: up\r\n\r\n');
  await a.closed;
  t.match(a.text(), /^HTTP\/1\.1 200 OK\r\n/);
  t.match(a.text(), /connection: close/i);
  t.match(a.text(), /path=\/old$/);
  const b = client(p.outboundPort);
  b.send('GET /k1 HTTP/1.0\r\nHost: up\r\nConnection: keep-alive\r\n\r\n');
  await b.until((s) => s.includes('path=/k1'));
  t.match(b.text(), /connection: keep-alive/i);
  b.send('GET /k2 HTTP/1.0\r\nHost: up\r\nConnection: keep-alive\r\n\r\n');
  await b.until((s) => s.includes('path=/k2'));
  t.pass('a second request on the kept connection');
  b.end();
});

t.test('a chunked response to an HTTP/1.0 client is decoded, and the connection closes', async (t) => {
  const up = await scripted(() => 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET / HTTP/1.0\r\nHost: up\r\nConnection: keep-alive\r\n\r\n');
  await c.closed;
  const [head, body] = c.text().split('\r\n\r\n');
  t.notMatch(head!, /transfer-encoding/i, 'no chunked framing for HTTP/1.0');
  t.equal(body, 'hello world');
});

t.test('a close-delimited response reaches a keep-alive client chunked, and the connection stays usable', async (t) => {
  const up = await scripted((_head, socket, n) => {
    socket.end(`HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nbody number ${n}`, 'latin1');
    return undefined;
  });
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET /a HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.endsWith('0\r\n\r\n'));
  t.match(c.text(), /transfer-encoding: chunked/i);
  t.match(c.text(), /\r\n\r\nd\r\nbody number 1\r\n0\r\n\r\n$/, 'the body (13 bytes) in one chunk, then the last chunk');
  c.send('GET /b HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.includes('body number 2'));
  t.equal(up.connections, 2, 'each close-delimited response used its own upstream connection');
  c.end();
});

t.test('HEAD: the length is forwarded, no body is expected, the connection carries on', async (t) => {
  const up = await scripted((head) => (head.startsWith('HEAD') ? 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n' : ok('after')));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('HEAD / HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.includes('\r\n\r\n'));
  t.match(c.text(), /content-length: 100/i);
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.endsWith('after'));
  t.equal(up.connections, 1, 'the upstream connection was reused after the HEAD');
  c.end();
});

t.test('interim responses (103 Early Hints) are not forwarded; the final one is', async (t) => {
  const up = await scripted(() => 'HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n' + ok('final'));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  const out = await c.until((s) => s.endsWith('final'));
  t.notMatch(out, /103/);
  t.match(out, /^HTTP\/1\.1 200 OK/);
  c.end();
});

t.test('a malformed upstream response is a 502 upstream-error, never forwarded', async (t) => {
  const up = await scripted(() => 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd');
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  const out = await c.until((s) => s.includes('\r\n\r\nmeshlet'));
  t.match(out, /^HTTP\/1\.1 502 /);
  t.match(out, /meshlet-proxy-error: upstream-error/);
  t.match(out, /Content-Length fields that disagree/);
  c.end();
});

t.test('bytes an upstream sends on an idle connection are never a response: the connection is dropped, the proxy lives on', async (t) => {
  // HAProxy's unsolicited 408 on idle connections; then a stray CRLF after a response.
  const up = await scripted((head, socket, n) => {
    if (pathOf(head) === '/408') setTimeout(() => socket.end('HTTP/1.0 408 Request Time-out\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html>408</html>\n', 'latin1'), 200);
    if (pathOf(head) === '/crlf') setTimeout(() => socket.write('\r\n', 'latin1'), 100);
    return ok(`answer ${n}`);
  });
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET /408 HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.endsWith('answer 1'));
  await new Promise((r) => setTimeout(r, 400));
  t.equal(p.proc.exitCode, null, 'the proxy is still running');
  c.send('GET /crlf HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.endsWith('answer 2'));
  await new Promise((r) => setTimeout(r, 300));
  c.send('GET /after HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.endsWith('answer 3'));
  t.notMatch(c.text(), /408|502|meshlet-proxy-error/, 'three requests, three answers, none of them the stray bytes');
  t.equal(up.connections, 3, 'each connection that sent stray bytes was dropped');
  c.end();
});

t.test('a bodiless response followed by bytes (a HEAD answered with a body): the bytes never reach another client', async (t) => {
  const injected = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPWNED!';
  const up = await scripted((head) => {
    if (head.startsWith('HEAD')) return `HTTP/1.1 200 OK\r\ncontent-length: ${injected.length}\r\n\r\n${injected}`;
    if (pathOf(head) === '/204') return 'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello';
    return ok('the real answer');
  });
  const p = await proxyTo(t, up);
  const a = client(p.outboundPort);
  a.send('HEAD /file HTTP/1.1\r\nHost: up\r\n\r\n');
  await a.until((s) => s.includes('\r\n\r\n'));
  a.end();
  const b = client(p.outboundPort);
  b.send('GET /account HTTP/1.1\r\nHost: up\r\n\r\nGET /204 HTTP/1.1\r\nHost: up\r\n\r\nGET /account HTTP/1.1\r\nHost: up\r\n\r\n');
  const out = await b.until((s) => s.split('the real answer').length === 3);
  t.notMatch(out, /PWNED|hello/, 'nothing the upstream sent after a bodiless response was taken as a response');
  t.match(out, /204 No Content/);
  t.notMatch(out, /502/);
  b.end();
});

t.test('upstream heads: over 64 KiB is refused however it is split; bare-LF lines are a 502 at once, not a wait', async (t) => {
  const up = await scripted((head) => {
    if (pathOf(head) === '/big') return `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(100_000)}\r\ncontent-length: 2\r\n\r\nok`;
    if (pathOf(head) === '/lf') return 'HTTP/1.1 200 OK\ncontent-length: 2\n\nok';
    return ok('fine');
  });
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET /big HTTP/1.1\r\nHost: up\r\n\r\n');
  const big = await c.until((s) => s.includes('\r\n\r\nmeshlet'));
  t.match(big, /^HTTP\/1\.1 502 /);
  t.match(big, /larger than 65536 bytes/);
  const d = client(p.outboundPort);
  const started = Date.now();
  d.send('GET /lf HTTP/1.1\r\nHost: up\r\n\r\n');
  const lf = await d.until((s) => s.includes('\r\n\r\nmeshlet'));
  t.match(lf, /^HTTP\/1\.1 502 /);
  t.match(lf, /bare LF/);
  t.ok(Date.now() - started < 1000, 'answered at once');
  c.end();
  d.end();
});

t.test('repeated Content-Length fields of one value go on as one field', async (t) => {
  const up = await scripted(() => 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-a: 1\r\nContent-Length: 5\r\n\r\nhello');
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  const out = await c.until((s) => s.endsWith('hello'));
  t.equal(out.match(/content-length/gi)?.length, 1, 'one Content-Length field');
  t.match(out, /content-length: 5\r\n/i);
  c.end();
});

t.test('transfer codings other than chunked are refused both ways, never passed on re-framed', async (t) => {
  const up = await scripted((head) => (pathOf(head) === '/gz' ? 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' : ok('fine')));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('GET /gz HTTP/1.1\r\nHost: up\r\n\r\n');
  const res = await c.until((s) => s.includes('\r\n\r\nmeshlet'));
  t.match(res, /^HTTP\/1\.1 502 /);
  t.match(res, /transfer coding "gzip" is not supported/);
  const d = client(p.outboundPort);
  d.send('POST /up HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
  const req = await d.until((s) => s.includes('\r\n\r\nmeshlet'));
  t.match(req, /^HTTP\/1\.1 400 /);
  t.equal(up.received.filter((m) => m.startsWith('POST')).length, 0, 'the request never reached the upstream');
  c.end();
  d.end();
});

t.test('Expect: 100-continue: the proxy says continue, then forwards the body', async (t) => {
  const up = await scripted((msg) => ok(`got ${msg.slice(msg.indexOf('\r\n\r\n') + 4)}`));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  c.send('PUT /x HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
  await c.until((s) => s.includes('100 Continue'));
  c.send('hello');
  await c.until((s) => s.endsWith('got hello'));
  t.notMatch(up.received[0]!, /expect:/i, 'this hop answered the expectation; it is not passed on');
  c.end();
});

t.test('a chunked request body goes upstream with its chunks and trailers as sent', async (t) => {
  const up = await scripted(() => ok('stored'));
  const p = await proxyTo(t, up);
  const c = client(p.outboundPort);
  const body = '4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nChecksum: abc\r\n\r\n';
  c.send(`POST /up HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n${body.slice(0, 10)}`);
  await new Promise((r) => setTimeout(r, 50));
  c.send(body.slice(10));
  await c.until((s) => s.endsWith('stored'));
  const got = up.received[0]!;
  t.match(got, /\r\ntransfer-encoding: chunked\r\n/i);
  t.equal(got.slice(got.indexOf('\r\n\r\n') + 4), body, 'byte for byte');
  c.end();
});

t.test('an upstream that closes idle connections: the next request gets a fresh one, no error', async (t) => {
  // Keep-Alive: timeout=1 means the pool may keep it for 0 s: it closes it at once.
  const hinted = await scripted((_h, socket) => {
    socket.write(ok('hinted', 'keep-alive: timeout=1\r\n'), 'latin1');
    setTimeout(() => socket.destroy(), 300);
    return undefined;
  });
  const p = await proxyTo(t, hinted);
  const c = client(p.outboundPort);
  for (let i = 1; i <= 3; i++) {
    c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
    await c.until((s) => s.split('hinted').length === i + 1);
    await new Promise((r) => setTimeout(r, 400));
  }
  t.notMatch(c.text(), /502|meshlet-proxy-error/, 'three requests, three answers, no proxy error');
  t.equal(hinted.connections, 3);
  c.end();
});

t.test('an upstream that closes an idle connection without saying so: it is dropped from the pool', async (t) => {
  const silent = await scripted((_h, socket) => {
    socket.write(ok('silent'), 'latin1');
    setTimeout(() => socket.end(), 100);
    return undefined;
  });
  const p = await proxyTo(t, silent);
  const c = client(p.outboundPort);
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.includes('silent'));
  await new Promise((r) => setTimeout(r, 300));
  c.send('GET / HTTP/1.1\r\nHost: up\r\n\r\n');
  await c.until((s) => s.split('silent').length === 3);
  t.notMatch(c.text(), /502/);
  t.equal(silent.connections, 2);
  c.end();
});

t.test('server connection: a head that does not arrive in time gets 408 (however slowly its bytes trickle in) and the connection closes', async (t) => {
  let now = 0;
  const seen: ServerRequest[] = [];
  const conns: ServerConnection[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    conns.push(
      new ServerConnection(
        socket,
        {
          request: (r) => {
            seen.push(r);
            r.respond(200, 'OK', [], 'fine');
          },
          upgrade: (_h, s) => s.destroy(),
          refuse: (problem, message) => `HTTP/1.1 408 Request Timeout\r\nx-problem: ${problem}\r\ncontent-length: ${message.length}\r\nconnection: close\r\n\r\n${message}`,
          foreign: (what) => Buffer.from(`not HTTP/1: ${what.protocol}`),
        },
        { now: () => now, maxHeaderSize: 1024, headersTimeoutMs: 200, keepAliveTimeoutMs: 1000 },
      ),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const slow = client(port);
  slow.send('GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ');
  await new Promise((r) => setTimeout(r, 50));
  now = 150;
  // A slow-loris client trickles bytes: they do not restart the head's clock.
  slow.send('a');
  await new Promise((r) => setTimeout(r, 50));
  for (const c of conns) c.sweep(now);
  t.equal(slow.text(), '', 'not yet: 150 ms of 200');
  now = 250;
  for (const c of conns) c.sweep(now);
  await slow.until((s) => s.includes('\r\n\r\n'), 1000);
  await slow.closed;
  t.match(slow.text(), /^HTTP\/1\.1 408 /);
  t.match(slow.text(), /x-problem: header-timeout/);
  t.equal(seen.length, 0, 'no request was handed on');
  // An idle keep-alive connection is closed after its timeout, a busy one is not.
  const idle = client(port);
  idle.send('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  await idle.until((s) => s.endsWith('fine'));
  // Idle since its response at 250 ms: kept at 1200 (950 ms), closed at 1300 (1050 ms).
  now = 1200;
  for (const c of conns) c.sweep(now);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(idle.text().endsWith('fine'), true, 'still open after 950 ms idle');
  now = 1300;
  for (const c of conns) c.sweep(now);
  await idle.closed;
  t.pass('the idle connection closed after its keep-alive timeout');
});

t.test('server connection: a TLS record that stops short is refused as TLS when the head timeout runs out, not with an HTTP 408', async (t) => {
  let now = 0;
  const conns: ServerConnection[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    conns.push(
      new ServerConnection(
        socket,
        {
          request: (r) => r.respond(200, 'OK', [], 'fine'),
          upgrade: (_h, s) => s.destroy(),
          refuse: (problem) => `HTTP/1.1 408 Request Timeout\r\nx-problem: ${problem}\r\ncontent-length: 0\r\n\r\n`,
          foreign: (what) => Buffer.from(`not HTTP/1: ${JSON.stringify(what)}`),
        },
        { now: () => now, maxHeaderSize: 1024, headersTimeoutMs: 200, keepAliveTimeoutMs: 1000 },
      ),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const c = client(port);
  // A record header announcing 512 bytes, and only 3 of them: waited for, as a ClientHello is sent whole.
  c.send('\x16\x03\x01\x02\x00\x01\x00\x01');
  await new Promise((r) => setTimeout(r, 50));
  now = 150;
  for (const x of conns) x.sweep(now);
  t.equal(c.text(), '', 'waiting for the rest of the record');
  now = 250;
  for (const x of conns) x.sweep(now);
  await c.closed;
  t.equal(c.text(), 'not HTTP/1: {"protocol":"tls"}', 'TLS without a name (serverName undefined)');
});

t.test('client pool: an upstream that goes silent in the middle of a body is given up after the silence timeout', async (t) => {
  const stalled = await scripted(() => 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part of it');
  t.teardown(() => stalled.close());
  const pool = new Pool(tcpConnector(stalled.address, 1000), { now: () => performance.now(), keepAliveTimeoutMs: 1000, keepAliveMaxTimeoutMs: 1000, silenceTimeoutMs: 200 });
  t.teardown(() => pool.destroy());
  const started = Date.now();
  const got = await new Promise<{ status: number; body: string; error: Error & { code?: string } }>((resolve) => {
    let status = 0;
    let body = '';
    pool.request(
      { method: 'GET', head: 'GET / HTTP/1.1\r\nhost: up\r\n\r\n', body: undefined },
      {
        head: (res) => (status = res.status),
        data: (c) => {
          body += c.toString('latin1');
          return true;
        },
        end: () => resolve({ status, body, error: new Error('the body ended, which it cannot have') }),
        error: (error) => resolve({ status, body, error }),
      },
    );
  });
  const took = Date.now() - started;
  t.equal(got.status, 200, 'the head arrived');
  t.equal(got.body, 'only part of it');
  t.equal(got.error.code, 'MESHLET_UPSTREAM_SILENT');
  t.match(got.error.message, /sent nothing for 200 ms in the middle of the response body/);
  t.ok(took >= 180 && took < 2000, `given up after ${took} ms (timeout 200 ms)`);
});
