// Upgrade requests on real sockets through a proxy process: the protocol switches only on the
// upstream's 101; any other answer is forwarded and closes, and the bytes held meanwhile never reach the upstream.
import t from 'tap';
import net from 'node:net';
import { reservedPort, startUpstream, startProxyProcess, metricValue, type Upstream, type ProxyProcess } from '../fixtures/mesh.ts';

/** A client connection on raw bytes: everything it received, and whether the proxy closed it. */
class RawClient {
  readonly socket: net.Socket;
  text = '';
  closed = false;
  readonly #closed: Promise<void>;
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (c: Buffer) => (this.text += c.toString('latin1')));
    this.socket.on('error', () => {});
    this.#closed = new Promise((r) =>
      this.socket.once('close', () => {
        this.closed = true;
        r();
      }),
    );
  }
  write(s: string): void {
    this.socket.write(s, 'latin1');
  }
  /** Wait (at most `ms`) until what was received matches. */
  async waitFor(re: RegExp, ms = 3000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!re.test(this.text)) {
      if (Date.now() > end || this.closed) return re.test(this.text);
      await new Promise((r) => setTimeout(r, 10));
    }
    return true;
  }
  /** Wait (at most `ms`) for the proxy to close the connection. */
  async waitClosed(ms = 3000): Promise<boolean> {
    await Promise.race([this.#closed, new Promise((r) => setTimeout(r, ms))]);
    return this.closed;
  }
  destroy(): void {
    this.socket.destroy();
  }
}

/** An upstream on raw TCP: per connection, the request head and every byte after it; `script` answers by path. */
interface RawConn {
  head: string;
  /** Bytes after the request head, as they arrived. */
  after: string;
  /** `after` when the script answered (for /switch: what had arrived before the 101). */
  beforeAnswer?: string;
  socket: net.Socket;
}
async function startRawUpstream(script: (c: RawConn, path: string) => void): Promise<{ port: number; conns: RawConn[]; close(): Promise<void> }> {
  const conns: RawConn[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let conn: RawConn | undefined;
    socket.on('data', (c: Buffer) => {
      if (conn) {
        conn.after += c.toString('latin1');
        return;
      }
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      conn = { head: buf.slice(0, end + 4), after: buf.slice(end + 4), socket };
      conns.push(conn);
      script(conn, (conn.head.split(' ')[1] ?? '').split('?')[0]!);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    conns,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const UPGRADE = (path: string, host: string) => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`;
/** What a smuggler sends after an upgrade request nobody accepted: requests the proxy never routed or checked. */
const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: up\r\n\r\nPOST /admin HTTP/1.1\r\nHost: up\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n';

let app: Upstream;
let raw: Awaited<ReturnType<typeof startRawUpstream>>;
let p: ProxyProcess;

t.before(async () => {
  // A plain node:http app: no 'upgrade' listener, so it answers an Upgrade request like any other and keeps reading.
  app = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => res.end(`plain answer to ${req.url}\n`));
  });
  raw = await startRawUpstream((c, path) => {
    const s = c.socket;
    switch (path) {
      case '/switch':
        // Answer after a pause, with an interim 100 first: nothing after the request may arrive before the 101.
        setTimeout(() => {
          c.beforeAnswer = c.after;
          s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: x-echo\r\nConnection: Upgrade\r\nKeep-Alive: timeout=5\r\n\r\nhello-from-upstream;');
          s.on('data', (d: Buffer) => s.write(`echo(${d.toString('latin1')})`));
          c.after = '';
        }, 100);
        break;
      case '/chunked-426':
        s.write('HTTP/1.1 426 Upgrade Required\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle');
        break;
      case '/until-close':
        s.write('HTTP/1.1 400 Bad Request\r\n\r\nno length: ');
        setTimeout(() => s.end('ends when the upstream closes'), 100);
        break;
      case '/no-content':
        s.write('HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle');
        break;
      case '/head':
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle');
        break;
      case '/silent':
        break;
      case '/malformed':
        s.write('HTTP/1.1 2x0 What\r\n\r\n');
        break;
      case '/huge-head':
        s.write(`HTTP/1.1 101 Switching Protocols\r\nX-Big: ${'a'.repeat(70 * 1024)}`);
        break;
      case '/reset':
        s.destroy();
        break;
    }
  });
  p = await startProxyProcess({
    config: {
      version: 'u1',
      services: [
        { name: 'up', endpoints: [{ address: app.address }], routes: [{ name: 'public', match: { path: { prefix: '/public' } } }] },
        { name: 'raw', endpoints: [{ address: `127.0.0.1:${raw.port}` }], timeouts: { perTry: 500, request: 1000 } },
        { name: 'empty', endpoints: [] },
        // Nothing listens there: connection refused.
        { name: 'dead', endpoints: [{ address: `127.0.0.1:${await reservedPort()}` }] },
      ],
      inbound: { defaultPolicy: 'deny' },
    },
  });
});
t.teardown(async () => {
  await p.stop();
  await app.close();
  await raw.close();
});

t.test('an upgrade the app does not accept is answered and closed; what followed it never reaches the app', async (t) => {
  const before = app.seen.length;
  // A normal request for /admin is refused by routing (only /public is routed).
  const c0 = new RawClient(p.outboundPort);
  c0.write('GET /admin HTTP/1.1\r\nHost: up\r\n\r\n');
  t.ok(await c0.waitFor(/^HTTP\/1\.1 404 [^]*meshlet-proxy-error: no-route/), '/admin alone: 404 no-route');
  c0.destroy();

  const c = new RawClient(p.outboundPort);
  c.write(UPGRADE('/public', 'up') + SMUGGLED);
  t.ok(await c.waitClosed(), 'the proxy closes the connection after the answer');
  t.match(c.text, /^HTTP\/1\.1 200 OK\r\n/, "the app's 200 is forwarded");
  t.match(c.text, /\r\nconnection: close\r\n/i, 'with connection: close');
  t.match(c.text, /plain answer to \/public\n$/, 'its body, to its end');
  t.equal(c.text.match(/HTTP\/1\.1 /g)?.length, 1, 'one response only');
  await new Promise((r) => setTimeout(r, 200));
  t.same(app.seen.slice(before).map((s) => s.url), ['/public'], 'the app saw the upgrade request and nothing after it');
});

t.test('bytes sent after the upgrade request, later on the same connection, never reach the app either', async (t) => {
  const before = app.seen.length;
  const c = new RawClient(p.outboundPort);
  c.write(UPGRADE('/public', 'up'));
  await c.waitFor(/plain answer/);
  if (!c.closed) c.write(SMUGGLED);
  t.ok(await c.waitClosed(), 'closed');
  await new Promise((r) => setTimeout(r, 200));
  t.same(app.seen.slice(before).map((s) => s.url), ['/public']);
});

t.test('101: interim 1xx skipped, the 101 and what follows it reach the client, held bytes go upstream only after the 101', async (t) => {
  const n = raw.conns.length;
  const c = new RawClient(p.outboundPort);
  c.write(UPGRADE('/switch', 'raw') + 'early;');
  t.ok(await c.waitFor(/hello-from-upstream;echo\(early;\)/), 'the upstream got the held bytes after its 101');
  const conn = raw.conns[n]!;
  t.equal(conn.beforeAnswer, '', 'nothing after the request reached the upstream before its 101');
  t.match(c.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/, 'the 101 first: the interim 100 is not forwarded');
  t.match(c.text, /\r\nupgrade: x-echo\r\n/i, 'Upgrade kept');
  t.match(c.text, /\r\nconnection: upgrade\r\n/i, 'Connection: upgrade');
  t.notMatch(c.text, /keep-alive/i, 'other hop-by-hop fields removed');
  c.write('later;');
  t.ok(await c.waitFor(/echo\(later;\)/), 'then bytes flow both ways');
  t.equal(conn.after, 'early;later;', 'the upstream received exactly the client bytes, in order');
  c.destroy();
});

t.test("an upgrade request's own body goes upstream before the answer; only what follows it is held", async (t) => {
  const n = raw.conns.length;
  const c = new RawClient(p.outboundPort);
  c.write('POST /switch HTTP/1.1\r\nHost: raw\r\nConnection: Upgrade\r\nUpgrade: x-echo\r\nContent-Length: 5\r\n\r\nbody;early;');
  t.ok(await c.waitFor(/hello-from-upstream;echo\(early;\)/), 'switched, then the held bytes went upstream');
  t.equal(raw.conns[n]!.beforeAnswer, 'body;', 'the body (and only the body) reached the upstream before its 101');
  c.destroy();
});

t.test('a non-101 answer with a chunked body: forwarded to its last chunk, nothing after it, then closed', async (t) => {
  const n = raw.conns.length;
  const c = new RawClient(p.outboundPort);
  c.write(UPGRADE('/chunked-426', 'raw') + 'held-bytes');
  t.ok(await c.waitClosed(), 'closed');
  t.match(c.text, /^HTTP\/1\.1 426 Upgrade Required\r\n/);
  t.match(c.text, /\r\ntransfer-encoding: chunked\r\n/i);
  t.match(c.text, /\r\nconnection: close\r\n/i);
  t.notMatch(c.text, /X-Hop|keep-alive/i, 'hop-by-hop fields removed');
  t.match(c.text, /\r\n\r\n5\r\nhello\r\n0\r\n\r\n$/, 'the body to its end, and not the bytes after it');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(raw.conns[n]!.after, '', 'the held bytes never went upstream');
});

t.test('a non-101 answer without a length: its body until the upstream closes', async (t) => {
  const c = new RawClient(p.outboundPort);
  c.write(UPGRADE('/until-close', 'raw'));
  t.ok(await c.waitClosed(), 'closed');
  t.match(c.text, /^HTTP\/1\.1 400 Bad Request\r\nconnection: close\r\n\r\nno length: ends when the upstream closes$/);
});

t.test('a non-101 answer without a body (204, or to HEAD): the head alone, then closed', async (t) => {
  for (const [method, path, status] of [['GET', '/no-content', '204 No Content'], ['HEAD', '/head', '200 OK']] as const) {
    const n = raw.conns.length;
    const c = new RawClient(p.outboundPort);
    c.write(UPGRADE(path, 'raw').replace('GET', method) + 'held-bytes');
    t.ok(await c.waitClosed(), `${path}: closed`);
    t.match(c.text, new RegExp(`^HTTP/1\\.1 ${status}\\r\\n`), `${path}: ${status}`);
    t.match(c.text, /\r\n\r\n$/, `${path}: nothing after the head`);
    await new Promise((r) => setTimeout(r, 100));
    t.equal(raw.conns[n]!.after, '', `${path}: the held bytes never went upstream`);
  }
});

t.test('no answer in time, a malformed or oversized head, a reset: the proxy answers with its error', async (t) => {
  const cases: Array<[string, RegExp, string]> = [
    ['/silent', /^HTTP\/1\.1 504 /, 'per-try-timeout'],
    ['/malformed', /^HTTP\/1\.1 502 /, 'upstream-error'],
    ['/huge-head', /^HTTP\/1\.1 502 /, 'upstream-error'],
    ['/reset', /^HTTP\/1\.1 502 /, 'upstream-reset'],
  ];
  for (const [path, status, code] of cases) {
    const n = raw.conns.length;
    const c = new RawClient(p.outboundPort);
    c.write(UPGRADE(path, 'raw') + 'held-bytes');
    t.ok(await c.waitClosed(), `${path}: closed`);
    t.match(c.text, status, `${path}: status`);
    t.match(c.text, new RegExp(`\\r\\nmeshlet-proxy-error: ${code}\\r\\n`), `${path}: ${code}`);
    t.equal(raw.conns[n]?.after, '', `${path}: the held bytes never went upstream`);
  }
});

t.test('the upgrade request is forwarded as requests are: Host from an absolute-form target, hop-by-hop fields removed, a new span', async (t) => {
  const n = raw.conns.length;
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  const c = new RawClient(p.outboundPort);
  c.write(
    `GET http://raw:8080/switch?x=1 HTTP/1.1\r\nHost: elsewhere\r\nConnection: Upgrade, X-Drop\r\nUpgrade: websocket\r\nX-Drop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic Zm9v\r\nmeshlet-dst-port: 9\r\nX-Kept: yes\r\ntraceparent: 00-${traceId}-${parent}-01\r\ntracestate: vendor=x\r\n\r\n`,
  );
  t.ok(await c.waitFor(/hello-from-upstream;/), 'switched');
  const head = raw.conns[n]!.head;
  const lines = head.split('\r\n');
  t.equal(lines[0], 'GET /switch?x=1 HTTP/1.1', 'origin-form target');
  const fields = lines.slice(1).filter((l) => l !== '').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as const);
  const all = (name: string) => fields.filter(([k]) => k === name).map(([, v]) => v);
  t.same(all('host'), ['raw:8080'], "Host is the target's authority");
  t.same(all('upgrade'), ['websocket'], 'Upgrade kept');
  t.same(all('connection'), ['upgrade'], 'Connection: upgrade, and only that');
  for (const gone of ['x-drop', 'keep-alive', 'te', 'trailer', 'proxy-authorization', 'meshlet-dst-port']) t.same(all(gone), [], `${gone} removed`);
  t.same(all('x-kept'), ['yes'], 'end-to-end fields kept');
  t.same(all('tracestate'), ['vendor=x'], 'tracestate kept');
  const tp = all('traceparent');
  t.equal(tp.length, 1, 'one traceparent');
  t.match(tp[0], new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'same trace id, sampled flag kept');
  t.not(tp[0]!.split('-')[2], parent, 'a new span id for this hop');
  c.destroy();
});

t.test("the proxy's own refusals carry the standard reason phrase", async (t) => {
  const cases: Array<[number, string, string, string]> = [
    [p.outboundPort, UPGRADE('/admin', 'up'), 'HTTP/1.1 404 Not Found', 'no-route'],
    [p.inboundPort, UPGRADE('/', 'self'), 'HTTP/1.1 403 Forbidden', 'forbidden'],
    [p.outboundPort, UPGRADE('/', 'empty'), 'HTTP/1.1 503 Service Unavailable', 'no-endpoints'],
    [p.outboundPort, UPGRADE('/', 'dead'), 'HTTP/1.1 502 Bad Gateway', 'connect-refused'],
    [p.outboundPort, UPGRADE('/silent', 'raw'), 'HTTP/1.1 504 Gateway Timeout', 'per-try-timeout'],
    [p.outboundPort, 'GET / HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', 'HTTP/1.1 400 Bad Request', 'bad-request'],
  ];
  for (const [port, bytes, statusLine, code] of cases) {
    const c = new RawClient(port);
    c.write(bytes);
    t.ok(await c.waitClosed(), `${code}: closed`);
    t.equal(c.text.slice(0, c.text.indexOf('\r\n')), statusLine, `${code}: status line`);
    t.match(c.text, new RegExp(`\\r\\nmeshlet-proxy-error: ${code}\\r\\n`), `${code}: proxy-error header`);
  }
});

t.test('upgrades are measured and logged like requests: refusals with their reason, a switch as 101', async (t) => {
  const lines = () =>
    p
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  await new Promise((r) => setTimeout(r, 250)); // earlier tests' lines flushed
  const before = lines().length;
  const refused = new RawClient(p.outboundPort);
  refused.write(UPGRADE('/not-routed', 'up'));
  await refused.waitClosed();
  const switched = new RawClient(p.outboundPort);
  switched.write(UPGRADE('/switch', 'raw'));
  t.ok(await switched.waitFor(/hello-from-upstream;/));
  await new Promise((r) => setTimeout(r, 250)); // the access log flushes every 100 ms
  const fresh = lines().slice(before);
  t.ok(fresh.some((l) => l['path'] === '/not-routed' && l['status'] === 404 && l['error'] === 'no-route'), 'the refusal: access-log line with its reason');
  t.ok(fresh.some((l) => l['path'] === '/switch' && l['status'] === 101 && l['error'] === '' && l['upstream'] === `127.0.0.1:${raw.port}`), 'the switch: a 101 line naming the upstream');
  const m = await p.metrics();
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', status_code: '404', error_reason: 'no-route' }) >= 1, 'meshlet_requests_total counts the refusal');
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', status_code: '101', classification: 'success' }) >= 1, 'and the switch, as a success');
  // Labelled with the service routing picked, as a plain request to it is: per-service and edge
  // panels (dst_service) count upgrades too, not under "unknown".
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', status_code: '101', dst_service: 'raw' }) >= 1, 'the switch counts under the service it went to');
  t.ok(metricValue(m, 'meshlet_request_duration_seconds_count', { direction: 'outbound', dst_service: 'raw', classification: 'success' }) >= 1, 'and is timed under it');
  t.ok(metricValue(m, 'meshlet_requests_total', { direction: 'outbound', status_code: '404', error_reason: 'no-route', dst_service: 'up' }) >= 1, "a route miss counts under the service whose routes missed, as a plain request's does");
  t.ok(fresh.some((l) => l['path'] === '/switch' && l['dst_service'] === 'raw'), 'the access log names the service');
  t.ok(metricValue(m, 'meshlet_proxy_errors_total', { reason: 'no-route' }) >= 1, 'the refusal is a proxy error');
  switched.destroy();
});
